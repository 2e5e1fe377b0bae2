"""Scale: loading frees node trees as it goes, and the work of images, rewrite and post-render
grows linearly with documents and images.

Work is counted, not timed: every Python and C function call made while a command runs
(``sys.setprofile``), on a generated base and on one twice its size (twice the documents,
twice the images). Linear code does about twice the work on the doubled base; code that scans
every object per patch, or tries every ``images`` entry on every object or image, does about
four times as much.
"""

from __future__ import annotations

import functools
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kotsrewrite import RewriteOptions, find_images, load_manifests, rewrite
from kotsrewrite._cli import main
from kotsrewrite._discovery import scan_manifests
from kotsrewrite._kustomize_images import RenameIndex
from kotsrewrite._model import Evidence, ProbeResult, Verdict
from kotsrewrite._plan import build_plan
from kotsrewrite._postrender import dump_documents, post_render
from kotsrewrite._reference import ImageRef

from .peak_rss import run_measured

REGISTRIES = ("quay.io/acme", "ghcr.io/acme", "registry.example.com:5000/team", "docker.io/acme")
WORKLOAD = """\
apiVersion: apps/v1
kind: {kind}
metadata:
  name: app-{i}
  namespace: ns-{ns}
spec:
  template:
    metadata:
      labels: {{app: app-{i}}}
    spec:
      initContainers:
      - name: init
        image: {a}
      containers:
      - name: app
        image: {b}
        ports: [{{containerPort: 8080}}]
        env:
        - {{name: MODE, value: "on"}}
"""
CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg-{i}
data:
  note: "image: {a}"
"""


def _image(n: int) -> str:
    registry = REGISTRIES[n % len(REGISTRIES)]
    if n % 11 == 5:
        return f"bitnami/tool-{n}:1.{n % 3}"  # Docker Hub, short form
    if n % 7 == 3:
        return f"{registry}/svc-{n}@sha256:{n:064x}"
    return f"{registry}/svc-{n}:1.{n % 5}"


def _generate(root: Path, docs: int, images: int) -> tuple[Path, list[ProbeResult]]:
    """A base directory of ``docs`` objects over 4 files using ``images`` images, and verdicts
    for them all (every other one private)."""
    base = root / "base"
    base.mkdir(parents=True)
    parts: list[list[str]] = [[], [], [], []]
    k = 0
    for i in range(docs):
        a, b = _image(k % images), _image((k + 1) % images)
        if i % 4 == 3:
            parts[i % 4].append(CONFIGMAP.format(i=i, a=a))
            continue
        k += 2
        kind = ("Deployment", "StatefulSet", "DaemonSet")[i % 4]
        parts[i % 4].append(WORKLOAD.format(kind=kind, i=i, ns=i % 3, a=a, b=b))
    for n, texts in enumerate(parts):
        (base / f"part-{n}.yaml").write_text("---\n".join(texts))
    results = [
        ProbeResult(
            ImageRef.parse(_image(n)),
            Verdict.PRIVATE if n % 2 else Verdict.PUBLIC,
            Evidence(reason="test"),
        )
        for n in range(images)
    ]
    return base, results


def _calls(fn: Callable[[], Any]) -> int:
    """Function calls (Python and C) made while ``fn`` runs."""
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count


def _work(tmp_path: Path, docs: int, images: int) -> dict[str, int]:
    base, results = _generate(tmp_path / f"{docs}", docs, images)
    options = RewriteOptions(app_slug="acme", license_id="LIC-scale")
    text = "---\n".join(p.read_text() for p in sorted(base.glob("part-*.yaml")))

    def images_json() -> None:
        out = io.StringIO()
        assert main(["images", str(base), "--format", "json"], stdout=out) == 0
        assert len(json.loads(out.getvalue())["images"]) == images

    def rewrite_base() -> None:
        result = rewrite(base, options, dry_run=True, known_images=results, offline=True)
        assert len(result.plan.decisions) == images
        assert result.plan.renames and result.plan.patches

    def post_render_stdin() -> None:
        result = rewrite(
            "-",
            options,
            dry_run=True,
            known_images=results,
            offline=True,
            stdin=io.StringIO(text),
        )
        out = dump_documents(post_render(result.base, result.plan))
        assert "proxy.replicated.com/proxy/acme/" in out

    return {
        "images": _calls(images_json),
        "rewrite": _calls(rewrite_base),
        "post-render": _calls(post_render_stdin),
    }


def test_work_grows_linearly_with_documents_and_images(tmp_path: Path) -> None:
    small = _work(tmp_path, 120, 80)
    large = _work(tmp_path, 240, 160)
    ratios = {name: large[name] / small[name] for name in small}
    # Linear: ~2.0 (a little over for longer names and sorting); quadratic code: 3 to 4.
    assert all(1.8 <= ratio <= 2.25 for ratio in ratios.values()), (ratios, small, large)


def test_plan_work_grows_linearly_with_images(tmp_path: Path) -> None:
    # The planner's checks of its images entries (does a name catch another image? what does
    # each image become?) tried every entry on every image: hundreds of images show it.
    options = RewriteOptions(app_slug="acme", license_id="LIC-scale")
    work = []
    for docs, images in ((200, 300), (400, 600)):
        base, results = _generate(tmp_path / f"{docs}", docs, images)
        inventory = find_images(load_manifests(base))
        work.append(_calls(functools.partial(build_plan, inventory, results, options)))
    assert 1.8 <= work[1] / work[0] <= 2.25, work


def test_rename_index_looks_at_a_few_candidates() -> None:
    names = [f"quay.io/acme/svc-{n}" for n in range(400)] + [r"quay\.io/acme/x", "nginx"]
    index = RenameIndex(names)
    before = RenameIndex.checks
    assert index.matching("quay.io/acme/svc-7:1.0") == [7]
    assert index.matching("quayXio/acme/svc-7") == [7]  # kustomize's unescaped regex
    assert index.matching("quayXio/acme/x") == []
    assert index.matching("quay.io/acme/x@sha256:" + "0" * 64) == [400]
    assert index.matching("nginx:1.25") == [401]
    assert index.matching("quay.io/acme/svc-7/extra") == []
    assert RenameIndex.checks - before < 30


# --------------------------------------------------------------------------------------------
# Loading keeps only what later stages need


def test_scan_without_nodes_finds_what_load_and_find_find(tmp_path: Path) -> None:
    base, _ = _generate(tmp_path, 40, 30)
    expected = find_images(load_manifests(base))
    for keep in ("none", "needed", "all"):
        loaded, inventory = scan_manifests(base, keep=keep)  # type: ignore[arg-type]
        assert inventory.uses == expected.uses
        assert inventory.unmanaged == expected.unmanaged
        assert [r.pod_specs for r in inventory.resources] == [
            r.pod_specs for r in expected.resources
        ]
        resources = {id(r.document) for r in inventory.resources}
        assert resources <= {id(d) for d in loaded.documents}
        for doc in loaded.documents:
            kept = keep == "all" or (keep == "needed" and id(doc) in resources)
            assert (doc.node is not None) is kept, (keep, doc)


@pytest.mark.kustomize
def test_scan_of_a_kustomization_walks_every_object_kustomize_built(tmp_path: Path) -> None:
    base, _ = _generate(tmp_path, 12, 8)
    (base / "kustomization.yaml").write_text(
        "resources:\n" + "".join(f"- part-{n}.yaml\n" for n in range(4))
    )
    expected = find_images(load_manifests(base))
    loaded, inventory = scan_manifests(base, keep="none")
    assert loaded.mode == "kustomize" and len(loaded.documents) == 12
    assert inventory.uses == expected.uses and len(inventory.uses) == 18


def test_scan_retrying_a_file_with_the_pure_parser_delivers_each_object_once(
    tmp_path: Path,
) -> None:
    # libyaml rejects the flow mapping of the third document (go-yaml reads it): the file is
    # read again with the pure parser after the first two objects were already walked.
    (tmp_path / "a.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n"
        "  containers: [{name: a, image: 'quay.io/a/a:1'}]\n"
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n"
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: c}\nspec:\n"
        "  containers: [{name: c, image: nginx:1.25}]\n"
    )
    base, inventory = scan_manifests(tmp_path / "a.yaml", keep="none")
    assert [d.name for d in base.documents] == ["a", "b", "c"]
    assert [u.ref.original for u in inventory.uses] == ["quay.io/a/a:1", "nginx:1.25"]
    assert [r.document.name for r in inventory.resources] == ["a", "c"]


def test_images_memory_does_not_grow_with_manifest_size(tmp_path: Path) -> None:
    # 3,000 ConfigMaps of nested data (6 MB) and one image: composed node trees kept to the
    # end took ~10x the text; loaded one at a time, the peak is the interpreter's own.
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n"
                    "  containers: [{name: a, image: 'quay.io/a/a:1'}]\n")  # fmt: skip
    big = tmp_path / "big.yaml"
    body = "".join(f"    k{j}: {{a: [1, 2, {{b: c{j}}}], d: value-{j}}}\n" for j in range(50))
    with big.open("w") as fh:
        fh.write(tiny.read_text())
        for i in range(3000):
            fh.write(f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\ndata:\n")
            fh.write(f"  x:\n{body}")
    assert big.stat().st_size > 5_000_000

    def peak(path: Path) -> float:
        run = run_measured(
            [sys.executable, "-m", "kotsrewrite", "images", str(path), "--format", "json"],
            stdout=-3,  # subprocess.DEVNULL
            timeout=120,
        )
        assert run.returncode == 0
        return run.peak_mb

    baseline, loaded = peak(tiny), peak(big)
    assert loaded - baseline < 25, (baseline, loaded)


def test_a_plan_needs_only_the_nodes_scan_keeps(tmp_path: Path) -> None:
    base, results = _generate(tmp_path, 40, 30)
    options = RewriteOptions(app_slug="acme", license_id="LIC-scale")
    _, inventory = scan_manifests(base, keep="needed")
    expected = rewrite(base, options, dry_run=True, known_images=results, offline=True).plan
    assert build_plan(inventory, results, options) == expected
