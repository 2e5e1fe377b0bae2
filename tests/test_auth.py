"""WWW-Authenticate parser, token responses and realm safety rules."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kotsrewrite._auth import (
    Challenge,
    ChallengeParseError,
    RealmRefusedError,
    TokenResponseError,
    check_realm,
    granted_pulls,
    is_forbidden_address,
    parse_token_response,
    parse_www_authenticate,
)


def test_docker_hub_style_bearer() -> None:
    (c,) = parse_www_authenticate(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull",error="insufficient_scope"'
    )
    assert c.scheme == "bearer"
    assert c.realm == "https://auth.docker.io/token"
    assert c.params["service"] == "registry.docker.io"
    assert c.params["scope"] == "repository:library/nginx:pull"
    assert c.params["error"] == "insufficient_scope"


def test_commas_and_escapes_inside_quotes_and_several_challenges() -> None:
    cs = parse_www_authenticate(
        'Newauth realm="apps", type=1, title="Login to \\"apps\\", now",'
        ' Basic realm="simple", Bearer realm="https://r/t",scope="repository:a:pull,push"'
    )
    assert [c.scheme for c in cs] == ["newauth", "basic", "bearer"]
    assert cs[0].params == {"realm": "apps", "type": "1", "title": 'Login to "apps", now'}
    assert cs[2].params["scope"] == "repository:a:pull,push"


def test_case_whitespace_token68_and_lists() -> None:
    cs = parse_www_authenticate(['BASIC  Realm = "x" ', ", Negotiate abc/+==,  Bearer"])
    assert cs == (
        Challenge("basic", {"realm": "x"}),
        Challenge("negotiate", {}, token68="abc/+=="),
        Challenge("bearer", {}),
    )


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " , ",
        'Bearer realm="unterminated',
        "=x",
        "Bearer realm=x realm=y",
        "Bearer realm=x, realm=y",
        'Bearer realm="a\nb"',
        "Bearer a b",
        "Bear(er realm=x",
        "x" * 20000,
    ],
)
def test_malformed(bad: str) -> None:
    with pytest.raises(ChallengeParseError):
        parse_www_authenticate(bad)


_token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~",
    min_size=1,
    max_size=12,
)
_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=8)
_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


@given(st.text(max_size=120))
@settings(max_examples=200, deadline=None)
def test_never_raises_anything_else(text: str) -> None:
    try:
        cs = parse_www_authenticate(text)
    except ChallengeParseError:
        return
    assert cs and all(c.scheme and c.scheme == c.scheme.lower() for c in cs)


@given(st.text(alphabet='Bearer realm=",\\ \t=abc/+-', max_size=80))
@settings(max_examples=400, deadline=None)
def test_never_raises_on_near_misses(text: str) -> None:
    with contextlib.suppress(ChallengeParseError):
        parse_www_authenticate(text)


@given(
    st.lists(
        st.tuples(_token, st.dictionaries(_name, _value, min_size=1, max_size=4)),
        min_size=1,
        max_size=3,
    )
)
@settings(max_examples=300, deadline=None)
def test_round_trip(challenges: list[tuple[str, dict[str, str]]]) -> None:
    def quote(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    header = ", ".join(
        f"{scheme} " + ", ".join(f"{k}={quote(v)}" for k, v in params.items())
        for scheme, params in challenges
    )
    parsed = parse_www_authenticate(header)
    assert [(c.scheme, dict(c.params)) for c in parsed] == [
        (s.lower(), {k.lower(): v for k, v in p.items()}) for s, p in challenges
    ]


# -- token responses -----------------------------------------------------------------------------


def test_token_response_fields() -> None:
    assert parse_token_response(b'{"token": "a", "expires_in": 300}').expires_in == 300
    assert parse_token_response(b'{"token": "a"}').expires_in == 60
    assert parse_token_response(b'{"token": "a", "expires_in": 5}').expires_in == 60
    assert parse_token_response(b'{"token": "", "access_token": "b"}').token == "b"
    assert parse_token_response(b'{"token": "a", "access_token": "b"}').token == "a"
    assert parse_token_response(b'{"token": "a", "expires_in": "300"}').expires_in == 60


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>",
        b"[]",
        b"{}",
        b'{"token": 5}',
        b'{"token": "a b"}',
        b'{"token": "\\n"}',
        b"\xff\xfe",
        b"[" * 100000,
    ],
)
def test_token_response_errors(body: bytes) -> None:
    with pytest.raises(TokenResponseError):
        parse_token_response(body)


@given(
    st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["token", "access_token", "expires_in", "x"]), inner, max_size=4
                )
            ),
            max_leaves=10,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
@settings(max_examples=400, deadline=None)
def test_token_response_never_raises_anything_else(body: bytes) -> None:
    try:
        tok = parse_token_response(body)
    except TokenResponseError:
        return
    assert tok.token and tok.expires_in >= 60


# -- realms ----------------------------------------------------------------------------------------


def test_realm_rules() -> None:
    assert check_realm("https://auth.docker.io/token", allow_http=False)
    assert check_realm("http://127.0.0.1:5001/token", allow_http=True)
    with pytest.raises(RealmRefusedError, match="plain http"):
        check_realm("http://auth.example/token", allow_http=False)
    for realm in (
        "https://169.254.169.254/",
        "https://[::ffff:169.254.169.254]/",
        "https://metadata.google.internal./x",
        "https://[fe80::1%25eth0]/",
        "ftp://x/",
        "https:///nohost",
        "https://u:p@x/",
        "https://x:notaport/",
    ):
        with pytest.raises(RealmRefusedError):
            check_realm(realm, allow_http=True)


def test_forbidden_addresses() -> None:
    assert is_forbidden_address("169.254.1.2")
    assert is_forbidden_address("100.100.100.200")
    assert is_forbidden_address("fd00:ec2::254")
    assert is_forbidden_address("METADATA.google.internal")
    assert is_forbidden_address("127.0.0.1") is None
    assert is_forbidden_address("10.0.0.1") is None
    assert is_forbidden_address("registry.example.com") is None


# -- granted_pulls ---------------------------------------------------------------------------------


def _jwt(claims: object) -> str:
    def enc(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{enc({'alg': 'ES256', 'typ': 'JWT'})}.{enc(claims)}.c2ln"


def test_granted_pulls_reads_the_access_claim() -> None:
    access = [
        {"type": "repository", "name": "a/b", "actions": ["pull"]},
        {"type": "repository", "name": "c/d", "actions": []},  # named, but denied
        {"type": "repository", "name": "e/f", "actions": ["push"]},
        {"type": "repository", "name": "g/h", "actions": ["*"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
        {"type": "repository", "name": 5, "actions": ["pull"]},
        "junk",
    ]
    assert granted_pulls(_jwt({"access": access})) == {"a/b", "g/h"}
    assert granted_pulls(_jwt({"access": []})) == frozenset()


@pytest.mark.parametrize(
    "token",
    [
        "opaque-token",  # not a JWT at all (GHCR-style)
        "a.b",
        "a.!!!.c",  # payload not base64
        _jwt(["not", "an", "object"]),
        _jwt({"sub": "x"}),  # no access claim
        _jwt({"access": {"type": "repository"}}),
    ],
)
def test_granted_pulls_is_none_for_tokens_it_cannot_read(token: str) -> None:
    assert granted_pulls(token) is None
