"""The pure planner: options, kustomize name matching, renames, secrets."""

from __future__ import annotations

import base64
import json

import pytest

from kotsrewrite import find_images, load_manifests
from kotsrewrite._errors import InputError, PolicyError
from kotsrewrite._model import Evidence, OnUnknown, ProbeResult, Verdict
from kotsrewrite._plan import Action, Rename, RewriteOptions, build_plan, kustomize_image_matches
from kotsrewrite._reference import ImageRef

LIC = "LIC-very-secret-1"


def _opts(**kw: object) -> RewriteOptions:
    return RewriteOptions(app_slug="acme", license_id=LIC, **kw)  # type: ignore[arg-type]


def test_license_id_never_in_repr() -> None:
    opts = _opts()
    assert LIC not in repr(opts) and LIC not in str(opts)
    with pytest.raises(InputError) as exc:
        RewriteOptions(app_slug="acme", license_id="has space")
    assert "has space" not in str(exc.value) and exc.value.file == "--license-id"


def test_kustomize_matching_mirrors_v5() -> None:
    # Checked against kubectl kustomize v5.5: the name is an unescaped regex.
    assert kustomize_image_matches("nginx:1.25@sha256:" + "0" * 64, "nginx")
    assert not kustomize_image_matches("nginx-foo:1", "nginx")
    assert kustomize_image_matches("quay.io/a/b:1x0", "quay.io/a/b:1.0")
    assert not kustomize_image_matches("quay.io/a/b:1x0", r"quay\.io/a/b:1\.0")
    r = Rename("localhost:5000/x", "p/x")
    assert r.apply("localhost:5000/x:1@sha256:" + "a" * 64) == "p/x:1@sha256:" + "a" * 64


def _plan(tmp_path, images, verdicts, **kw):  # type: ignore[no-untyped-def]
    body = "".join(f'  - name: c{i}\n    image: "{img}"\n' for i, img in enumerate(images))
    (tmp_path / "p.yaml").write_text(
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n{body}"
    )
    inv = find_images(load_manifests(tmp_path / "p.yaml"))
    results = [ProbeResult(ImageRef.parse(i), v, Evidence(reason="t")) for i, v in verdicts.items()]
    return build_plan(inv, results, _opts(**kw))


def test_hub_spellings_name_only_and_sorted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plan = _plan(
        tmp_path,
        ["nginx:1.25", "busybox"],
        {"nginx:1.25": Verdict.PRIVATE, "busybox": Verdict.PUBLIC},
    )
    # Only the spelling the base uses: each entry costs kustomize a pass over every object.
    assert [(r.name, r.new_name) for r in plan.renames] == [
        ("nginx", "proxy.replicated.com/proxy/acme/docker.io/library/nginx")
    ]
    assert plan.rename_image("busybox") == "busybox"
    spellings = ["docker.io/library/nginx:2", "nginx:1.25", "library/nginx@sha256:" + "0" * 64]
    plan = _plan(tmp_path, spellings, dict.fromkeys(spellings, Verdict.PRIVATE))
    names = [r.name for r in plan.renames]
    assert names == ["docker.io/library/nginx", "library/nginx", "nginx"]
    assert {r.new_name for r in plan.renames} == {
        "proxy.replicated.com/proxy/acme/docker.io/library/nginx"
    }
    for image in spellings:
        assert plan.rename_image(image).startswith("proxy.replicated.com/proxy/acme/docker.io/")


def test_mixed_tags_are_tag_qualified_and_untagged_private_escalates(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plan = _plan(
        tmp_path,
        ["quay.io/a/b:1", "quay.io/a/b:2"],
        {"quay.io/a/b:1": Verdict.PRIVATE, "quay.io/a/b:2": Verdict.PUBLIC},
    )
    assert [r.name for r in plan.renames] == ["quay.io/a/b:1"]
    assert plan.rename_image("quay.io/a/b:2") == "quay.io/a/b:2"
    plan = _plan(
        tmp_path,
        ["quay.io/a/b", "quay.io/a/b:2"],
        {"quay.io/a/b": Verdict.PRIVATE, "quay.io/a/b:2": Verdict.PUBLIC},
    )
    assert plan.decision("quay.io/a/b:2").action is Action.PROXY
    assert plan.decision("quay.io/a/b:2").note
    assert any("cannot rename" in w for w in plan.warnings)


def test_policy_fail_and_secret_content(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PolicyError):
        _plan(
            tmp_path,
            ["quay.io/a/b:1"],
            {"quay.io/a/b:1": Verdict.UNREACHABLE},
            on_unknown=OnUnknown.FAIL,
        )
    plan = _plan(tmp_path, ["quay.io/a/b:1"], {})
    assert plan.decisions[0].unknown and plan.decisions[0].action is Action.PROXY
    secret = plan.secret_objects()[0]
    assert "namespace" not in secret["metadata"]
    cfg = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    entry = cfg["auths"]["proxy.replicated.com"]
    assert entry == cfg["auths"]["registry.replicated.com"]
    assert entry["username"] == "LICENSE_ID" and entry["password"] == LIC
    assert base64.b64decode(entry["auth"]).decode() == f"LICENSE_ID:{LIC}"
    assert LIC not in repr(plan)


def test_existing_pull_secret_appended_or_skipped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "p.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x}\nspec:\n"
        "  imagePullSecrets: [{name: other}]\n  containers:\n"
        '  - {name: c, image: "quay.io/a/b:1"}\n'
    )
    inv = find_images(load_manifests(tmp_path / "p.yaml"))
    res = [ProbeResult(ImageRef.parse("quay.io/a/b:1"), Verdict.PRIVATE, Evidence(reason="t"))]
    plan = build_plan(inv, res, _opts())
    assert plan.patches[0].operations() == [
        {"op": "add", "path": "/spec/imagePullSecrets/-", "value": {"name": "acme-registry"}}
    ]
    assert plan.patches[0].target.to_json() == {
        "version": "v1",
        "kind": "Pod",
        "name": "p",
        "namespace": "x",
    }
    assert plan.secret_namespaces == ("default", "x")
