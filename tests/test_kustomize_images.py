"""kotsrewrite._kustomize_images says what kustomize's ``images`` entries make of an image:
checked against ``kubectl kustomize`` itself, the consumer, on names that are matched as
unescaped regular expressions, escaped, tag-qualified, with a port, and chained."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from kotsrewrite._kustomize_images import (
    Rename,
    RenameIndex,
    apply_renames,
    finish_renames,
    quote_meta,
    renames_from,
    split_image,
)

KUBECTL = shutil.which("kubectl")
DIGEST = "sha256:" + "0" * 64

RENAMES = [
    Rename("nginx", "proxy/nginx"),
    Rename(r"quay\.io/a/b", "proxy/b"),
    Rename("quay.io/a/c", "proxy/c"),  # unescaped: also matches quayXio/a/c
    Rename("localhost:5000/x", "proxy/x"),
    Rename("docker.io/library/redis:7", "proxy/redis"),  # tag-qualified
    Rename("a/first", "a/second"),
    Rename("a/second", "proxy/final"),  # applies to the result of the entry before
]
IMAGES = [
    "nginx",
    "nginx:1.25",
    f"nginx@{DIGEST}",
    f"nginx:1.25@{DIGEST}",
    "nginx-foo:1",
    "quay.io/a/b:1",
    "quayXio/a/b:1",
    "quayXio/a/c:2",
    "localhost:5000/x:3",
    f"localhost:5000/x@{DIGEST}",
    "docker.io/library/redis:7",
    "docker.io/library/redis:8",
    "a/first:1",
]


@pytest.mark.kustomize
@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
def test_renames_are_what_kustomize_does(tmp_path: Path) -> None:
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(IMAGES)]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"containers": containers}}},
    }
    (tmp_path / "d.yaml").write_text(json.dumps(deployment))
    kustomization = {"resources": ["d.yaml"], "images": [r.to_json() for r in RENAMES]}
    (tmp_path / "kustomization.yaml").write_text(json.dumps(kustomization))
    assert KUBECTL is not None
    built = subprocess.run(
        [KUBECTL, "kustomize", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    got = [
        c["image"]
        for c in YAML(typ="safe", pure=True).load(built)["spec"]["template"]["spec"]["containers"]
    ]
    ours = [apply_renames(image, RENAMES) for image in IMAGES]
    assert ours == got
    index = RenameIndex([r.name for r in RENAMES])
    assert [index.rename(image, RENAMES) for image in IMAGES] == got
    assert renames_from(kustomization["images"]) == RENAMES
    # The cases above are not trivial: each kind of rule changed something.
    assert got[IMAGES.index("quayXio/a/c:2")] == "proxy/c:2"
    assert got[IMAGES.index("quayXio/a/b:1")] == "quayXio/a/b:1"
    assert got[IMAGES.index("docker.io/library/redis:8")] == "docker.io/library/redis:8"
    assert got[IMAGES.index("a/first:1")] == "proxy/final:1"


def test_split_image_is_kustomizes_split() -> None:
    assert split_image("localhost:5000/x:3") == ("localhost:5000/x", "3", "")
    assert split_image(f"nginx:1@{DIGEST}") == ("nginx", "1", DIGEST)
    assert split_image(f"nginx@{DIGEST}") == ("nginx", "", DIGEST)
    assert split_image("nginx") == ("nginx", "", "")


def test_finish_renames_escapes_only_names_that_catch_other_images() -> None:
    entries = [
        ("quay.io/a/b", "proxy/b", frozenset({"quay.io/a/b:1"})),
        ("ghcr.io/z/y", "proxy/y", frozenset({"ghcr.io/z/y:1"})),
    ]
    intended = {
        "quay.io/a/b:1": "proxy/b:1",
        "quayXio/a/b:1": "quayXio/a/b:1",  # kept: the unescaped name would catch it
        "ghcr.io/z/y:1": "proxy/y:1",
    }
    renames, wrong = finish_renames(entries, intended)
    assert renames == (
        Rename("ghcr.io/z/y", "proxy/y"),
        Rename(quote_meta("quay.io/a/b"), "proxy/b"),
    )
    assert wrong == []
    # An image whose intended result the entries cannot give is reported.
    _, wrong = finish_renames(entries[:1], {"quay.io/a/b:1": "quay.io/a/b:1"})
    assert wrong == ["quay.io/a/b:1"]
