"""A kustomization input is read as kustomize builds it (through the Python API and the CLI).

The golden cases (tests/test_rewrite_golden.py, ``kustomize-*``) check whole midstreams; these
check the loader's documents and origins, what is probed, errors, Helm charts, and verify.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

import kotsrewrite
from kotsrewrite import load_manifests, node_to_data
from kotsrewrite._cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "midstream"
KUBECTL = shutil.which("kubectl")
# kustomize's helmCharts run `helm` from PATH: the machine's, else scripts/setup's Helm 3.
_SETUP_HELM3 = Path(__file__).resolve().parent.parent / ".cache" / "bin" / "helm3"
HELM = shutil.which("helm") or (str(_SETUP_HELM3) if _SETUP_HELM3.exists() else None)

pytestmark = [
    pytest.mark.kustomize,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed"),
]


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _staging(tmp_path: Path) -> Path:
    """A copy of the kustomize-staging case's tree; returns the overlay."""
    shutil.copytree(FIXTURES / "kustomize-staging" / "app", tmp_path / "app")
    return tmp_path / "app" / "overlays" / "staging"


def _build(directory: Path, *flags: str) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    proc = subprocess.run(
        [KUBECTL, "kustomize", *flags, str(directory)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in YAML(typ="safe", pure=True).load_all(proc.stdout) if d]


def test_load_manifests_returns_built_documents_with_origins(tmp_path: Path) -> None:
    overlay = _staging(tmp_path)
    base = load_manifests(overlay)
    assert base.mode == "kustomize" and base.root == overlay
    assert base.files == ("../../base/web.yaml", "../../base/report.yaml")
    docs = {(d.kind, d.namespace, d.name): d for d in base.documents}
    assert set(docs) == {
        ("Deployment", "staging", "staging-web"),
        ("CronJob", "staging", "staging-report"),
    }
    web = docs["Deployment", "staging", "staging-web"]
    assert (web.file, web.index, web.line) == ("../../base/web.yaml", 0, 1)
    assert web.origin.file == "../../base/web.yaml" and web.origin.line == 1
    assert ("kustomization.yaml", "PatchTransformer") in web.origin.transformers
    data = node_to_data(web.node)
    # The built object, without kustomize's build annotations.
    assert "annotations" not in data["metadata"]
    assert [c["image"] for c in data["spec"]["template"]["spec"]["containers"]] == [
        "nginx:1.27",
        "quay.io/acme/api:2.0",
        "quay.io/shopco/redis-hardened:7.2",
    ]
    # Lines are the source's: the container the base wrote, on its line in web.yaml.
    inventory = kotsrewrite.find_images(base)
    where = {u.ref.original: (u.location.file, u.location.line) for u in inventory.uses}
    assert where["nginx:1.27"] == ("../../base/web.yaml", 14)
    assert where["quay.io/shopco/redis-hardened:7.2"] == ("kustomization.yaml", 17)
    assert where["ghcr.io/acme/report:5.1"] == ("report-image.yaml", 12)
    assert "busybox:1.36" not in where  # replaced by the overlay's patch
    assert (
        (overlay / "kustomization.yaml")
        .read_text()
        .splitlines()[16]
        .endswith("image: quay.io/shopco/redis-hardened:7.2")
    )


def test_own_annotations_are_kept_build_annotations_never(tmp_path: Path) -> None:
    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {team: web}\n"
        "spec:\n  containers: [{name: c, image: quay.io/acme/api:1}]\n"
    )
    (tmp_path / "kustomization.yaml").write_text("resources: [pod.yaml]\n")
    [doc] = load_manifests(tmp_path).documents
    assert node_to_data(doc.node)["metadata"]["annotations"] == {"team": "web"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kustomization.yaml", "pod.yaml"]


def test_images_json_adds_origin_only_where_the_file_is_not_the_objects(tmp_path: Path) -> None:
    code, out, err = _run("images", str(_staging(tmp_path)), "--format", "json")
    assert code == 0, err
    locations = {e["image"]: e["locations"] for e in json.loads(out)["images"]}
    [nginx] = locations["nginx:1.27"]
    assert "origin" not in nginx
    assert (nginx["file"], nginx["line"], nginx["name"], nginx["namespace"]) == (
        "../../base/web.yaml",
        14,
        "staging-web",
        "staging",
    )
    [redis] = locations["quay.io/shopco/redis-hardened:7.2"]
    assert (redis["file"], redis["line"], redis["container"]) == ("kustomization.yaml", 17, "cache")
    assert redis["origin"] == {
        "by": "PatchTransformer",
        "configuredIn": "kustomization.yaml",
        "objectFile": "../../base/web.yaml",
        "objectLine": 1,
    }
    [report] = locations["ghcr.io/acme/report:5.1"]
    assert report["origin"]["objectFile"] == "../../base/report.yaml"
    assert (report["file"], report["line"]) == ("report-image.yaml", 12)


def test_introduced_images_are_probed_and_replaced_ones_are_not(tmp_path: Path) -> None:
    asked: list[str] = []

    def prober(refs: Sequence[kotsrewrite.ImageRef]) -> list[kotsrewrite.ProbeResult]:
        asked.extend(r.original for r in refs)
        return [
            kotsrewrite.ProbeResult(
                image=r,
                verdict=kotsrewrite.Verdict.PUBLIC
                if r.original.startswith("nginx")
                else kotsrewrite.Verdict.PRIVATE,
                evidence=kotsrewrite.Evidence(reason="test"),
            )
            for r in refs
        ]

    options = kotsrewrite.RewriteOptions(app_slug="acme", license_id="LIC-probe-1")
    result = kotsrewrite.rewrite(_staging(tmp_path), options, out=tmp_path / "mid", prober=prober)
    assert sorted(asked) == [
        "ghcr.io/acme/report:5.1",
        "nginx:1.27",
        "quay.io/acme/api:2.0",
        "quay.io/shopco/redis-hardened:7.2",
    ]
    built = _build(tmp_path / "mid")
    [web] = [d for d in built if d["kind"] == "Deployment"]
    spec = web["spec"]["template"]["spec"]
    assert spec["containers"][2]["image"] == (
        "proxy.replicated.com/proxy/acme/quay.io/shopco/redis-hardened:7.2"
    )
    assert spec["imagePullSecrets"] == [{"name": "acme-registry"}]
    assert {(p.target.name, p.target.namespace) for p in result.plan.patches} == {
        ("staging-web", "staging"),
        ("staging-report", "staging"),
    }
    assert kotsrewrite.verify_midstream(tmp_path / "mid", result.plan).ok


def test_no_kustomize_on_path_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overlay = _staging(tmp_path)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, out, err = _run("images", str(overlay))
    assert code == 2 and out == ""
    first, hint = err.splitlines()[:2]
    assert first == "kotsrewrite: error: neither kubectl nor kustomize is on PATH"
    assert hint.startswith("hint: install kubectl")


def test_kustomize_build_error_names_the_kustomization(tmp_path: Path) -> None:
    overlay = _staging(tmp_path)
    (overlay / "report-image.yaml").unlink()
    before = sorted(p.name for p in overlay.iterdir())
    code, out, err = _run("rewrite", str(overlay), "--app-slug", "a", "--license-id", "L-1")
    assert code == 2 and out == ""
    first, hint = err.splitlines()[:2]
    assert first.startswith(  # the file as the user can open it (issue 21)
        f"kotsrewrite: error: {overlay}/kustomization.yaml: kustomize cannot build it:"
    )
    assert "report-image.yaml" in first and "kotsrewrite-build" not in first
    assert hint.startswith("hint: run '") and str(overlay) in hint
    assert sorted(p.name for p in overlay.iterdir()) == before
    assert not (tmp_path / "app" / "overlays" / "midstream").exists()


def test_verify_base_of_a_kustomization(tmp_path: Path) -> None:
    overlay = _staging(tmp_path)
    out = tmp_path / "mid"
    code, _, err = _run(
        "rewrite", str(overlay), "--app-slug", "acme", "--license-id", "L-2", "--proxy-all",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert _run("verify", str(out), "--base", str(overlay))[0] == 0
    code, stdout, _ = _run("verify", str(out), "--base", str(tmp_path / "app" / "base"))
    assert code == 1
    assert "the midstream builds ../app/overlays/staging, not the kustomization" in stdout


CHART = {
    "Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\n",
    "values.yaml": "image: quay.io/acme/chart-web:4.2\n",
    "templates/deploy.yaml": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-web\n"
        "spec:\n  selector:\n    matchLabels: {app: web}\n  template:\n"
        "    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n"
        "      - name: web\n        image: {{ .Values.image }}\n"
    ),
}


@pytest.mark.skipif(HELM is None, reason="helm not installed (scripts/setup installs it)")
def test_local_helm_chart_is_rendered_and_proxied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert HELM is not None
    if shutil.which("helm") is None:
        tools = tmp_path / "tools"
        tools.mkdir()
        (tools / "helm").symlink_to(HELM)
        monkeypatch.setenv("PATH", os.pathsep.join([str(tools), os.environ["PATH"]]))
    app = tmp_path / "app"
    for rel, text in CHART.items():
        (app / "charts" / "web" / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / "charts" / "web" / rel).write_text(text)
    (app / "kustomization.yaml").write_text(
        "namespace: shop\nhelmCharts:\n- name: web\n  releaseName: shop\n"
    )
    before = {p: p.read_bytes() for p in app.rglob("*") if p.is_file()}
    known = tmp_path / "known.yaml"
    known.write_text(
        "apiVersion: kots.io/v1beta1\nkind: Installation\nmetadata: {name: a}\nspec:\n"
        "  knownImages:\n  - image: quay.io/acme/chart-web:4.2\n    isPrivate: true\n"
    )
    out = tmp_path / "mid"
    code, report, err = _run(
        "rewrite", str(app), "--app-slug", "acme", "--license-id", "L-3", "--offline",
        "--known-images", str(known), "--on-unknown", "fail", "--out", str(out), "--report", "-",
    )  # fmt: skip
    assert code == 0, err
    [entry] = json.loads(report)["images"]
    [where] = entry["locations"]
    assert (where["file"], where["line"]) == ("kustomization.yaml", 2)
    assert where["origin"]["by"] == "HelmChartInflationGenerator"
    [web] = [d for d in _build(out, "--enable-helm") if d["kind"] == "Deployment"]
    assert web["metadata"]["namespace"] == "shop" and web["metadata"]["name"] == "shop-web"
    spec = web["spec"]["template"]["spec"]
    assert spec["containers"][0]["image"] == (
        "proxy.replicated.com/proxy/acme/quay.io/acme/chart-web:4.2"
    )
    assert spec["imagePullSecrets"] == [{"name": "acme-registry"}]
    assert {p: p.read_bytes() for p in app.rglob("*") if p.is_file()} == before
    assert _run("verify", str(out))[0] == 0


def test_invalid_image_a_transformer_wrote_points_at_the_transformer(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "kustomize-images" / "app", tmp_path / "app")
    kfile = tmp_path / "app" / "kustomization.yaml"
    kfile.write_text(kfile.read_text().replace("quay.io/acme/nginx-hardened", "quay.io/ACME/n"))
    code, _, err = _run("images", str(tmp_path / "app"))
    assert code == 2
    assert err.startswith(
        f"kotsrewrite: error: {tmp_path}/app/kustomization.yaml:8:"
        " invalid image reference 'quay.io/ACME/n:1.27'"
    )


def test_each_introduced_image_points_at_the_transformer_that_wrote_it(tmp_path: Path) -> None:
    overlay = _staging(tmp_path).parent / "legacy"
    overlay.mkdir()
    files = {
        "kustomization.yaml": (
            "resources:\n- ../../base\n- cm.yaml\npatchesStrategicMerge:\n- smp.yaml\n"
            "patchesJson6902:\n- target: {group: apps, version: v1, kind: Deployment, name: web}\n"
            "  path: json.yaml\nreplacements:\n"
            "- source: {kind: ConfigMap, name: images, fieldPath: data.report}\n  targets:\n"
            "  - select: {kind: CronJob}\n"
            "    fieldPaths: [spec.jobTemplate.spec.template.spec.containers.0.image]\n"
        ),
        "cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: images}\n"
        "data: {report: 'ghcr.io/acme/report:9'}\n",
        "smp.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n"
        "  template:\n    spec:\n      containers:\n      - name: api\n"
        "        image: quay.io/acme/api:2.5\n",
        "json.yaml": "- op: add\n  path: /spec/template/spec/initContainers\n"
        "  value: [{name: init, image: 'quay.io/acme/init:1'}]\n",
    }
    for name, text in files.items():
        (overlay / name).write_text(text)
    code, out, err = _run("images", str(overlay), "--format", "json")
    assert code == 0, err
    where = {
        e["image"]: [
            (x["file"], x["line"], (x.get("origin") or {}).get("by")) for x in e["locations"]
        ]
        for e in json.loads(out)["images"]
    }
    assert where == {
        "nginx:1.27": [("../../base/web.yaml", 14, None)],
        "quay.io/acme/api:2.5": [("smp.yaml", 9, "PatchStrategicMergeTransformer")],
        "quay.io/acme/init:1": [("json.yaml", 3, "PatchJson6902Transformer")],
        # the value came from cm.yaml through replacements: the replacements entry wrote it
        "ghcr.io/acme/report:9": [("kustomization.yaml", 9, "ReplacementTransformer")],
    }
