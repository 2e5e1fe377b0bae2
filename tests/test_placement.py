"""Pull secrets on custom resources where the API server keeps them (issue 15).

Each fixture of tests/fixtures/placement holds a CRD written for these tests, shaped like a
real one, and custom resources of it. The midstream is built with real ``kubectl kustomize``;
the built custom resources are then pruned as the API server would (kotsrewrite._schema, itself
tested against Kubernetes' documented examples in test_schema.py) and every proxied PodSpec
must still get the pull secret: beside it, through the enclosing field the schema declares, or
through the ServiceAccount it runs as.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from kotsrewrite import (
    OnUnplaced,
    Placement,
    PolicyError,
    RewriteOptions,
    post_render,
    rewrite,
    verify_midstream,
)
from kotsrewrite._cli import main
from kotsrewrite._placement import covering_placement
from kotsrewrite._rewrite import RewriteResult
from kotsrewrite._schema import Pruner, crd_names, pruner_for
from kotsrewrite._verify import _Checker

pytestmark = [
    pytest.mark.kustomize,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed"),
]

FIXTURES = Path(__file__).parent / "fixtures" / "placement"
CORPUS = Path("/work/shared/corpus/real")
SLUG = "acme"
SECRET = f"{SLUG}-registry"
PROXY = "proxy.replicated.com/"
ARGO_FIELDS = ("WorkflowTemplate:spec/templates[]/container/image",)
ARGO_FIELDS += ("WorkflowTemplate:spec/templates[]/script/image",)


def _options(**kwargs: Any) -> RewriteOptions:
    return RewriteOptions(app_slug=SLUG, license_id="LIC-PLACEMENT", proxy_all=True, **kwargs)


def _copy(tmp_path: Path, *cases: str, drop: tuple[str, ...] = ()) -> Path:
    base = tmp_path / "base"
    base.mkdir()
    for case in cases:
        for src in sorted((FIXTURES / case).glob("*.yaml")):
            if src.name not in drop:
                shutil.copy(src, base / f"{case}-{src.name}")
    return base


def _rewrite(base: Path, tmp_path: Path, **kwargs: Any) -> RewriteResult:
    return rewrite(str(base), _options(**kwargs), out=tmp_path / "mid", offline=True)


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return obj["kind"], meta.get("namespace") or "", meta.get("name") or ""


def _pod_specs(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[Any, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield path, node
        for key, value in node.items():
            yield from _pod_specs(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _pod_specs(value, (*path, i))


def _stored(built: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[Pruner, Any]]:
    """Every custom resource of the build whose CRD is in the build, pruned by it."""
    crds = {crd_names(o): o for o in built if o["kind"] == "CustomResourceDefinition"}
    out = {}
    for obj in built:
        group, _, version = obj["apiVersion"].rpartition("/")
        crd = crds.get((group, obj["kind"]))
        if crd is not None:
            pruner = pruner_for(crd, version)
            assert isinstance(pruner, Pruner), pruner
            out[_key(obj)] = (pruner, pruner.prune(obj))
    return out


def _coverage(built: list[dict[str, Any]]) -> dict[tuple[Any, ...], Placement | None]:
    """(kind, namespace, name, PodSpec path) -> how each PodSpec pulling through the proxy
    gets the secret once the API server has pruned its object."""
    stored = _stored(built)
    accounts: dict[str, dict[str, Any]] = {}
    for obj in built:
        if obj["kind"] == "ServiceAccount":
            accounts.setdefault(_key(obj)[1], {})[_key(obj)[2]] = obj
    out: dict[tuple[Any, ...], Placement | None] = {}
    for key, (pruner, pruned) in stored.items():
        obj = next(o for o in built if _key(o) == key)
        for path, spec in _pod_specs(obj):
            if any(c.get("image", "").startswith(PROXY) for c in spec["containers"]):
                out[(*key, path)] = covering_placement(
                    pruned, path, pruner, SECRET, accounts.get(key[1], {})
                )
    return out


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize DIRECTORY`` prints (read with ruamel's C loader: the
    public manifests are megabytes)."""
    proc = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True
    )
    return [d for d in YAML(typ="safe").load_all(proc.stdout) if d]


def _built_and_stored(tmp_path: Path, result: RewriteResult) -> tuple[list[Any], dict[Any, Any]]:
    built = kustomize_build(result.output)
    return built, _stored(built)


def test_argo_workflow_template_gets_secret_in_spec(tmp_path: Path) -> None:
    """Argo's schema has no imagePullSecrets under templates[].containerSet: the secret goes
    to spec.imagePullSecrets, which serves every template (container, script, containerSet)."""
    base = _copy(tmp_path, "argo-workflows")
    result = _rewrite(base, tmp_path, image_fields=[_field(f) for f in ARGO_FIELDS])
    [patch] = result.plan.patches
    assert patch.operations() == [
        {"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": SECRET}]}
    ]
    assert patch.placement is Placement.ANCESTOR
    # The PodSpec (containerSet), then the objects holding the managed image fields:
    assert [p.pod_spec for p in patch.placements] == [
        "/spec/templates/2/containerSet",
        "/spec/templates/1/container",
        "/spec/templates/3/script",
    ]
    built, stored = _built_and_stored(tmp_path, result)
    _, wf = stored[("WorkflowTemplate", "acme-jobs", "nightly-report")]
    assert wf["spec"]["imagePullSecrets"] == [{"name": SECRET}]
    images = [t.get("container", t.get("script", {})).get("image") for t in wf["spec"]["templates"]]
    assert images[1].startswith(PROXY) and images[3].startswith(PROXY)
    assert all(
        c["image"].startswith(PROXY)
        for c in wf["spec"]["templates"][2]["containerSet"]["containers"]
    )
    assert set(_coverage(built).values()) == {Placement.ANCESTOR}
    # Beside the containerSet (today's placement, and KOTS's) the API server drops it:
    pruner, _ = stored[("WorkflowTemplate", "acme-jobs", "nightly-report")]
    assert not pruner.keeps(["spec", "templates", 2, "containerSet", "imagePullSecrets", 0, "name"])
    assert verify_midstream(result.output, result.plan).ok


def test_argo_rollout_preserved_pod_template_keeps_secret_beside(tmp_path: Path) -> None:
    base = _copy(tmp_path, "argo-rollouts")
    result = _rewrite(base, tmp_path)
    [patch] = result.plan.patches
    assert patch.placement is Placement.BESIDE_PODSPEC
    assert patch.operations()[0]["path"] == "/spec/template/spec/imagePullSecrets"
    built, stored = _built_and_stored(tmp_path, result)
    _, rollout = stored[("Rollout", "", "api")]
    assert rollout["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": SECRET}]
    assert set(_coverage(built).values()) == {Placement.BESIDE_PODSPEC}
    assert not result.plan.unplaced and not result.plan.unchecked


def test_tekton_like_pod_templates(tmp_path: Path) -> None:
    """TaskRun: spec.podTemplate (a pod template of the ancestor spec). PipelineRun:
    spec.taskRunTemplate.podTemplate, a sibling of the PodSpecs' ancestor spec.pipelineSpec,
    created by the patch; one operation serves the three tasks. A v1beta1 PipelineRun (its
    schema keeps everything) is stored as v1, so the v1 schema decides."""
    base = _copy(tmp_path, "tekton")
    result = _rewrite(base, tmp_path)
    by_name = {p.target.name: p for p in result.plan.patches}
    assert by_name["unit-tests"].operations() == [
        {"op": "add", "path": "/spec/podTemplate/imagePullSecrets", "value": [{"name": SECRET}]}
    ]
    for name, tasks in (("release", 3), ("legacy-release", 1)):
        patch = by_name[name]
        assert patch.operations() == [
            {
                "op": "add",
                "path": "/spec/taskRunTemplate",
                "value": {"podTemplate": {"imagePullSecrets": [{"name": SECRET}]}},
            }
        ]
        assert patch.placement is Placement.ANCESTOR and len(patch.placements) == tasks
    built, stored = _built_and_stored(tmp_path, result)
    _, release = stored[("PipelineRun", "", "release")]
    assert release["spec"]["taskRunTemplate"]["podTemplate"]["imagePullSecrets"] == [
        {"name": SECRET}
    ]
    _, legacy = stored[("PipelineRun", "", "legacy-release")]
    assert legacy["spec"]["taskRunTemplate"]["podTemplate"]["imagePullSecrets"] == [
        {"name": SECRET}
    ]
    coverage = _coverage(built)
    assert len(coverage) == 5 and set(coverage.values()) == {Placement.ANCESTOR}
    assert verify_midstream(result.output, result.plan).ok


def test_operator_cr_through_its_service_account(tmp_path: Path) -> None:
    base = _copy(tmp_path, "operator-sa")
    result = _rewrite(base, tmp_path)
    [patch] = result.plan.patches
    assert patch.target.kind == "ServiceAccount" and patch.target.name == "pg-instance"
    assert patch.target.namespace == "databases"
    assert patch.operations() == [
        {"op": "add", "path": "/imagePullSecrets", "value": [{"name": SECRET}]}
    ]
    [placed] = patch.placements
    assert (placed.placement, placed.kind, placed.name, placed.pod_spec) == (
        Placement.SERVICE_ACCOUNT,
        "PostgresCluster",
        "orders",
        "/spec/instances/0",
    )
    assert "databases" in result.plan.secret_namespaces
    built, stored = _built_and_stored(tmp_path, result)
    account = next(o for o in built if _key(o) == ("ServiceAccount", "databases", "pg-instance"))
    assert account["imagePullSecrets"] == [{"name": SECRET}]
    _, cluster = stored[("PostgresCluster", "databases", "orders")]
    assert cluster["spec"]["serviceAccountName"] == "pg-instance"
    assert "imagePullSecrets" not in cluster["spec"]["instances"][0]
    assert set(_coverage(built).values()) == {Placement.SERVICE_ACCOUNT}
    assert verify_midstream(result.output, result.plan).ok
    report = result.report["patches"][0]["placements"][0]
    assert report["placement"] == "service-account" and report["name"] == "orders"


def test_service_account_in_another_namespace_does_not_count(tmp_path: Path) -> None:
    base = _copy(tmp_path, "operator-sa")
    text = (base / "operator-sa-cluster.yaml").read_text()
    (base / "operator-sa-cluster.yaml").write_text(
        text.replace("namespace: databases\n---", "namespace: other\n---", 1)
    )
    result = _rewrite(base, tmp_path)
    assert not result.plan.patches
    [item] = result.plan.unplaced
    assert "ServiceAccount pg-instance is not in the base (namespace databases)" in item.reason


def test_unplaced_is_reported_and_warned(tmp_path: Path) -> None:
    base = _copy(tmp_path, "unplaced")
    out, report = tmp_path / "mid", tmp_path / "report.json"
    argv = ["rewrite", str(base), "--app-slug", SLUG, "--license-id", "LIC-X", "--proxy-all"]
    argv += ["--out", str(out), "--report", str(report)]
    err = io.StringIO()
    assert main(argv, stdout=io.StringIO(), stderr=err) == 0, err.getvalue()
    data = json.loads(report.read_text())
    assert data["unplaced"] == [
        {
            "kind": "Cache",
            "namespace": None,
            "name": "sessions",
            "file": "unplaced-cache.yaml",
            "line": 8,
            "podSpec": "/spec/pod",
            "reason": "CustomResourceDefinition caches.cache.example.io keeps no"
            " imagePullSecrets beside this PodSpec nor in an enclosing object, and it names"
            " no ServiceAccount",
        }
    ]
    assert data["unchecked"] == [] and data["patches"] == []
    warning = next(line for line in err.getvalue().splitlines() if "no place" in line)
    assert warning.startswith("kotsrewrite: warning: ")
    assert "base/unplaced-cache.yaml:8: Cache sessions /spec/pod: no place" in warning
    [detail] = [d for d in data["warningDetails"] if d["code"] == "unplaced"]
    assert detail["podSpec"] == "/spec/pod" and detail["message"] in warning
    assert "ServiceAccount" in warning  # what to do
    assert "LIC-X" not in err.getvalue() + report.read_text()
    # verify sees it too: the secret does not reach the PodSpec.
    problems = verify_midstream(out).problems
    assert len(problems) == 1 and "does not survive pruning" in problems[0]

    shutil.rmtree(out)
    err = io.StringIO()
    assert main([*argv, "--on-unplaced", "fail"], stdout=io.StringIO(), stderr=err) == 1
    assert "unplaced-cache.yaml:8: Cache sessions /spec/pod" in err.getvalue()
    assert not out.exists()


def test_on_unplaced_fail_in_the_api(tmp_path: Path) -> None:
    base = _copy(tmp_path, "unplaced")
    with pytest.raises(PolicyError, match="1 PodSpec"):
        rewrite(
            str(base),
            _options(on_unplaced=OnUnplaced.FAIL),
            out=tmp_path / "mid",
            offline=True,
            dry_run=True,
        )


def test_without_crd_legacy_placement_listed_unchecked(tmp_path: Path) -> None:
    base = _copy(tmp_path, "argo-workflows", drop=("crd.yaml",))
    err = io.StringIO()
    report = tmp_path / "report.json"
    argv = ["rewrite", str(base), "--app-slug", SLUG, "--license-id", "LIC-X", "--proxy-all"]
    argv += ["--out", str(tmp_path / "mid"), "--report", str(report)]
    assert main(argv, stdout=io.StringIO(), stderr=err) == 0
    data = json.loads(report.read_text())
    [patch] = data["patches"]
    assert patch["operations"][0]["path"] == "/spec/templates/2/containerSet/imagePullSecrets"
    assert patch["placements"][0]["placement"] == "legacy-unchecked"
    [item] = data["unchecked"]
    assert (item["kind"], item["podSpec"], item["line"]) == (
        "WorkflowTemplate",
        "/spec/templates/2/containerSet",
        24,
    )
    assert "no CustomResourceDefinition for WorkflowTemplate.argoproj.io" in item["reason"]
    assert "no place" not in err.getvalue()  # no warning for unchecked
    assert "CustomResourceDefinition" not in err.getvalue()

    # The CRD shows up later (added to the midstream's base snapshot): verify prunes and
    # complains.
    snapshot = tmp_path / "mid" / "base"
    shutil.copy(FIXTURES / "argo-workflows" / "crd.yaml", snapshot / "crd.yaml")
    kustomization = snapshot / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + "- crd.yaml\n")
    problems = verify_midstream(tmp_path / "mid").problems
    assert len(problems) == 1
    assert "WorkflowTemplate acme-jobs/nightly-report spec.templates[2].containerSet" in problems[0]
    assert "does not survive pruning by CustomResourceDefinition workflowtemplates" in problems[0]


def test_post_render_places_by_the_same_rules(tmp_path: Path) -> None:
    """post-render applies the same plan: its objects equal kustomize's build of the
    midstream, ServiceAccount and ancestor patches included."""
    base = _copy(tmp_path, "argo-workflows", "tekton", "operator-sa", "argo-rollouts")
    result = _rewrite(base, tmp_path, image_fields=[_field(f) for f in ARGO_FIELDS])
    rules = {p.placement for patch in result.plan.patches for p in patch.placements}
    assert rules == {Placement.ANCESTOR, Placement.SERVICE_ACCOUNT, Placement.BESIDE_PODSPEC}
    built = {_key(o): o for o in kustomize_build(result.output)}
    rendered = {_key(o): o for o in post_render(result.base, result.plan)}
    assert rendered.keys() == built.keys()
    for key, obj in rendered.items():
        assert obj == built[key], key
    assert all(v is not None for v in _coverage(list(rendered.values())).values())


def test_post_render_cli_moves_secret_to_service_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "---\n".join(p.read_text() for p in sorted((FIXTURES / "operator-sa").glob("*.yaml")))
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    out, err = io.StringIO(), io.StringIO()
    argv = ["post-render", "--app-slug", SLUG, "--license-id", "LIC-X", "--proxy-all"]
    assert main(argv, stdout=out, stderr=err) == 0, err.getvalue()
    objects = {_key(o): o for o in YAML(typ="safe", pure=True).load_all(out.getvalue()) if o}
    account = objects[("ServiceAccount", "databases", "pg-instance")]
    assert account["imagePullSecrets"] == [{"name": SECRET}]
    assert "imagePullSecrets" not in objects[("PostgresCluster", "databases", "orders")]["spec"]


def _field(text: str) -> Any:
    from kotsrewrite._discovery import parse_image_field

    return parse_image_field(text)


@pytest.mark.parametrize(
    ("files", "custom"),
    [
        (
            (
                "argoproj__argo-rollouts__install.yaml",
                "argoproj__argo-rollouts__analysis-templates.yaml",
            ),
            2,
        ),
        (("argoproj__argo-cd__install.yaml",), 0),
        (("tektoncd__pipeline__pipelinerun-with-final-tasks.yaml",), 0),
    ],
    ids=["argo-rollouts", "argo-cd", "tekton"],
)
def test_public_manifests(tmp_path: Path, files: tuple[str, ...], custom: int) -> None:
    """The public manifests with CRDs and custom resources: every proxied PodSpec of a custom
    resource is still served after pruning, nothing is unplaced, and verify agrees."""
    if not all((CORPUS / name).is_file() for name in files):
        pytest.skip("public corpus not present")
    base = tmp_path / "base"
    base.mkdir()
    for name in files:
        shutil.copy(CORPUS / name, base / name)
    result = _rewrite(base, tmp_path)
    assert not result.plan.unplaced and not result.plan.unchecked
    built = kustomize_build(result.output)
    coverage = _coverage(built)
    assert len(coverage) == custom
    assert all(v is Placement.BESIDE_PODSPEC for v in coverage.values())
    # verify's PodSpec check on the same build (verify_midstream itself would read these
    # megabytes twice with the pure-Python loader):
    checker = _Checker(result.output, result.plan, None, ["kubectl", "kustomize"])
    checker.check_pod_specs(built, SECRET, set(result.plan.options.replicated_hosts))
    assert checker.problems == [] and checker.pod_specs >= custom


def test_dry_run_names_the_rule(tmp_path: Path) -> None:
    base = _copy(tmp_path, "operator-sa", "tekton")
    out = io.StringIO()
    argv = ["rewrite", str(base), "--app-slug", SLUG, "--license-id", "LIC-X", "--proxy-all"]
    assert main([*argv, "--dry-run"], stdout=out, stderr=io.StringIO()) == 0
    lines = [line for line in out.getvalue().splitlines() if line.startswith("patch ")]
    assert (
        f"patch       ServiceAccount/pg-instance -n databases: imagePullSecrets += {SECRET}"
        " (service-account)" in lines
    )
    assert f"patch       TaskRun/unit-tests: imagePullSecrets += {SECRET} (ancestor)" in lines


ONLY_CONTAINERS = """\
apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata:
  name: nightly-report
  namespace: acme-jobs
spec:
  entrypoint: main
  templates:
    - name: main
      steps:
        - - name: extract
            template: extract
        - - name: publish
            template: publish
    - name: extract
      container:
        image: quay.io/acme/extract:1.4
    - name: publish
      script:
        image: quay.io/acme/publisher:3.1
        source: print("published")
"""


def test_argo_container_templates_only(tmp_path: Path) -> None:
    """A WorkflowTemplate of container and script templates only has no PodSpec: the managed
    image fields (--image-field) still need the secret, and the CRD says where."""
    base = _copy(tmp_path, "argo-workflows")
    (base / "argo-workflows-workflowtemplate.yaml").write_text(ONLY_CONTAINERS)
    result = _rewrite(base, tmp_path, image_fields=[_field(f) for f in ARGO_FIELDS])
    [patch] = result.plan.patches
    assert patch.operations() == [
        {"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": SECRET}]}
    ]
    assert [(p.placement, p.pod_spec) for p in patch.placements] == [
        (Placement.ANCESTOR, "/spec/templates/1/container"),
        (Placement.ANCESTOR, "/spec/templates/2/script"),
    ]
    _, stored = _built_and_stored(tmp_path, result)
    _, wf_stored = stored[("WorkflowTemplate", "acme-jobs", "nightly-report")]
    assert wf_stored["spec"]["imagePullSecrets"] == [{"name": SECRET}]
    assert wf_stored["spec"]["templates"][1]["container"]["image"].startswith(PROXY)

    # Without the CRD such a field gets no secret, as before, and is listed as unchecked.
    (base / "argo-workflows-crd.yaml").unlink()
    shutil.rmtree(tmp_path / "mid")
    result = _rewrite(base, tmp_path, image_fields=[_field(f) for f in ARGO_FIELDS])
    assert result.plan.patches == ()
    assert [(u.pod_spec, u.line) for u in result.plan.unchecked] == [
        ("/spec/templates/1/container", 17),
        ("/spec/templates/2/script", 20),
    ]
