"""Placement decisions in the plan (pure; no kustomize): the rules' edges."""

from __future__ import annotations

from pathlib import Path

import jsonpatch
import pytest

from kotsrewrite import (
    Placement,
    Plan,
    RewriteOptions,
    build_plan,
    find_images,
    load_manifests,
    node_to_data,
)

SECRET = "acme-registry"

CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: runners.example.io}
spec:
  group: example.io
  names: {kind: Runner, plural: runners}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                serviceAccountName: {type: string}
                imagePullSecrets: %s
                pod:
                  type: object
                  properties:
                    serviceAccountName: {type: string}
                    containers:
                      type: array
                      items: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""
DECLARED = "{type: array, items: {type: object, properties: {name: {type: string}}}}"
UNDECLARED = "{type: array, items: {type: string}}"


def _runner(spec_extra: str = "", pod_extra: str = "", namespace: str = "apps") -> str:
    return f"""\
apiVersion: example.io/v1
kind: Runner
metadata: {{name: r, namespace: {namespace}}}
spec:
{spec_extra}  pod:
{pod_extra}    containers:
      - name: c
        image: quay.io/acme/runner:1
"""


def _account(name: str, namespace: str | None = "apps", extra: str = "") -> str:
    ns = f", namespace: {namespace}" if namespace else ""
    return f"apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}{ns}}}\n{extra}"


def _plan(tmp_path: Path, *docs: str) -> Plan:
    path = tmp_path / "in.yaml"
    path.write_text("---\n".join(docs))
    base = load_manifests(path)
    options = RewriteOptions(app_slug="acme", license_id="LIC", proxy_all=True, namespace="apps")
    plan = build_plan(find_images(base), [], options)
    for patch in plan.patches:  # every patch applies to its object
        doc = next(
            d for d in base.documents if d.name == patch.target.name and d.kind == patch.target.kind
        )
        jsonpatch.apply_patch(node_to_data(doc.node), patch.operations())
    return plan


def test_pod_spec_service_account_comes_before_the_resources(tmp_path: Path) -> None:
    plan = _plan(
        tmp_path,
        CRD % UNDECLARED,
        _runner("  serviceAccountName: outer\n", "    serviceAccountName: inner\n"),
        _account("outer"),
        _account("inner"),
    )
    [patch] = plan.patches
    assert (patch.target.kind, patch.target.name, patch.placement) == (
        "ServiceAccount",
        "inner",
        Placement.SERVICE_ACCOUNT,
    )


def test_service_account_already_holding_the_secret_needs_no_patch(tmp_path: Path) -> None:
    held = f"imagePullSecrets:\n  - name: other\n  - name: {SECRET}\n"
    plan = _plan(
        tmp_path,
        CRD % UNDECLARED,
        _runner("  serviceAccountName: sa\n"),
        _account("sa", extra=held),
    )
    assert plan.patches == () and plan.unplaced == ()
    appended = _plan(
        tmp_path,
        CRD % UNDECLARED,
        _runner("  serviceAccountName: sa\n"),
        _account("sa", extra="imagePullSecrets:\n  - name: other\n"),
    )
    assert appended.patches[0].operations() == [
        {"op": "add", "path": "/imagePullSecrets/-", "value": {"name": SECRET}}
    ]


def test_a_service_account_name_the_schema_prunes_does_not_count(tmp_path: Path) -> None:
    crd = (CRD % UNDECLARED).replace(  # spec.serviceAccountName no longer in the schema
        "serviceAccountName: {type: string}\n                imagePullSecrets",
        "imagePullSecrets",
    )
    plan = _plan(tmp_path, crd, _runner("  serviceAccountName: sa\n"), _account("sa"))
    assert plan.patches == ()
    [item] = plan.unplaced
    assert item.reason.endswith("and it names no ServiceAccount")
    assert any("in.yaml:" in w and "no place for the pull secret" in w for w in plan.warnings)


def test_app_namespace_service_account_matches_resource_without_namespace(tmp_path: Path) -> None:
    """Objects without metadata.namespace land in the app namespace; a ServiceAccount of the
    same name in another namespace makes the patch target name ``default`` (kustomize's
    namespace of an object that names none) so it selects only the right one."""
    runner = _runner("  serviceAccountName: sa\n").replace(", namespace: apps", "")
    plan = _plan(tmp_path, CRD % UNDECLARED, runner, _account("sa", None), _account("sa", "other"))
    [patch] = plan.patches
    assert patch.target.kind == "ServiceAccount" and patch.target.namespace == "default"


def test_existing_ancestor_list_gets_appended(tmp_path: Path) -> None:
    spec = "  imagePullSecrets:\n    - name: vendor\n"
    plan = _plan(tmp_path, CRD % DECLARED, _runner(spec))
    [patch] = plan.patches
    assert patch.placement is Placement.ANCESTOR
    assert patch.operations() == [
        {"op": "add", "path": "/spec/imagePullSecrets/-", "value": {"name": SECRET}}
    ]
    done = _plan(tmp_path, CRD % DECLARED, _runner(f"  imagePullSecrets:\n    - name: {SECRET}\n"))
    assert done.patches == () and done.unplaced == ()


PRESERVED_SPEC = (
    (CRD % UNDECLARED)
    .replace(f"                imagePullSecrets: {UNDECLARED}\n", "")
    .replace(
        "            spec:\n              type: object\n",
        "            spec:\n              type: object\n"
        "              x-kubernetes-preserve-unknown-fields: true\n",
    )
)


@pytest.mark.parametrize("crd", [CRD % UNDECLARED, PRESERVED_SPEC], ids=["strings", "preserved"])
def test_an_undeclared_ancestor_field_is_not_a_place(tmp_path: Path, crd: str) -> None:
    """A list of strings is not Kubernetes' list of {name}; and a field only kept because its
    object preserves unknown fields is not one the resource's controller reads."""
    plan = _plan(tmp_path, crd, _runner())
    assert plan.patches == () and len(plan.unplaced) == 1


@pytest.mark.parametrize(
    ("api_version", "kind", "unchecked"),
    [("apps/v1", "Deployment", False), ("example.io/v1", "Runner", True)],
)
def test_builtin_kinds_are_never_unchecked(
    tmp_path: Path, api_version: str, kind: str, unchecked: bool
) -> None:
    doc = _runner().replace("example.io/v1", api_version).replace("Runner", kind)
    plan = _plan(tmp_path, doc)
    [patch] = plan.patches
    expected = Placement.LEGACY_UNCHECKED if unchecked else Placement.BESIDE_PODSPEC
    assert patch.placement is expected
    assert patch.operations()[0]["path"] == "/spec/pod/imagePullSecrets"
    assert len(plan.unchecked) == int(unchecked)


def test_enclosing_list_item_with_declared_field(tmp_path: Path) -> None:
    """The nearest enclosing object may be an item of a list (spec.instances[1])."""
    crd = (
        """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: clusters.example.io}
spec:
  group: example.io
  names: {kind: Cluster, plural: clusters}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                instances:
                  type: array
                  items:
                    type: object
                    properties:
                      imagePullSecrets: %s
                      pod:
                        type: object
                        properties:
                          containers:
                            type: array
                            items: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""
    ).replace("%s", DECLARED)
    cluster = """\
apiVersion: example.io/v1
kind: Cluster
metadata: {name: c}
spec:
  instances:
    - pod:
        containers: [{name: a, image: docker.io/library/redis:7}]
    - imagePullSecrets: [{name: vendor}]
      pod:
        containers: [{name: b, image: quay.io/acme/b:1}]
"""
    plan = _plan(tmp_path, crd, cluster)
    [patch] = plan.patches
    assert patch.placement is Placement.ANCESTOR
    assert patch.operations() == [
        {"op": "add", "path": "/spec/instances/0/imagePullSecrets", "value": [{"name": SECRET}]},
        {"op": "add", "path": "/spec/instances/1/imagePullSecrets/-", "value": {"name": SECRET}},
    ]


@pytest.mark.parametrize(("namespace", "ok"), [("apps", True), ("other", False)])
def test_verify_counts_a_service_account_only_in_the_pods_namespace(
    tmp_path: Path, namespace: str, ok: bool
) -> None:
    """verify's check on built objects: the CR's secret is pruned, its ServiceAccount holds it,
    but only a ServiceAccount in the CR's namespace serves its pods."""
    from ruamel.yaml import YAML

    from kotsrewrite._verify import _Checker

    docs = [
        CRD % UNDECLARED,
        _runner("  serviceAccountName: sa\n")
        .replace(
            "    containers:", "    imagePullSecrets: [{name: acme-registry}]\n    containers:"
        )
        .replace("quay.io/acme/runner:1", "proxy.replicated.com/proxy/acme/quay.io/acme/runner:1"),
        _account("sa", namespace, extra=f"imagePullSecrets: [{{name: {SECRET}}}]\n"),
    ]
    built = [YAML(typ="safe", pure=True).load(d) for d in docs]
    checker = _Checker(tmp_path, None, "apps", ["kubectl", "kustomize"])
    checker.check_pod_specs(built, SECRET, {"proxy.replicated.com"})
    problems = [p for p in checker.problems if "does not survive" in p]
    assert (problems == []) is ok, checker.problems
    if not ok:
        assert problems[0].startswith("Runner apps/r spec.pod: pulls proxy.replicated.com/")
