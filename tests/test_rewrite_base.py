"""A plain base directory is snapshotted into the midstream, never written; YAML libyaml
rejects is retried."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from kotsrewrite._cli import main

FIX = Path(__file__).parent / "fixtures" / "midstream" / "registries"
ARGS = ["--app-slug", "acme", "--license-id", "LIC-BASE-7", "--offline"]
KNOWN = ["--known-images", str(FIX / "known-images.yaml")]
KUBECTL = shutil.which("kubectl")


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones too), as bytes."""
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


def _stat(root: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.stat().st_mode)
        for p in [root, *root.rglob("*")]
    }


@pytest.mark.kustomize
@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
def test_plain_directory_is_snapshotted_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = Path(shutil.copytree(FIX / "base", tmp_path / "src" / "manifests"))
    before, stat_before = _tree(base), _stat(base)
    out = tmp_path / "far" / "away" / "mid"  # not beside the base
    report = tmp_path / "report.json"
    monkeypatch.chdir(tmp_path / "src")
    argv = ["rewrite", "manifests", *ARGS, *KNOWN, "--out", str(out), "--report", str(report)]
    code, _, err = _run(argv)
    assert code == 0, err
    assert f"(base copied with its own kustomization into {out}/base)" in err
    assert "baseKustomization" not in json.loads(report.read_text())

    # The input: every file byte for byte, no file added, not even touched.
    assert _tree(base) == before
    assert _stat(base) == stat_before
    # The midstream: a snapshot of what was read, byte for byte, with its own kustomization.
    snapshot = _tree(out / "base")
    assert snapshot.pop("kustomization.yaml").decode() == (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources:\n- apps/api.yaml\n- svc.yml\n"
    )
    assert snapshot == before
    assert "\n- base\n" in (out / "kustomization.yaml").read_text()

    built = _build(out)
    images = [c["image"] for d in built for c in _containers(d)]
    assert "proxy.replicated.com/proxy/acme/quay.io/acme/api:1.2.3" in images
    assert "quay.io/acme/api:1.2.3" not in images

    # A second run writes the same bytes and still touches nothing in the input.
    first = _tree(out)
    code, _, err = _run(argv)
    assert code == 0, err
    assert _tree(out) == first
    assert _tree(base) == before and _stat(base) == stat_before


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers", [])) + list(spec.get("initContainers", []))


@pytest.mark.kustomize
@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
def test_plain_directory_that_gains_and_loses_files_between_runs(tmp_path: Path) -> None:
    base = Path(shutil.copytree(FIX / "base", tmp_path / "base"))
    out = tmp_path / "mid"
    argv = ["rewrite", str(base), *ARGS, "--proxy-all", "--out", str(out)]
    code, _, err = _run(argv)
    assert code == 0, err
    code, stdout, _ = _run(["verify", str(out), "--base", str(base)])
    assert code == 0, stdout

    # A file added to the base: verify --base says the midstream is stale; a re-run has it.
    (base / "extra.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: extra}\nspec:\n"
        "  containers: [{name: x, image: ghcr.io/acme/extra:3}]\n"
    )
    code, stdout, _ = _run(["verify", str(out), "--base", str(base)])
    assert code == 1
    assert f"{base}/extra.yaml: in the base but not in the midstream's snapshot" in stdout
    code, _, err = _run(argv)
    assert code == 0, err
    [pod] = [d for d in _build(out) if d["kind"] == "Pod" and d["metadata"]["name"] == "extra"]
    assert pod["spec"]["containers"][0]["image"] == (
        "proxy.replicated.com/proxy/acme/ghcr.io/acme/extra:3"
    )
    assert pod["spec"]["imagePullSecrets"] == [{"name": "acme-registry"}]
    assert _run(["verify", str(out), "--base", str(base)])[0] == 0

    # A file changed, then one removed: reported, and a re-run has no trace of it.
    (base / "extra.yaml").write_text((base / "extra.yaml").read_text().replace(":3", ":4"))
    code, stdout, _ = _run(["verify", str(out), "--base", str(base)])
    assert code == 1 and f"{base}/extra.yaml: changed since the midstream's snapshot" in stdout
    (base / "extra.yaml").unlink()
    code, stdout, _ = _run(["verify", str(out), "--base", str(base)])
    assert code == 1 and "in the midstream's snapshot but no longer in the base" in stdout
    code, _, err = _run(argv)
    assert code == 0, err
    assert "extra" not in {d["metadata"]["name"] for d in _build(out)}
    assert not (out / "base" / "extra.yaml").exists()
    assert sorted(p.name for p in base.iterdir()) == ["apps", "svc.yml"]

    # A midstream made from another base.
    other = Path(shutil.copytree(FIX / "base", tmp_path / "other"))
    (other / "svc.yml").write_text((other / "svc.yml").read_text() + "\n")
    code, stdout, _ = _run(["verify", str(out), "--base", str(other)])
    assert code == 1 and f"{other}/svc.yml: changed since" in stdout


def test_read_only_base_is_fine(tmp_path: Path) -> None:
    base = Path(shutil.copytree(FIX / "base", tmp_path / "base"))
    before = _tree(base)
    for path in [base, *base.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    out = tmp_path / "mid"
    try:
        code, _, err = _run(["rewrite", str(base), *ARGS, *KNOWN, "--out", str(out)])
    finally:
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert code == 0, err
    assert _tree(base) == before
    assert (out / "base" / "svc.yml").read_bytes() == before["svc.yml"]


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


@pytest.mark.parametrize(
    "kustomization",
    [
        False,
        pytest.param(
            True,
            marks=[
                pytest.mark.kustomize,
                pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed"),
            ],
        ),
    ],
)
def test_output_inside_the_input_directory_is_refused(tmp_path: Path, kustomization: bool) -> None:
    base = Path(shutil.copytree(FIX / "base", tmp_path / "base"))
    if kustomization:
        (base / "kustomization.yaml").write_text("resources: [apps/api.yaml, svc.yml]\n")
    before = _tree(base)
    code, _, err = _run(["rewrite", str(base), *ARGS, *KNOWN, "--out", str(base / "mid")])
    assert code == 2
    assert f"kotsrewrite: error: {base}/mid: inside the base directory {base}" in err
    assert "hint: choose an output directory outside the base" in err
    assert _tree(base) == before
    assert sorted(p.name for p in base.iterdir()) == sorted({p.split("/")[0] for p in before})


def test_verify_base_of_a_single_file(tmp_path: Path) -> None:
    app = tmp_path / "app.yaml"
    app.write_bytes((FIX / "base" / "svc.yml").read_bytes())
    out = tmp_path / "mid"
    code, _, err = _run(["rewrite", str(app), *ARGS, "--proxy-all", "--out", str(out)])
    assert code == 0, err
    if KUBECTL is not None:
        assert _run(["verify", str(out), "--base", str(app)])[0] == 0
    from kotsrewrite._snapshot import snapshot_problems

    assert snapshot_problems(out, app) == []
    app.write_bytes(app.read_bytes() + b"# edited\n")
    assert snapshot_problems(out, app) == [
        f"{app}: changed since the midstream's snapshot; run kotsrewrite rewrite again on the base"
    ]
    assert snapshot_problems(out, tmp_path / "nope") == [
        f"--base {tmp_path / 'nope'}: no such file or directory"
    ]


@pytest.mark.kustomize
@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
def test_a_named_pipe_is_snapshotted_with_what_was_read(tmp_path: Path) -> None:
    """``rewrite <(helm template ...)``: a pipe cannot be read twice, so the base snapshot
    holds the text the loader read (it was an empty file, and the midstream built nothing)."""
    import os
    import threading

    fifo = tmp_path / "rendered.yaml"
    os.mkfifo(fifo)
    text = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n"
        "  containers: [{name: c, image: quay.io/acme/api:1}]\n"
    )

    def feed() -> None:
        with fifo.open("w") as fh:
            fh.write(text)

    writer = threading.Thread(target=feed)
    writer.start()
    out = tmp_path / "mid"
    argv = ["rewrite", str(fifo), "--app-slug", "acme", "--license-id", "L-1", "--proxy-all"]
    # A subprocess with a time limit: reading the pipe a second time blocks for ever.
    proc = subprocess.run(
        [sys.executable, "-m", "kotsrewrite", *argv, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    writer.join(5)
    assert proc.returncode == 0, proc.stderr
    assert (out / "base" / "rendered.yaml").read_text() == text
    [pod] = [d for d in _build(out) if d["kind"] == "Pod"]
    spec = pod["spec"]
    assert spec["containers"][0]["image"] == "proxy.replicated.com/proxy/acme/quay.io/acme/api:1"
    assert spec["imagePullSecrets"] == [{"name": "acme-registry"}]
