"""A plain base directory gets a kustomization of its own; YAML libyaml rejects is retried."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

import kotsrewrite._write
from kotsrewrite._cli import main

FIX = Path(__file__).parent / "fixtures" / "midstream" / "registries"
ARGS = ["--app-slug", "acme", "--license-id", "LIC-BASE-7", "--offline"]
KNOWN = ["--known-images", str(FIX / "known-images.yaml")]
KUBECTL = shutil.which("kubectl")


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _build(out: Path) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    proc = subprocess.run([KUBECTL, "kustomize", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return [d for d in YAML(typ="safe", pure=True).load_all(proc.stdout) if d]


@pytest.mark.kustomize
@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
def test_plain_directory_gets_one_kustomization_and_builds_from_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = Path(shutil.copytree(FIX / "base", tmp_path / "src" / "manifests"))
    before = _tree(base)
    stat_before = {p: (base / p).stat().st_mtime_ns for p in before}
    out = tmp_path / "far" / "away" / "mid"  # not beside the base
    report = tmp_path / "report.json"
    monkeypatch.chdir(tmp_path / "src")
    argv = ["rewrite", "manifests", *ARGS, *KNOWN, "--out", str(out), "--report", str(report)]
    code, _, err = _run(argv)
    assert code == 0, err
    assert "wrote base kustomization: manifests/kustomization.yaml" in err
    assert json.loads(report.read_text())["baseKustomization"] == "manifests/kustomization.yaml"

    after = _tree(base)
    assert set(after) - set(before) == {"kustomization.yaml"}  # exactly one new file
    assert {p: after[p] for p in before} == before  # nothing else changed
    assert {p: (base / p).stat().st_mtime_ns for p in before} == stat_before
    assert (base / "kustomization.yaml").stat().st_mode & 0o777 == 0o644 & ~_umask()
    assert sorted(p.name for p in base.iterdir()) == ["apps", "kustomization.yaml", "svc.yml"]
    text = (base / "kustomization.yaml").read_text()
    assert text.startswith("# written by kotsrewrite")
    data = YAML(typ="safe", pure=True).load(text)
    assert data == {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["apps/api.yaml", "svc.yml"],
    }
    mid = (out / "kustomization.yaml").read_text()
    assert "\n- ../../../src/manifests\n" in mid

    # kustomize builds it although the base is outside the midstream's root.
    built = _build(out)
    images = [c["image"] for d in built for c in _containers(d)]
    assert "proxy.replicated.com/proxy/acme/quay.io/acme/api:1.2.3" in images
    assert "quay.io/acme/api:1.2.3" not in images

    # A second run reads the kustomize base and writes the same bytes, adding nothing.
    first = _tree(out)
    code, _, err = _run(argv)
    assert code == 0, err
    assert "base kustomization" not in err
    assert _tree(out) == first
    assert _tree(base) == after
    assert json.loads(report.read_text())["baseKustomization"] is None


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers", [])) + list(spec.get("initContainers", []))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_unwritable_base_fails_with_hint_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = Path(shutil.copytree(FIX / "base", tmp_path / "base"))
    before = _tree(base)
    if os.geteuid() == 0:  # root writes anywhere: make the staging fail as EACCES would

        def denied(*_args: Any, **_kwargs: Any) -> Any:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(kotsrewrite._write.tempfile, "mkstemp", denied)
    else:
        base.chmod(0o555)
    out = tmp_path / "mid"
    try:
        code, _, err = _run(["rewrite", str(base), *ARGS, *KNOWN, "--out", str(out)])
    finally:
        base.chmod(0o755)
    assert code == 2, err
    assert "kustomization.yaml: cannot write: Permission denied" in err
    assert "hint:" in err and "single file" in err and "kustomization.yaml" in err
    assert not out.exists()
    assert _tree(base) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]


def test_midstream_refused_leaves_base_untouched(tmp_path: Path) -> None:
    base = Path(shutil.copytree(FIX / "base", tmp_path / "base"))
    out = tmp_path / "mid"
    out.mkdir()
    (out / "theirs.txt").write_text("x")
    code, _, err = _run(["rewrite", str(base), *ARGS, *KNOWN, "--out", str(out)])
    assert code == 2 and "not written by kotsrewrite" in err
    assert sorted(p.name for p in base.iterdir()) == ["apps", "svc.yml"]  # no temp file left


@pytest.mark.kustomize
@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
def test_flow_mapping_with_colon_in_plain_scalar_is_read(tmp_path: Path) -> None:
    # libyaml rejects `image: nginx:1.25` inside a flow mapping; kubectl (go-yaml) accepts it.
    base = tmp_path / "base"
    base.mkdir()
    (base / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n"
        "  containers: [{name: web, image: quay.io/acme/api:1.2.3}]\n"
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {on: 'yes'}\n"
    )
    out = tmp_path / "mid"
    code, stdout, err = _run(
        ["rewrite", str(base), *ARGS, *KNOWN, "--out", str(out), "--report", "-"]
    )
    assert code == 0, err
    report = json.loads(stdout)
    [entry] = report["images"]
    assert entry["image"] == "quay.io/acme/api:1.2.3"
    assert entry["locations"][0]["line"] == 5
    [pod] = [d for d in _build(out) if d["kind"] == "Pod"]
    assert pod["spec"]["containers"][0]["image"] == (
        "proxy.replicated.com/proxy/acme/quay.io/acme/api:1.2.3"
    )
    assert pod["spec"]["imagePullSecrets"] == [{"name": "acme-registry"}]


def test_yaml_error_both_parsers_reject_reports_file_line(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "a.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n")
    (base / "b.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\n---\nkind: [a, b\nx: 1\n"
    )
    code, _, err = _run(["rewrite", str(base), *ARGS, "--out", str(tmp_path / "mid")])
    assert code == 2
    assert f"kotsrewrite: error: {base}/b.yaml:6: YAML error:" in err
    assert sorted(p.name for p in base.iterdir()) == ["a.yaml", "b.yaml"]
