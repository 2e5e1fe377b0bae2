"""Benchmark: the whole ``kotsrewrite rewrite`` of a large base, offline, images known.

Generates a base of 2,000 documents (Deployments, StatefulSets, CronJobs, Services and
ConfigMaps over 20 files; with ``--kustomization`` also a ``kustomization.yaml`` listing them,
so the run includes the ``kubectl kustomize`` build of the base) that reference 500 unique
images on
five registries (half of them private), and a KOTS Installation YAML whose
``spec.knownImages`` holds a verdict for every one of them. Then runs, in a fresh child
process, ``python -m kotsrewrite rewrite BASE --known-images FILE --offline --out OUT``
(no network: every image is known) and reports the child's wall time and peak memory
(``ru_maxrss`` of that child alone, through ``tests/peak_rss.py``). ``--repeat`` runs
(default 3): the median time and the largest peak are printed.

Run: ``.venv/bin/python benchmarks/rewrite_bench.py [--docs 2000] [--images 500]``. The last
line is ``RESULT docs=N images=M seconds=X peak_mb=Y``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.peak_rss import run_measured  # noqa: E402

REGISTRIES = [
    "quay.io/bench",
    "ghcr.io/bench-org",
    "registry.example.com:5000/team",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com",
    "docker.io/benchlib",
]

DEPLOYMENT = """\
apiVersion: apps/{api}
kind: {kind}
metadata:
  name: app-{i}
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
      initContainers:
      - name: migrate
        image: {img_a}
        command: ["/bin/migrate", "--up"]
      containers:
      - name: app
        image: {img_b}
        args: ["--port=8080", "--log-level=info"]
        ports:
        - name: http
          containerPort: 8080
        env:
        - name: DATABASE_URL
          valueFrom:
            secretKeyRef: {{name: db, key: url}}
        resources:
          requests: {{cpu: 100m, memory: 128Mi}}
          limits: {{cpu: 500m, memory: 256Mi}}
        readinessProbe:
          httpGet: {{path: /healthz, port: http}}
"""

CRONJOB = """\
apiVersion: batch/v1
kind: CronJob
metadata:
  name: job-{i}
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: job
            image: {img_a}
            args: ["run", "--once"]
"""

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: svc-{i}
spec:
  selector:
    app.kubernetes.io/name: app-{i}
  ports:
  - name: http
    port: 80
    targetPort: http
"""

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg-{i}
data:
  settings.yaml: |
    level: info
    peers: [a, b, c]
  image-note: "not an image field: {img_a}"
"""


def image(n: int) -> str:
    """The n-th unique image (0 <= n < images)."""
    reg = REGISTRIES[n % len(REGISTRIES)]
    if n % 7 == 3:
        return f"{reg}/svc-{n}@sha256:{n:064x}"
    return f"{reg}/svc-{n}:1.{n % 13}"


def generate(
    root: Path, docs: int, images: int, files: int = 20, *, kustomization: bool = False
) -> tuple[Path, Path]:
    """Write the base and the known-images file; returns (base dir, known-images file)."""
    base = root / "base"
    base.mkdir(parents=True)
    per_file: list[list[str]] = [[] for _ in range(files)]
    used: set[int] = set()
    k = 0  # next image, round robin so that all `images` appear
    for i in range(docs):
        kind = i % 5
        a, b = k % images, (k + 1) % images
        if kind in (0, 1, 2):
            k += 2
            used.update((a, b))
            tmpl = DEPLOYMENT
            api, kname = ("v1", "Deployment") if kind != 2 else ("v1", "StatefulSet")
            text = tmpl.format(i=i, api=api, kind=kname, img_a=image(a), img_b=image(b))
        elif kind == 3:
            k += 1
            used.add(a)
            text = CRONJOB.format(i=i, img_a=image(a))
        else:
            text = (SERVICE if i % 10 == 4 else CONFIGMAP).format(i=i, img_a=image(a))
        per_file[i % files].append(text)
    names = []
    for f, texts in enumerate(per_file):
        name = f"part-{f:02d}.yaml"
        (base / name).write_text("---\n".join(texts))
        names.append(name)
    if kustomization:
        (base / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
            + "".join(f"- {n}\n" for n in names)
        )
    known = root / "installation.yaml"
    lines = [
        "apiVersion: kots.io/v1beta1",
        "kind: Installation",
        "metadata: {name: bench}",
        "spec:",
        "  knownImages:",
    ]
    for n in sorted(used):
        lines.append(f"  - image: {image(n)}")
        lines.append(f"    isPrivate: {'true' if n % 2 else 'false'}")
    known.write_text("\n".join(lines) + "\n")
    if len(used) != images:
        raise SystemExit(f"generator bug: {len(used)} images used, wanted {images}")
    return base, known


def run_once(base: Path, known: Path, out: Path) -> tuple[float, float, int, str]:
    """One rewrite in a child process: (seconds, peak MB, exit code, stderr tail)."""
    shutil.rmtree(out, ignore_errors=True)
    argv = [
        sys.executable,
        "-m",
        "kotsrewrite",
        "rewrite",
        str(base),
        "--known-images",
        str(known),
        "--offline",
        "--app-slug",
        "bench-app",
        "--license-id",
        "bench-license",
        "--out",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryFile() as err:
        run = run_measured(
            argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
        )
        err.seek(0)
        tail = err.read()[-2000:].decode(errors="replace")
    return run.seconds, run.peak_mb, run.returncode, tail


def main(argv: list[str] | None = None) -> int:
    """Generate, run, print the table and the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--kustomization",
        action="store_true",
        help="make the base a kustomization: the run then builds it with kubectl kustomize",
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="kotsrewrite-rewrite-bench-"))
    try:
        base, known = generate(work, args.docs, args.images, kustomization=args.kustomization)
        what = "a kustomization (built by kubectl kustomize)" if args.kustomization else "files"
        print(
            f"rewrite_bench: {args.docs} documents in {what}, {args.images} unique images, all"
            f" known, --offline; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
        )
        times, peaks = [], []
        for n in range(args.repeat):
            seconds, peak, code, err = run_once(base, known, work / "midstream")
            if code != 0:
                print(f"rewrite failed (exit {code}):\n{err}")
                return 1
            files = sum(1 for p in (work / "midstream").rglob("*") if p.is_file())
            print(f"run {n + 1}: {seconds:.3f} s, peak {peak:.1f} MB, {files} files written")
            times.append(seconds)
            peaks.append(peak)
        print(
            f"RESULT docs={args.docs} images={args.images} seconds={statistics.median(times):.2f}"
            f" peak_mb={max(peaks):.0f}"
        )
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
