"""post-render places pull secrets by the CRD rules under real ``helm template``.

Helm 3.19 and Helm 4.3 (the ``helm`` fixture of tests/conftest.py) hand a post-renderer the
rendered ``templates/``; a chart's ``crds/`` directory only Helm 3 under ``helm template
--include-crds`` (never on ``helm install``, never Helm 4).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from .conftest import Helm

pytestmark = pytest.mark.helm

FIXTURES = Path(__file__).parent / "fixtures" / "placement" / "argo-workflows"
SECRET = "acme-registry"


def _template(helm: Helm, tmp_path: Path, crd_dir: str, *flags: str) -> dict[str, Any]:
    chart = tmp_path / f"chart-{crd_dir}"
    (chart / "templates").mkdir(parents=True)
    (chart / crd_dir).mkdir(exist_ok=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: acme\nversion: 0.1.0\n")
    shutil.copy(FIXTURES / "crd.yaml", chart / crd_dir / "crd.yaml")
    shutil.copy(FIXTURES / "workflowtemplate.yaml", chart / "templates" / "wf.yaml")
    args = ["post-render", "--app-slug=acme", "--license-id=LIC-HELM", "--proxy-all"]
    command = ["template", "rel", str(chart), *flags, "--post-renderer", "kotsrewrite"]
    for arg in args:
        command += ["--post-renderer-args", arg]
    proc = helm.run(*command)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in YAML(typ="safe", pure=True).load_all(proc.stdout) if d]
    return next(d for d in docs if d["kind"] == "WorkflowTemplate")


def test_helm_post_render_puts_the_secret_where_the_crd_keeps_it(
    helm: Helm, tmp_path: Path
) -> None:
    wf = _template(helm, tmp_path, "templates")
    assert wf["spec"]["imagePullSecrets"] == [{"name": SECRET}]
    assert "imagePullSecrets" not in wf["spec"]["templates"][2]["containerSet"]


@pytest.mark.parametrize("flags", [(), ("--include-crds",)], ids=["plain", "include-crds"])
def test_crds_dir_reaches_post_renderers_only_on_helm3_with_include_crds(
    helm: Helm, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    """A chart's crds/: Helm 3 hands them to the post-renderer under --include-crds, Helm 4
    prints them but never post-renders them. Unseen, the CRD cannot place the secret: today's
    placement (listed as unchecked in the report)."""
    wf = _template(helm, tmp_path, "crds", *flags)
    if flags and helm.major == 3:
        assert wf["spec"]["imagePullSecrets"] == [{"name": SECRET}]
    else:
        assert "imagePullSecrets" not in wf["spec"]
        containers = wf["spec"]["templates"][2]["containerSet"]
        assert containers["imagePullSecrets"] == [{"name": SECRET}]
