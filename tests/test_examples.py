"""The README's quick start, run exactly as written, in a fresh virtual environment.

The shell blocks marked ``<!-- test:quickstart -->`` and ``<!-- test:explore -->`` run verbatim
(one bash script, ``set -euo pipefail``) in a copy of this repository: ``python3 -m venv``,
``pip install .`` (kotsrewrite and its dependencies, offline: pip is pointed at the
wheelhouse ``scripts/setup`` builds in ``.cache/wheels``), ``examples/rewrite.sh``, then the
commands exploring the result, including ``examples/library_example.py``. The built
midstream must show every private image renamed and the others untouched. Slow (tens of
seconds: venv + pip install).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_readme import README, ROOT, readme_blocks

pytestmark = [pytest.mark.slow, pytest.mark.kustomize]

PROXY = "proxy.replicated.com/proxy/acme-platform/"
PRIVATE = (
    "quay.io/acme/api:2.4.1",
    "quay.io/acme/pipeline-runner:2.4.1",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/acme/worker:2.4.1",
    "ghcr.io/acme/migrate:2.4.1@sha256:5fdd41b6c46b73876a261b80ba0871493d3fb029c3c30cad5c9586e747bb746c",
)
UNTOUCHED = (
    "nginx:1.27",
    "nginx/nginx-prometheus-exporter:1.3.0",
    "postgres:16",
    "redis:7.2",
    "bitnami/kubectl:1.32",
    "registry.replicated.com/acme-platform/reporter:1.0",
)


def _copy_repo(dest: Path) -> None:
    """The files a clone would have (tracked and new, not ignored), without local state."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        rel = raw.decode()
        if not rel or rel.startswith("demo/") or not (ROOT / rel).is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)


def test_quick_start_runs_as_written(tmp_path: Path) -> None:
    if not (shutil.which("kubectl") or shutil.which("kustomize")):
        pytest.fail("kubectl or kustomize must be on PATH (scripts/setup says so)")
    text = README.read_text()
    quickstart = readme_blocks(text, "quickstart")
    explore = readme_blocks(text, "explore")
    assert len(quickstart) == 1 and len(explore) == 1
    repo = tmp_path / "clone"
    _copy_repo(repo)
    script = "\n".join(
        [
            "set -euo pipefail",
            quickstart[0],
            # (explore's `cd` is undone for the checks below)
            "(",
            explore[0],
            ")",
            # checks, not from the README: which kotsrewrite ran
            "echo CHECK-BIN $(command -v kotsrewrite)",
            'echo CHECK-PKG $(cd / && python -c "import kotsrewrite; print(kotsrewrite.__file__)")',
        ]
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    # The README's `pip install .` runs word for word, but from the wheelhouse scripts/setup
    # fills (tests never reach beyond loopback).
    wheels = ROOT / ".cache" / "wheels"
    if not any(wheels.glob("*.whl")):
        pytest.fail(f"no wheelhouse in {wheels}: run scripts/setup")
    env["PIP_NO_INDEX"] = "1"
    env["PIP_FIND_LINKS"] = str(wheels)
    # a PATH without the project's .venv, so only the fresh environment provides kotsrewrite
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    run = subprocess.run(
        ["bash", "-c", script],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    out = run.stdout

    fresh = repo / "demo" / "venv"
    assert f"CHECK-BIN {fresh}/bin/kotsrewrite" in out
    assert f"CHECK-PKG {fresh}/lib/" in out, out  # installed, not this checkout

    # examples/rewrite.sh's kustomize build: private renamed (tag/digest kept), others untouched
    built = {line.split("image: ", 1)[1] for line in out.splitlines() if " image: " in line}
    assert built == {PROXY + image for image in PRIVATE} | set(UNTOUCHED), out
    assert "10 images: 4 private, 5 public, 0 unknown" in run.stderr

    # the explore block: images table, the kustomization, verify, the library example
    assert "quay.io/acme/api:2.4.1" in out and "api.yaml:" in out
    assert "kind: Kustomization" in out
    for image in PRIVATE:
        assert f"proxy       {image} -> {PROXY}{image}" in out, out
    assert "midstream files: kustomization.yaml, pull-secret-acme-jobs.yaml, pull-secret.yaml" in (
        out
    )
    lib_out = repo / "demo" / "lib" / "midstream"
    assert (lib_out / "kustomization.yaml").is_file()
    lib_build = subprocess.run(
        ["kubectl", "kustomize", str(lib_out)], capture_output=True, text=True, check=True
    ).stdout
    for image in PRIVATE:
        assert f"image: {PROXY}{image}" in lib_build
    # the example leaves the example directory as it was
    assert not (repo / "examples" / "acme" / "manifests" / "kustomization.yaml").exists()
    assert not (repo / "examples" / "acme" / "midstream").exists()
