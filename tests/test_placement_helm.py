"""post-render places pull secrets by the CRD rules under real ``helm template`` (Helm 3).

Helm hands a post-renderer the rendered ``templates/``; a chart's ``crds/`` directory only
with ``helm template --include-crds`` (never on ``helm install``). Helm comes from
scripts/setup (``.cache/bin/helm3``) or PATH; absent: skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "placement" / "argo-workflows"
SECRET = "acme-registry"


def _helm() -> str:
    local = ROOT / ".cache" / "bin" / "helm3"
    found = str(local) if local.exists() else shutil.which("helm")
    if found is None:
        pytest.skip("no Helm 3: run scripts/setup")
    return found


def _template(tmp_path: Path, crd_dir: str, *flags: str) -> dict[str, Any]:
    chart = tmp_path / f"chart-{crd_dir}"
    (chart / "templates").mkdir(parents=True)
    (chart / crd_dir).mkdir(exist_ok=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: acme\nversion: 0.1.0\n")
    shutil.copy(FIXTURES / "crd.yaml", chart / crd_dir / "crd.yaml")
    shutil.copy(FIXTURES / "workflowtemplate.yaml", chart / "templates" / "wf.yaml")
    args = ["post-render", "--app-slug=acme", "--license-id=LIC-HELM", "--proxy-all"]
    command = [_helm(), "template", "rel", str(chart), *flags, "--post-renderer", "kotsrewrite"]
    for arg in args:
        command += ["--post-renderer-args", arg]
    home = tmp_path / "helm-home"
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        "HELM_DATA_HOME": str(home / "data"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
    }
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in YAML(typ="safe", pure=True).load_all(proc.stdout) if d]
    return next(d for d in docs if d["kind"] == "WorkflowTemplate")


@pytest.mark.parametrize(
    ("crd_dir", "flags"),
    [("templates", ()), ("crds", ("--include-crds",))],
    ids=["crd-in-templates", "include-crds"],
)
def test_helm_post_render_puts_the_secret_where_the_crd_keeps_it(
    tmp_path: Path, crd_dir: str, flags: tuple[str, ...]
) -> None:
    wf = _template(tmp_path, crd_dir, *flags)
    assert wf["spec"]["imagePullSecrets"] == [{"name": SECRET}]
    assert "imagePullSecrets" not in wf["spec"]["templates"][2]["containerSet"]


def test_helm_hides_crds_dir_from_post_renderers(tmp_path: Path) -> None:
    """Without --include-crds the post-renderer never sees the CRD: today's placement
    (listed as unchecked in the report)."""
    wf = _template(tmp_path, "crds")
    assert "imagePullSecrets" not in wf["spec"]
    assert wf["spec"]["templates"][2]["containerSet"]["imagePullSecrets"] == [{"name": SECRET}]
