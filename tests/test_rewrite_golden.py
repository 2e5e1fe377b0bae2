"""Golden midstream cases, run through the CLI and built with real ``kubectl kustomize``.

Each case is a directory under ``tests/fixtures/midstream/<case>/``:

* ``base/`` (a directory input), or a single file, or ``stdin.yaml`` fed to ``-``; or a
  kustomization: ``tree`` (a directory, relative to the case, copied as a whole) and ``input``
  (the kustomization directory within it, e.g. ``app/overlays/staging``);
* ``case.json``: ``args`` (CLI flags), ``input`` (``base``, a file name, or ``-``), and
  optional expectations: ``pullSecrets`` (``{"Kind/name": [names in order]}``, or
  ``Kind/namespace/name`` for a namespaced object),
  ``namespaces`` (the namespaces given a secret, sorted), ``built`` (every image of the built
  midstream, sorted), ``locations`` (``{image: ["file:line", ...]}`` as the report gives them,
  files relative to the input) and ``objects`` (``Kind/namespace/name`` of every workload the
  built midstream holds, sorted);
* ``known-images.yaml``: a KOTS Installation with the verdicts (the run is ``--offline``);
* ``expected/``: the midstream written, byte for byte (for a plain directory, a single file or
  stdin, its ``base/`` snapshot included).

The input is never modified: every case checks that its tree is byte for byte what it was.
Regenerate the expected files after an intended change with::

    KOTSREWRITE_REGEN=1 .venv/bin/pytest tests/test_rewrite_golden.py

and review the diff. The input is copied to a temporary directory first, so the base path in
``kustomization.yaml`` is always ``base`` (a snapshot) or ``../<input>`` (a kustomization).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from kotsrewrite._cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "midstream"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "case.json").is_file())
REGEN = os.environ.get("KOTSREWRITE_REGEN") == "1"
KUBECTL = shutil.which("kubectl")


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _run_case(case: str, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, Any]]:
    src = FIXTURES / case
    spec = json.loads((src / "case.json").read_text())
    work = tmp / "work"
    work.mkdir(parents=True)
    out = work / "midstream"
    report = tmp / "report.json"
    if "tree" in spec:
        shutil.copytree(src / spec["tree"], work / Path(spec["tree"]).name)
        path = str(work / spec["input"])
    elif spec["input"] == "-":
        monkeypatch.setattr(sys, "stdin", io.StringIO((src / spec["stdin"]).read_text()))
        path = "-"
    elif (src / spec["input"]).is_dir():
        shutil.copytree(src / spec["input"], work / "base")
        path = str(work / "base")
    else:
        shutil.copy(src / spec["input"], work / spec["input"])
        path = str(work / spec["input"])
    argv = [
        "rewrite",
        path,
        *spec["args"],
        "--known-images",
        str(src / "known-images.yaml"),
        "--offline",
        "--out",
        str(out),
        "--report",
        str(report),
    ]
    err = io.StringIO()
    code = main(argv, stdout=io.StringIO(), stderr=err)
    assert code == 0, err.getvalue()
    assert "written to" in err.getvalue()
    spec["report"] = json.loads(report.read_text())
    spec["stderr"] = err.getvalue()
    return out, spec


def _bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _kustomize(out: Path, *flags: str) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    proc = subprocess.run(
        [KUBECTL, "kustomize", *flags, str(out)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in YAML(typ="safe", pure=True).load_all(proc.stdout) if d]


def _images(node: Any, found: list[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("image", "reference") and isinstance(value, str):
                found.append(value)
            else:
                _images(value, found)
    elif isinstance(node, list):
        for value in node:
            _images(value, found)


def _pod_specs(node: Any, found: list[dict[str, Any]]) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            found.append(node)
        for value in node.values():
            _pod_specs(value, found)
    elif isinstance(node, list):
        for value in node:
            _pod_specs(value, found)


@pytest.mark.kustomize
@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
@pytest.mark.parametrize("case", CASES)
def test_golden_case(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, spec = _run_case(case, tmp_path, monkeypatch)
    expected_dir = FIXTURES / case / "expected"
    got = _tree(out)
    # The input is never modified: every file byte for byte, no file added.
    src = FIXTURES / case
    if "tree" in spec:
        tree = Path(spec["tree"])
        assert _bytes(out.parent / tree.name) == _bytes(src / tree)
    elif spec["input"] != "-" and (src / spec["input"]).is_dir():
        assert _bytes(out.parent / "base") == _bytes(src / spec["input"])
    if REGEN:
        shutil.rmtree(expected_dir, ignore_errors=True)
        for rel, text in got.items():
            (expected_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (expected_dir / rel).write_text(text, encoding="utf-8")
    assert got == _tree(expected_dir)
    assert "base kustomization" not in spec["stderr"]
    resources = YAML(typ="safe", pure=True).load(got["kustomization.yaml"])["resources"]
    if "tree" in spec or (src / spec["input"] / "kustomization.yaml").is_file():
        assert resources[0] == f"../{spec['input']}"
        assert "base/kustomization.yaml" not in got
    else:
        assert resources[0] == "base"
        snapshot = YAML(typ="safe", pure=True).load(got["base/kustomization.yaml"])
        assert sorted(f"base/{r}" for r in snapshot["resources"]) == sorted(
            rel for rel in got if rel.startswith("base/") and rel != "base/kustomization.yaml"
        )
    for rel in got:
        mode = (out / rel).stat().st_mode & 0o777
        assert mode == (0o600 if rel.startswith("pull-secret") else 0o644 & ~_umask()), rel

    report = spec["report"]
    slug = report["appSlug"]
    secret = f"{slug}-registry"
    license_id = spec["args"][spec["args"].index("--license-id") + 1]
    assert license_id not in json.dumps(report)
    assert license_id not in spec["stderr"]

    built = _kustomize(out, *spec.get("kustomizeFlags", []))
    images: list[str] = []
    _images(built, images)
    if "built" in spec:
        assert sorted(images) == spec["built"]
    if "locations" in spec:
        where = {
            e["image"]: sorted(f"{loc['file']}:{loc['line']}" for loc in e["locations"])
            for e in report["images"]
        }
        assert {image: where.get(image) for image in spec["locations"]} == spec["locations"]
    if "objects" in spec:
        workloads = [d for d in built if d["kind"] not in ("Secret", "Namespace", "ConfigMap")]
        assert (
            sorted(
                f"{d['kind']}/{d['metadata'].get('namespace', '')}/{d['metadata']['name']}"
                for d in workloads
            )
            == spec["objects"]
        )
    for entry in report["images"]:
        if entry["action"] == "keep" or entry["newName"] is None:
            assert entry["image"] in images, entry["image"]
        else:
            assert entry["image"] not in images, entry["image"]
            assert entry["newImage"] in images, entry["newImage"]
            tail = entry["image"].removeprefix(entry["image"].split(":")[0].split("@")[0])
            assert entry["newImage"].endswith(tail)  # tag and digest intact

    # One pull secret per namespace, and the ones asked for.
    secrets = [
        (d["metadata"].get("namespace") or report["namespace"])
        for d in built
        if d["kind"] == "Secret" and d["metadata"]["name"] == secret
    ]
    assert len(secrets) == len(set(secrets))
    assert secrets and set(secrets) == set(report["secretNamespaces"])
    if "namespaces" in spec:
        assert sorted(report["secretNamespaces"]) == spec["namespaces"]
    for d in built:
        if d["kind"] == "Secret" and d["metadata"]["name"] == secret:
            assert d["type"] == "kubernetes.io/dockerconfigjson"
            assert d["metadata"]["annotations"] == {"kots.io/app-slug": slug}

    # imagePullSecrets exactly once on every patched PodSpec, never twice anywhere.
    patched = {(p["target"]["kind"], p["target"]["name"]) for p in report["patches"]}
    for d in built:
        pod_specs: list[dict[str, Any]] = []
        _pod_specs(d, pod_specs)
        for pod_spec in pod_specs:
            names = [s["name"] for s in pod_spec.get("imagePullSecrets") or []]
            assert names.count(secret) <= 1
            if (d["kind"], d["metadata"]["name"]) in patched:
                assert names.count(secret) == 1, (d["kind"], d["metadata"]["name"])
        ns = d["metadata"].get("namespace")
        for key in (
            f"{d['kind']}/{d['metadata']['name']}",
            f"{d['kind']}/{ns}/{d['metadata']['name']}",
        ):
            if key in spec.get("pullSecrets", {}):
                got_names = [s["name"] for s in pod_specs[0]["imagePullSecrets"]]
                assert got_names == spec["pullSecrets"][key], key
        assert d["metadata"]["annotations"]["kots.io/app-slug"] == slug


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("case", ["registries", "stdin", "single-file"])
def test_run_twice_is_byte_identical(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = _run_case(case, tmp_path / "a", monkeypatch)
    second, _ = _run_case(case, tmp_path / "b", monkeypatch)
    assert _tree(first) == _tree(second)
    # And again into the same directory (replacing our own output).
    again, _ = _run_case(case, tmp_path / "c", monkeypatch)
    before = _tree(again)
    spec = json.loads((FIXTURES / case / "case.json").read_text())
    src = (
        str(again.parent / "base") if spec["input"] == "base" else str(again.parent / spec["input"])
    )
    if spec["input"] == "-":
        monkeypatch.setattr(sys, "stdin", io.StringIO((FIXTURES / case / "stdin.yaml").read_text()))
        src = "-"
    argv = ["rewrite", src, *spec["args"], "--offline", "--out", str(again)]
    argv += ["--known-images", str(FIXTURES / case / "known-images.yaml")]
    assert main(argv, stdout=io.StringIO(), stderr=io.StringIO()) == 0
    assert _tree(again) == before
