"""Property tests: ImageRef parse/format round trips over the distribution grammar."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kotsrewrite import ImageRef, InvalidReferenceError

_alnum = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_separator = st.sampled_from([".", "_", "__", "-", "--"])


@st.composite
def path_component(draw: st.DrawFn) -> str:
    parts = [draw(_alnum)]
    for _ in range(draw(st.integers(0, 2))):
        parts += [draw(_separator), draw(_alnum)]
    return "".join(parts)


_label = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,6}[a-z0-9])?\Z")


@st.composite
def domain(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["dotted", "localhost", "port"]))
    if kind == "localhost":
        host = "localhost"
    else:
        labels = [draw(_label) for _ in range(draw(st.integers(2, 3)))]
        host = ".".join(labels)
    if kind == "port" or (kind == "localhost" and draw(st.booleans())):
        host += f":{draw(st.integers(1, 65535))}"
    return host


_tag = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}\Z")
_digest = st.from_regex(r"\A[a-f0-9]{64}\Z").map(lambda h: f"sha256:{h}")


@st.composite
def reference(draw: st.DrawFn) -> tuple[str, str, str, str | None, str | None]:
    dom = draw(st.one_of(st.just(""), domain()))
    path = "/".join(draw(path_component()) for _ in range(draw(st.integers(1, 3))))
    first, sep, _ = path.partition("/")
    # without a domain, a first component that looks like a host would be read as one
    assume(dom or not sep or ("." not in first and first != "localhost"))
    tag = draw(st.one_of(st.none(), _tag))
    digest = draw(st.one_of(st.none(), _digest))
    text = f"{dom}/{path}" if dom else path
    if tag is not None:
        text += f":{tag}"
    if digest is not None:
        text += f"@{digest}"
    return text, dom, path, tag, digest


@settings(max_examples=50, deadline=None)
@given(reference())
def test_parse_recovers_the_parts(case: tuple[str, str, str, str | None, str | None]) -> None:
    text, dom, path, tag, digest = case
    ref = ImageRef.parse(text)
    assert (ref.original, ref.domain, ref.path, ref.tag, ref.digest) == (
        text,
        dom,
        path,
        tag,
        digest,
    )
    assert str(ref) == text
    rebuilt = (
        ref.name + (f":{ref.tag}" if ref.tag else "") + (f"@{ref.digest}" if ref.digest else "")
    )
    assert rebuilt == text
    assert ref.manifest_reference == (digest or tag or "latest")


@settings(max_examples=50, deadline=None)
@given(reference())
def test_normalized_form_is_a_fixed_point(
    case: tuple[str, str, str, str | None, str | None],
) -> None:
    ref = ImageRef.parse(case[0])
    again = ImageRef.parse(ref.normalized)
    assert again.normalized == ref.normalized
    assert (again.registry, again.repository, again.tag, again.digest) == (
        ref.registry,
        ref.repository,
        ref.tag,
        ref.digest,
    )
    assert ref.normalized_name.startswith(ref.registry + "/")
    assert ref.name in ref.hub_spellings
    if ref.is_docker_hub:
        assert ref.api_host == "registry-1.docker.io"
        assert "/" in ref.repository
    else:
        assert ref.api_host == ref.domain == ref.registry


@settings(max_examples=60, deadline=None)
@given(reference(), st.sampled_from(["\n", " ", "\t", "\r\n", "\x00"]))
def test_trailing_whitespace_is_rejected(
    case: tuple[str, str, str, str | None, str | None], junk: str
) -> None:
    # docker-image-py's regexes end in `$`, which matches before a final newline.
    with pytest.raises(InvalidReferenceError):
        ImageRef.parse(case[0] + junk)


@settings(max_examples=60, deadline=None)
@given(reference())
def test_uppercase_repository_is_rejected(
    case: tuple[str, str, str, str | None, str | None],
) -> None:
    _text, dom, path, tag, digest = case
    head, _, last = path.rpartition("/")
    assume(last.upper() != last)  # has a letter to uppercase
    # only the last component: an uppercase first component would be read as a registry host
    upper = (f"{dom}/" if dom else "") + (f"{head}/" if head else "") + last.upper()
    with pytest.raises(InvalidReferenceError):
        ImageRef.parse(upper + (f":{tag}" if tag else "") + (f"@{digest}" if digest else ""))


@settings(max_examples=50, deadline=None)
@given(path_component(), _digest)
def test_digest_only_docker_hub_reference(name: str, digest: str) -> None:
    # docker-image-py's familiar_name() fails on these; ImageRef must not.
    ref = ImageRef.parse(f"{name}@{digest}")
    assert ref.tag is None and ref.digest == digest
    assert ref.normalized == f"docker.io/library/{name}@{digest}"
    assert f"docker.io/library/{name}" in ref.hub_spellings


@settings(max_examples=50, deadline=None)
@given(reference())
def test_order_and_equality_follow_the_written_string(
    case: tuple[str, str, str, str | None, str | None],
) -> None:
    a, b = ImageRef.parse(case[0]), ImageRef.parse(case[0])
    assert a == b and hash(a) == hash(b)
    assert sorted([a, ImageRef.parse("zzz")])[0] == min(a, ImageRef.parse("zzz"))
