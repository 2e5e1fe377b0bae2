"""ImageRef: the parts of a reference as written, normalized, and the docker-image-py bugs."""

from __future__ import annotations

import pytest

from kotsrewrite import ImageRef, InvalidReferenceError

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest", "normalized", "api_host"),
    [
        ("nginx", "", "nginx", None, None, "docker.io/library/nginx", "registry-1.docker.io"),
        (
            "nginx:1.10",
            "",
            "nginx",
            "1.10",
            None,
            "docker.io/library/nginx:1.10",
            "registry-1.docker.io",
        ),
        (
            "library/nginx",
            "",
            "library/nginx",
            None,
            None,
            "docker.io/library/nginx",
            "registry-1.docker.io",
        ),
        (
            "index.docker.io/bitnami/redis:7",
            "index.docker.io",
            "bitnami/redis",
            "7",
            None,
            "docker.io/bitnami/redis:7",
            "registry-1.docker.io",
        ),
        (
            "quay.io/org/api:1.2",
            "quay.io",
            "org/api",
            "1.2",
            None,
            "quay.io/org/api:1.2",
            "quay.io",
        ),
        (
            "localhost:5000/a/b/c",
            "localhost:5000",
            "a/b/c",
            None,
            None,
            "localhost:5000/a/b/c",
            "localhost:5000",
        ),
        (
            f"nginx@{DIGEST}",
            "",
            "nginx",
            None,
            DIGEST,
            f"docker.io/library/nginx@{DIGEST}",
            "registry-1.docker.io",
        ),
        (
            f"ghcr.io/o/r:v1@{DIGEST}",
            "ghcr.io",
            "o/r",
            "v1",
            DIGEST,
            f"ghcr.io/o/r:v1@{DIGEST}",
            "ghcr.io",
        ),
    ],
)
def test_parts(
    text: str,
    domain: str,
    path: str,
    tag: str | None,
    digest: str | None,
    normalized: str,
    api_host: str,
) -> None:
    ref = ImageRef.parse(text)
    assert (ref.original, ref.domain, ref.path, ref.tag, ref.digest) == (
        text,
        domain,
        path,
        tag,
        digest,
    )
    assert ref.normalized == normalized
    assert ref.api_host == api_host
    assert str(ref) == text


def test_digest_only_reference_has_a_name() -> None:
    # docker-image-py's familiar_name() fails on digest-only references; ours does not.
    ref = ImageRef.parse(f"nginx@{DIGEST}")
    assert ref.name == "nginx"
    assert ref.normalized_name == "docker.io/library/nginx"
    assert ref.manifest_reference == DIGEST


@pytest.mark.parametrize("text", ["nginx\n", "nginx ", " nginx", "ngi nx", "nginx\t"])
def test_whitespace_rejected(text: str) -> None:
    # docker-image-py's anchored regexes accept a trailing newline; ours must not.
    with pytest.raises(InvalidReferenceError, match="whitespace"):
        ImageRef.parse(text)


@pytest.mark.parametrize(
    "text",
    ["", "Nginx", "nginx:", "nginx@sha256:abc", ":tag", "a" * 64, "nginx:-bad", "quay.io//x"],
)
def test_invalid(text: str) -> None:
    with pytest.raises(InvalidReferenceError):
        ImageRef.parse(text)


def test_hub_spellings() -> None:
    assert ImageRef.parse("nginx:1").hub_spellings == (
        "docker.io/library/nginx",
        "docker.io/nginx",
        "index.docker.io/library/nginx",
        "index.docker.io/nginx",
        "library/nginx",
        "nginx",
    )
    assert ImageRef.parse("bitnami/redis").hub_spellings == (
        "bitnami/redis",
        "docker.io/bitnami/redis",
        "index.docker.io/bitnami/redis",
    )
    assert ImageRef.parse("quay.io/o/r:1").hub_spellings == ("quay.io/o/r",)


def test_uppercase_first_component_is_a_domain() -> None:
    ref = ImageRef.parse("Registry/app")
    assert (ref.domain, ref.path) == ("Registry", "app")
