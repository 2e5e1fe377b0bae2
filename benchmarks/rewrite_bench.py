"""Benchmark: ``rewrite`` and ``post-render`` of a large base against ``images`` of it, offline.

Generates a base of 800 documents (Deployments, StatefulSets, CronJobs, Services and
ConfigMaps over 20 files; with ``--kustomization`` also a ``kustomization.yaml`` listing them,
so that every command includes the ``kubectl kustomize`` build of the base) that reference 600
unique images on
five registries (half of them private), and a KOTS Installation YAML whose
``spec.knownImages`` holds a verdict for every one of them. Then runs, each in a fresh child
process, alternated ``--repeat`` times (default 3) so that all see the same load:

* ``python -m kotsrewrite images BASE --format json`` (the reference: reading the base),
* ``python -m kotsrewrite rewrite BASE --known-images FILE --offline --out OUT``,
* ``python -m kotsrewrite post-render --known-images FILE --offline`` with the base's files
  concatenated on stdin,

and prints each one's median wall time, its ratio to ``images`` (goal for post-render: <= 3)
and peak memory (the child's own ``ru_maxrss``, largest, through ``tests/peak_rss.py``).
Then times ``kubectl kustomize`` of the midstream written (``--no-kustomize`` skips it) and,
with ``--alt-shape``, of the same midstream with the renames as ``replace`` operations in each
object's patch instead of ``images`` entries (checked to build the same objects).

Run: ``.venv/bin/python benchmarks/rewrite_bench.py [--docs 800] [--images 600]``. The last
line is ``RESULT docs=N images=M images_s=A rewrite_s=B post_render_s=C rewrite_ratio=D
post_render_ratio=E peak_mb=F kustomize_s=G``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.peak_rss import run_measured  # noqa: E402

REGISTRIES = [
    "quay.io/bench",
    "ghcr.io/bench-org",
    "registry.example.com/team",  # no port: a private image on HOST:PORT cannot be proxied
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


def run_once(argv: list[str], stdin: Path | None = None) -> tuple[float, float]:
    """One command in a child process: (seconds, peak MB); exits on failure."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryFile() as err, contextlib.ExitStack() as stack:
        inp = stack.enter_context(stdin.open("rb")) if stdin is not None else subprocess.DEVNULL
        run = run_measured(
            [sys.executable, "-m", "kotsrewrite", *argv],
            cwd=ROOT,
            env=env,
            stdin=inp,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        if run.returncode != 0:
            err.seek(0)
            tail = err.read()[-2000:].decode(errors="replace")
            raise SystemExit(f"{argv[0]} failed (exit {run.returncode}):\n{tail}")
    return run.seconds, run.peak_mb


PLAN_FLAGS = ["--app-slug", "bench-app", "--license-id", "bench-license", "--offline"]


def kustomize_seconds(midstream: Path) -> tuple[float, str]:
    """``kubectl kustomize`` of ``midstream``: (seconds, output)."""
    start = time.perf_counter()
    out = subprocess.run(
        ["kubectl", "kustomize", str(midstream)], check=True, capture_output=True, text=True
    )
    return time.perf_counter() - start, out.stdout


def alternative_shape(base: Path, known: Path, out: Path) -> int:
    """Write the midstream with every rename as a ``replace`` operation in its object's patch
    (no ``images`` entries); returns the number of patches. A proposal, not what kotsrewrite
    writes: kustomize's images transformer costs a pass over every object per entry."""
    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import LiteralScalarString

    import kotsrewrite
    from kotsrewrite._render import KUSTOMIZATION_FILE, dump_yaml

    options = kotsrewrite.RewriteOptions(app_slug="bench-app", license_id="bench-license")
    result = kotsrewrite.rewrite(
        base,
        options,
        out=out,
        dry_run=True,
        known_images=kotsrewrite.load_known_images(known),
        offline=True,
    )
    renamed = {d.image.original: d for d in result.plan.decisions if d.new_name is not None}
    ops: dict[int, list[dict[str, str]]] = {}
    for use in result.inventory.uses:
        decision = renamed.get(use.ref.original)
        if decision is None:
            continue
        if use.resource is None:
            raise SystemExit("the alternative shape needs every image in a PodSpec")
        path = "/" + re.sub(r"\[(\d+)\]", r"/\1", use.location.field).replace(".", "/")
        op = {"op": "replace", "path": path, "value": decision.new_image}
        ops.setdefault(use.resource, []).append(op)
    kustomization = YAML(typ="safe").load(result.files[KUSTOMIZATION_FILE])
    kustomization.pop("images", None)
    kustomization["patches"] = [
        {
            "target": patch.target.to_json(),
            "patch": LiteralScalarString(
                dump_yaml(patch.operations() + ops.pop(patch.resource, []))
            ),
        }
        for patch in result.plan.patches
    ]
    if ops:
        raise SystemExit("the alternative shape needs a patch for every renamed object")
    files = {**result.files, KUSTOMIZATION_FILE: dump_yaml(kustomization)}
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    return len(kustomization["patches"])


def _objects(text: str) -> list[str]:
    import yaml

    return sorted(yaml.safe_dump(d, sort_keys=True) for d in yaml.safe_load_all(text) if d)


def main(argv: list[str] | None = None) -> int:
    """Generate, run, print the table and the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--docs", type=int, default=800)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-kustomize", action="store_true", help="skip kubectl kustomize")
    parser.add_argument(
        "--alt-shape", action="store_true", help="also build the replace-patch midstream"
    )
    parser.add_argument(
        "--kustomization",
        action="store_true",
        help="make the base a kustomization: the run then builds it with kubectl kustomize",
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="kotsrewrite-rewrite-bench-"))
    try:
        base, known = generate(work, args.docs, args.images, kustomization=args.kustomization)
        stdin = work / "all.yaml"
        stdin.write_text("---\n".join(p.read_text() for p in sorted(base.glob("part-*.yaml"))))
        out = work / "midstream"
        what = "a kustomization (built by kubectl kustomize)" if args.kustomization else "files"
        print(
            f"rewrite_bench: {args.docs} documents in {what}, {args.images} unique images, all"
            f" known, --offline; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
        )
        commands = {
            "images": (["images", str(base), "--format", "json"], None),
            "rewrite": (
                [
                    "rewrite",
                    str(base),
                    "--known-images",
                    str(known),
                    *PLAN_FLAGS,
                    "--force",
                    "--out",
                    str(out),
                ],
                None,
            ),
            "post-render": (["post-render", "--known-images", str(known), *PLAN_FLAGS], stdin),
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        peaks: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, (command, given) in commands.items():
                seconds, peak = run_once(command, given)
                times[name].append(seconds)
                peaks[name].append(peak)
        median = {name: statistics.median(values) for name, values in times.items()}
        for name in commands:
            runs = ", ".join(f"{t:.2f}" for t in times[name])
            print(
                f"{name:12} {median[name]:6.2f} s  ({median[name] / median['images']:.2f}x"
                f" images)  peak {max(peaks[name]):6.1f} MB  runs: {runs}"
            )
        kustomize = float("nan")
        if not args.no_kustomize:
            entries = sum(
                1 for line in (out / "kustomization.yaml").read_text().splitlines()
                if line.startswith("- name:")
            )  # fmt: skip
            kustomize, built = kustomize_seconds(out)
            print(
                f"kubectl kustomize of the midstream: {kustomize:.2f} s ({entries} images entries)"
            )
            if args.alt_shape:
                patches = alternative_shape(base, known, work / "alt")
                alt, alt_built = kustomize_seconds(work / "alt")
                same = _objects(alt_built) == _objects(built)
                print(
                    f"kubectl kustomize, renames as replace ops in {patches} patches, no images"
                    f" entries: {alt:.2f} s (same objects built: {same})"
                )
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
        print(
            f"RESULT docs={args.docs} images={args.images} images_s={median['images']:.2f}"
            f" rewrite_s={median['rewrite']:.2f} post_render_s={median['post-render']:.2f}"
            f" rewrite_ratio={median['rewrite'] / median['images']:.2f}"
            f" post_render_ratio={median['post-render'] / median['images']:.2f}"
            f" peak_mb={max(max(v) for v in peaks.values()):.0f} kustomize_s={kustomize:.2f}"
        )
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
