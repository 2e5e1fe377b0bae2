"""Benchmark: ``kotsrewrite images`` as a whole process vs a bare libyaml parse of the same files.

Generates 10,000 Deployment-like documents (20 files, 13 MB, three image uses each) in a
temporary directory, then times, as whole processes started the same way and alternated
(best of ``--runs``), ``python -m kotsrewrite images DIR --format json > /dev/null`` against
``python -c 'yaml.load_all(..., Loader=yaml.CSafeLoader)'`` (PyYAML: libyaml parsing and
constructing plain Python objects, interpreter start included) over the same files. Goals:
ratio <= 2.0, peak RSS <= 100 MB. Then measures the peak RSS (and time) of ``images`` on
20,000 documents (goal <= 150 MB). Peak RSS is each child's own ``ru_maxrss``, measured
through ``tests/peak_rss.py``.

Run: ``.venv/bin/python benchmarks/load_bench.py`` (needs PyYAML with libyaml, from the
``test`` extra). The last line is
``RESULT docs=10000 ratio_to_libyaml=X cpu_ratio=C peak_mb_10000=Y peak_mb_20000=Z`` (wall
times, best of the runs; ``cpu_ratio``: the same for user + system CPU seconds, which depend
far less on the machine's load).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.peak_rss import Measured, run_measured  # noqa: E402

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


LIBYAML = """\
import pathlib, sys, yaml
count = 0
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.yaml")):
    count += sum(1 for _ in yaml.load_all(path.read_bytes().decode(), Loader=yaml.CSafeLoader))
assert count == int(sys.argv[2]), count
"""


def measure(argv: list[str]) -> Measured:
    """One whole process, stdout discarded; fails loudly when it does."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryFile() as err:
        run = run_measured(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        if run.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{argv[:4]} failed ({run.returncode}): {err.read()[-2000:]!r}")
    return run


def images_argv(directory: Path) -> list[str]:
    """``kotsrewrite images DIR --format json``."""
    return [sys.executable, "-m", "kotsrewrite", "images", str(directory), "--format", "json"]


def main() -> int:
    """Run the benchmark and print the result lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--memory-docs", type=int, default=20000)
    args = parser.parse_args()

    import yaml  # PyYAML: the libyaml peer

    if not hasattr(yaml, "CSafeLoader"):
        print("PyYAML was built without libyaml; no fair peer", file=sys.stderr)
        return 2
    print(f"load_bench: load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "small"
        directory.mkdir()
        paths = generate(directory, args.docs, files=20)
        size = sum(p.stat().st_size for p in paths) / 1e6
        ours: list[Measured] = []
        peer: list[Measured] = []
        for _ in range(args.runs):  # alternated: both see the same load
            ours.append(measure(images_argv(directory)))
            peer.append(measure([sys.executable, "-c", LIBYAML, str(directory), str(args.docs)]))
        big = Path(tmp) / "big"
        big.mkdir()
        generate(big, args.memory_docs, files=20)
        large = measure(images_argv(big))
    ours_s = min(r.seconds for r in ours)
    peer_s = min(r.seconds for r in peer)
    ratio = ours_s / peer_s
    # CPU seconds (user + system) depend far less on what else runs on the machine.
    cpu_ratio = min(r.cpu for r in ours) / min(r.cpu for r in peer)
    peak = max(r.peak_mb for r in ours)
    print(
        f"images     {ours_s:8.2f} s  peak {peak:6.1f} MB  ({args.docs} documents, {size:.1f} MB,"
        f" {3 * args.docs} image uses; best of {args.runs}: "
        + ", ".join(f"{r.seconds:.2f}" for r in ours)
        + ")"
    )
    print(
        f"libyaml    {peer_s:8.2f} s  peak {max(r.peak_mb for r in peer):6.1f} MB  (PyYAML"
        " CSafeLoader load_all, whole process: " + ", ".join(f"{r.seconds:.2f}" for r in peer) + ")"
    )
    print(
        f"ratio      {ratio:8.2f}   wall (goal <= 2.0; peak goal <= 100 MB);"
        f" CPU {min(r.cpu for r in ours):.2f} s / {min(r.cpu for r in peer):.2f} s ="
        f" {cpu_ratio:.2f}"
    )
    print(
        f"images     {large.seconds:8.2f} s  peak {large.peak_mb:6.1f} MB  ({args.memory_docs}"
        " documents; goal <= 150 MB)"
    )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    print(
        f"RESULT docs={args.docs} ratio_to_libyaml={ratio:.2f} cpu_ratio={cpu_ratio:.2f}"
        f" peak_mb_{args.docs}={peak:.0f}"
        f" peak_mb_{args.memory_docs}={large.peak_mb:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
