"""find_images: slots, PodSpec sites, pull secrets, unmanaged fields, and kustomize parity."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kotsrewrite import (
    ImageField,
    InputError,
    InvalidReferenceError,
    Slot,
    find_images,
    load_manifests,
)
from kotsrewrite._discovery import parse_image_field

FIXTURES = Path(__file__).parent / "fixtures" / "images"


def inventory_of(tmp_path: Path, text: str, **kw: Any) -> Any:
    (tmp_path / "m.yaml").write_text(text)
    return find_images(load_manifests(tmp_path / "m.yaml"), **kw)


POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: p
  namespace: ns1
spec:
  imagePullSecrets:
  - name: one
  - {}
  - name: two
  containers:
  - name: a
    image: quay.io/x/a:1
  - name: no-image
  initContainers:
  - name: i
    image: quay.io/x/i:1
  ephemeralContainers:
  - name: e
    image: quay.io/x/e:1
  volumes:
  - name: cfg
    configMap: {name: c}
  - name: model
    image: {reference: 'quay.io/x/model:1'}
"""


def test_pod_slots_pointer_and_pull_secrets(tmp_path: Path) -> None:
    inv = inventory_of(tmp_path, POD)
    assert [(u.ref.original, u.slot, u.location.container, u.location.field) for u in inv.uses] == [
        ("quay.io/x/a:1", Slot.CONTAINER, "a", "spec.containers[0].image"),
        ("quay.io/x/i:1", Slot.INIT_CONTAINER, "i", "spec.initContainers[0].image"),
        ("quay.io/x/e:1", Slot.EPHEMERAL_CONTAINER, "e", "spec.ephemeralContainers[0].image"),
        ("quay.io/x/model:1", Slot.IMAGE_VOLUME, "model", "spec.volumes[1].image.reference"),
    ]
    assert {u.pod_spec for u in inv.uses} == {"/spec"}
    assert {u.resource for u in inv.uses} == {0}
    (resource,) = inv.resources
    assert resource.document.name == "p"
    (site,) = resource.pod_specs
    assert site.pointer == "/spec" and site.line == 7 and site.pull_secrets == ("one", "two")
    assert inv.namespaces == ("ns1",)
    assert [u.location.line for u in inv.uses] == [13, 17, 20, 25]
    assert [str(i) for i in inv.images] == sorted(str(i) for i in inv.images)


@pytest.mark.parametrize(
    ("secrets", "expected"),
    [("", None), ("imagePullSecrets: null", None), ("imagePullSecrets: []", ())],
)
def test_pull_secrets_absent_null_empty(
    tmp_path: Path, secrets: str, expected: tuple[str, ...] | None
) -> None:
    text = (
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  jobTemplate:\n"
        "    spec:\n      template:\n        spec:\n"
        + (f"          {secrets}\n" if secrets else "")
        + "          containers:\n          - {name: c, image: nginx}\n"
    )
    inv = inventory_of(tmp_path, text)
    (site,) = inv.resources[0].pod_specs
    assert site.pointer == "/spec/jobTemplate/spec/template/spec"
    assert site.pull_secrets == expected


def test_known_site_without_images_is_still_a_resource(tmp_path: Path) -> None:
    inv = inventory_of(
        tmp_path,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
        "spec:\n  template:\n    spec:\n      containers: []\n",
    )
    assert inv.uses == ()
    assert inv.resources[0].pod_specs[0].pointer == "/spec/template/spec"


def test_pointer_escapes(tmp_path: Path) -> None:
    inv = inventory_of(
        tmp_path,
        "apiVersion: x/v1\nkind: X\nmetadata: {name: x}\nspec:\n  a/b~c:\n"
        "    containers:\n    - {name: c, image: nginx}\n",
    )
    assert inv.uses[0].pod_spec == "/spec/a~1b~0c"


def test_unmanaged_and_warnings(tmp_path: Path) -> None:
    inv = inventory_of(
        tmp_path,
        "apiVersion: x/v1\nkind: Op\nmetadata: {name: o, namespace: n}\nspec:\n"
        "  image: quay.io/op/app:1\n  other:\n    image: 'Bad Ref'\n"
        "  nested: {image: {repository: x, tag: y}}\n  count: {image: 3}\n",
    )
    assert inv.uses == () and inv.resources == ()
    (use,) = inv.unmanaged
    assert use.slot is Slot.FIELD and use.resource is None and use.pod_spec is None
    assert use.location.field == "spec.image" and use.location.container is None
    (warning,) = inv.warnings
    assert warning.startswith(
        f"{tmp_path}/m.yaml:7: spec.other.image of Op o is not an image reference"
    )


def test_image_field_managed(tmp_path: Path) -> None:
    text = (
        "apiVersion: x/v1\nkind: Op\nmetadata: {name: o}\nspec:\n  image: quay.io/op/app:1\n"
        "  steps:\n  - image: quay.io/op/s1:1\n  - name: none\n  - image: quay.io/op/s2:1\n"
    )
    inv = inventory_of(tmp_path, text, image_fields=[parse_image_field("Op:spec/steps[]/image")])
    assert [(u.ref.original, u.slot) for u in inv.uses] == [
        ("quay.io/op/s1:1", Slot.FIELD),
        ("quay.io/op/s2:1", Slot.FIELD),
    ]
    assert [u.location.field for u in inv.uses] == ["spec.steps[0].image", "spec.steps[2].image"]
    assert [u.ref.original for u in inv.unmanaged] == ["quay.io/op/app:1"]
    other = inventory_of(tmp_path, text, image_fields=[ImageField("Other", "spec/image")])
    assert other.uses == () and len(other.unmanaged) == 3
    star = inventory_of(tmp_path, text, image_fields=[ImageField("*", "spec/image")])
    assert [u.location.field for u in star.uses] == ["spec.image"]


def test_image_field_over_a_container_is_not_doubled(tmp_path: Path) -> None:
    inv = inventory_of(
        tmp_path, POD, image_fields=[ImageField("Pod", "spec/ephemeralContainers[]/image")]
    )
    assert [u.slot for u in inv.uses].count(Slot.EPHEMERAL_CONTAINER) == 1
    assert Slot.FIELD not in {u.slot for u in inv.uses}


def test_crd_is_never_searched(tmp_path: Path) -> None:
    inv = inventory_of(
        tmp_path,
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: a.b}\nspec:\n  containers:\n  - image: nginx\n  image: nginx\n",
    )
    assert inv.uses == () and inv.unmanaged == () and inv.resources == ()


def test_templates_are_errors_even_in_unmanaged_fields(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        inventory_of(
            tmp_path,
            "apiVersion: x/v1\nkind: Op\nmetadata: {name: o}\nspec:\n  image: a:{{ .T }}\n",
        )
    assert info.value.file == f"{tmp_path}/m.yaml" and info.value.line == 5
    assert "unrendered template" in info.value.message


def test_invalid_managed_reference_carries_location(tmp_path: Path) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        inventory_of(tmp_path, POD.replace("quay.io/x/i:1", "quay.io/X/i:1"))
    assert (info.value.file, info.value.line) == (f"{tmp_path}/m.yaml", 17)
    assert "spec.initContainers[0].image" in info.value.message


def test_null_image_in_container_is_skipped(tmp_path: Path) -> None:
    inv = inventory_of(tmp_path, POD.replace("image: quay.io/x/a:1", "image: null"))
    assert "quay.io/x/a:1" not in {u.ref.original for u in inv.uses}


def test_namespaces(tmp_path: Path) -> None:
    inv = inventory_of(
        tmp_path,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: zeta}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: alpha}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\n",
    )
    assert inv.namespaces == ("alpha", "zeta")


def test_aliased_container_list_is_reported_in_both_places(tmp_path: Path) -> None:
    inv = inventory_of(
        tmp_path,
        "apiVersion: x/v1\nkind: X\nmetadata: {name: x}\nspec:\n"
        "  a:\n    containers: &c\n    - {name: c, image: nginx}\n  b:\n    containers: *c\n",
    )
    assert [u.location.field for u in inv.uses] == [
        "spec.a.containers[0].image",
        "spec.b.containers[0].image",
    ]


# -- kustomize parity --------------------------------------------------------------------------

KUBECTL = shutil.which("kubectl")
NEW = "rewritten.invalid/img"


def _rewritten(data: Any, path: str = "") -> set[str]:
    found: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            sub = f"{path}.{key}" if path else key
            if isinstance(value, str) and value.startswith(NEW):
                found.add(sub)
            else:
                found |= _rewritten(value, sub)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found |= _rewritten(value, f"{path}[{i}]")
    return found


@pytest.mark.kustomize
@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
@pytest.mark.parametrize("case", ["custom-resources", "workloads", "lists", "image-fields"])
def test_default_managed_uses_match_what_kustomize_rewrites(tmp_path: Path, case: str) -> None:
    src = FIXTURES / case / "input"
    shutil.copytree(src, tmp_path / "base")
    base = load_manifests(tmp_path / "base")
    inv = find_images(base)
    every = [*inv.uses, *inv.unmanaged]
    names = sorted({u.ref.name for u in every})
    kustomization = {
        "resources": list(base.files),
        "images": [{"name": n, "newName": f"{NEW}{i}"} for i, n in enumerate(names)],
    }
    (tmp_path / "base" / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    assert KUBECTL is not None
    built = subprocess.run(
        [KUBECTL, "kustomize", str(tmp_path / "base")],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    got = set()
    for obj in yaml.safe_load_all(built):
        meta = obj.get("metadata", {})
        for field in _rewritten(obj):
            got.add((obj["kind"], meta.get("namespace"), meta.get("name"), field))
    expected = {
        (u.location.kind, u.location.namespace, u.location.name, u.location.field)
        for u in inv.uses
        if u.slot.rewritten_by_default
    }
    assert expected, "fixture must have default-managed images"
    assert got == expected


def test_structured_image_in_a_container_list_warns(tmp_path: Path) -> None:
    inv = inventory_of(
        tmp_path,
        "apiVersion: x/v1\nkind: Op\nmetadata: {name: o}\nspec:\n  containers:\n"
        "  - name: c\n    image:\n      repository: nginx\n      tag: '1'\n",
    )
    assert inv.uses == () and inv.resources == ()
    (warning,) = inv.warnings
    assert warning.startswith(
        f"{tmp_path}/m.yaml:8: spec.containers[0].image of Op o is not a string"
    )
