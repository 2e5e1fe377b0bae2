"""Benchmark: load + walk a generated base vs a bare libyaml parse of the same files.

Generates 2,000 Deployment-like documents (10 files) in a temporary directory, then times, in
the same run and best of N, ``load_manifests`` + ``find_images`` against PyYAML's
``yaml.load_all(..., Loader=yaml.CSafeLoader)`` (libyaml parsing and constructing plain Python
objects) of the same files. Goal: ratio <= 2.0. Then measures peak memory (ru_maxrss of a fresh
subprocess) for loading and walking 20,000 documents.

Run: ``.venv/bin/python benchmarks/load_bench.py`` (needs PyYAML with libyaml, from the
``test`` extra). The last line is ``RESULT docs=2000 ratio_to_libyaml=X peak_mb_20000=Y``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

DOC = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}
  namespace: ns-{ns}
  labels:
    app.kubernetes.io/name: app-{i}
    app.kubernetes.io/part-of: bench
spec:
  replicas: 2
  selector:
    matchLabels:
      app.kubernetes.io/name: app-{i}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: app-{i}
      annotations:
        checksum/config: "0123456789abcdef{i}"
    spec:
      serviceAccountName: app-{i}
      imagePullSecrets:
      - name: regcred
      initContainers:
      - name: migrate
        image: quay.io/bench/migrate:{i_mod}
        command: ["/bin/migrate", "--up"]
      containers:
      - name: app
        image: registry.example.com:5000/bench/app-{mod}:1.{i}
        args: ["--port=8080", "--log-level=info"]
        ports:
        - name: http
          containerPort: 8080
        env:
        - name: DATABASE_URL
          valueFrom:
            secretKeyRef: {{name: db, key: url}}
        - name: REPLICAS
          value: "2"
        resources:
          requests: {{cpu: 100m, memory: 128Mi}}
          limits: {{cpu: 500m, memory: 256Mi}}
        readinessProbe:
          httpGet: {{path: /healthz, port: http}}
          periodSeconds: 10
      - name: sidecar
        image: nginx:1.25
      volumes:
      - name: config
        configMap:
          name: app-{i}
"""


def generate(directory: Path, docs: int, files: int = 10) -> list[Path]:
    """Write ``docs`` documents spread over ``files`` files; returns the paths."""
    paths = []
    per = docs // files
    for f in range(files):
        path = directory / f"manifests-{f:02d}.yaml"
        with path.open("w") as fh:
            for i in range(f * per, (f + 1) * per):
                fh.write("---\n" + DOC.format(i=i, ns=i % 7, mod=i % 50, i_mod=i % 400))
        paths.append(path)
    return paths


def best_of(n: int, fn: Callable[[], object]) -> float:
    """Best wall-clock time of ``n`` runs of ``fn``."""
    best = float("inf")
    for _ in range(n):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def peak_mb(docs: int) -> float:
    """Peak RSS (MB) of a fresh interpreter loading and walking ``docs`` documents."""
    code = (
        "import sys, tempfile, pathlib\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import load_bench, kotsrewrite\n"
        "d = pathlib.Path(tempfile.mkdtemp())\n"
        "load_bench.generate(d, int(sys.argv[2]), files=20)\n"
        "base = kotsrewrite.load_manifests(d)\n"
        "inv = kotsrewrite.find_images(base)\n"
        "assert len(base.documents) == int(sys.argv[2])\n"
        # VmHWM, not ru_maxrss: execve folds the parent's high-water mark into ru_maxrss.
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
        "print(hwm[0].split()[1])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), str(docs)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> int:
    """Run the benchmark and print the result lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--memory-docs", type=int, default=20000)
    args = parser.parse_args()

    import yaml  # PyYAML: the libyaml peer

    import kotsrewrite

    if not hasattr(yaml, "CSafeLoader"):
        print("PyYAML was built without libyaml; no fair peer", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        paths = generate(directory, args.docs)

        def ours() -> None:
            base = kotsrewrite.load_manifests(directory)
            inventory = kotsrewrite.find_images(base)
            assert len(base.documents) == args.docs
            assert len(inventory.uses) == 3 * args.docs

        def libyaml() -> None:
            count = 0
            for path in paths:
                with path.open("rb") as fh:
                    text = fh.read().decode("utf-8")
                count += sum(1 for _ in yaml.load_all(text, Loader=yaml.CSafeLoader))
            assert count == args.docs

        ours()  # warm up imports and caches
        ours_s = best_of(args.runs, ours)
        peer_s = best_of(args.runs, libyaml)
    ratio = ours_s / peer_s
    print(f"load+walk  {ours_s * 1000:8.1f} ms  ({args.docs} documents, best of {args.runs})")
    print(f"libyaml    {peer_s * 1000:8.1f} ms  (PyYAML CSafeLoader load_all)")
    print(f"ratio      {ratio:8.2f}   (goal <= 2.0)")
    mem = peak_mb(args.memory_docs)
    print(f"peak RSS   {mem:8.1f} MB  ({args.memory_docs} documents, fresh process)")
    print(
        f"RESULT docs={args.docs} ratio_to_libyaml={ratio:.2f} peak_mb_{args.memory_docs}={mem:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
