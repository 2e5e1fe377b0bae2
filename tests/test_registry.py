"""The registry client's parts (kotsrewrite._registry): causes, insecure registries as Docker
matches them, redirects like real clients, the proxy path, and the pure verdict function.

Every probe here runs against servers on loopback: real Distribution registries (tests/lab.py)
where their behaviour is the point, scripted servers where a fault or an odd answer is.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from kotsrewrite import Cause, ImageRef, ProbeOptions, ProbeResult, Verdict, probe
from kotsrewrite._registry._options import insecure_matches
from kotsrewrite._registry._send import RegistryResponse
from kotsrewrite._registry._tokens import BearerChallenge
from kotsrewrite._registry._verdict import Decided, NeedToken, RetryWithGet, judge_manifest
from tests import lab
from tests.lab import ScriptedRequest, http_response

FAST = {"timeout": 3.0, "max_attempts": 1, "backoff": 0.01, "connect_timeout": 2.0}
MANIFEST = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}


def _probe(ref: str, **options: Any) -> ProbeResult:
    opts = ProbeOptions(**{**FAST, **options})
    return asyncio.run(probe([ImageRef.parse(ref)], opts))[0]


@pytest.fixture
def servers() -> Iterator[Callable[..., lab.ScriptedServer]]:
    started: list[lab.ScriptedServer] = []

    def make(
        respond: Callable[[ScriptedRequest, socket.socket], None],
        ctx: ssl.SSLContext | None = None,
    ) -> lab.ScriptedServer:
        srv = lab.ScriptedServer(respond, ssl_context=ctx)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def _tls(ca: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


def _answer(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Any:
    def respond(req: ScriptedRequest, sock: socket.socket) -> None:
        sock.sendall(http_response(status, headers, body))

    return respond


# -- causes -------------------------------------------------------------------------------------

ANSWERS: list[tuple[str, Any, dict[str, Any], Cause]] = [
    ("200 manifest", _answer(200, MANIFEST), {}, Cause.ANONYMOUS_PULL),
    ("200 html", _answer(200, {"Content-Type": "text/html"}), {}, Cause.NOT_A_REGISTRY),
    ("404", _answer(404), {}, Cause.MANIFEST_NOT_FOUND),
    ("403", _answer(403), {}, Cause.MANIFEST_DENIED),
    (
        "405 then GET 404 DENIED",
        lambda req, sock: sock.sendall(
            http_response(405)
            if req.method == "HEAD"
            else http_response(404, {}, b'{"errors":[{"code":"DENIED"}]}')
        ),
        {},
        Cause.MANIFEST_DENIED,
    ),
    (
        "401 Basic",
        _answer(401, {"WWW-Authenticate": 'Basic realm="r"'}),
        {},
        Cause.CREDENTIALS_REQUIRED,
    ),
    ("401 bare", _answer(401), {}, Cause.NO_CHALLENGE),
    (
        "401 bad",
        _answer(401, {"WWW-Authenticate": 'Bearer realm="x'}),
        {},
        Cause.MALFORMED_CHALLENGE,
    ),
    (
        "401 no realm",
        _answer(401, {"WWW-Authenticate": "Bearer service=s"}),
        {},
        Cause.MALFORMED_CHALLENGE,
    ),
    ("400", _answer(400), {}, Cause.UNEXPECTED_STATUS),
    ("503", _answer(503), {}, Cause.SERVER_ERROR),
    ("429", _answer(429), {}, Cause.RATE_LIMITED),
    (
        "429 long",
        _answer(429, {"Retry-After": "100"}),
        {"max_attempts": 2},
        Cause.RETRY_AFTER_TOO_LONG,
    ),
    ("302 bare", _answer(302), {}, Cause.REDIRECT_REFUSED),
    (
        "302 metadata",
        _answer(302, {"Location": "http://169.254.169.254/latest"}),
        {},
        Cause.REDIRECT_REFUSED,
    ),
    (
        "metadata realm",
        _answer(401, {"WWW-Authenticate": 'Bearer realm="http://169.254.169.254/t"'}),
        {},
        Cause.REALM_REFUSED,
    ),
]


@pytest.mark.parametrize(
    ("respond", "options", "cause"),
    [pytest.param(r, o, c, id=name) for name, r, o, c in ANSWERS],
)
def test_each_answer_has_its_cause(
    servers: Callable[..., lab.ScriptedServer],
    respond: Any,
    options: dict[str, Any],
    cause: Cause,
) -> None:
    srv = servers(respond)
    res = _probe(f"{srv.host}/app:1", insecure_registries=frozenset({srv.host}), **options)
    assert res.evidence.cause is cause, res.evidence.reason
    assert res.verdict is cause.verdict


def _token_registry(token_answer: bytes, token_status: int = 200) -> Any:
    def respond(req: ScriptedRequest, sock: socket.socket) -> None:
        host = req.headers["host"]
        if req.path.startswith("/token"):
            sock.sendall(http_response(token_status, {}, token_answer))
        else:
            chal = f'Bearer realm="http://{host}/token",service="svc"'
            sock.sendall(http_response(401, {"WWW-Authenticate": chal}))

    return respond


@pytest.mark.parametrize(
    ("token_status", "token_answer", "cause"),
    [
        (401, b"", Cause.TOKEN_REFUSED),
        (200, b"not json", Cause.BAD_TOKEN_RESPONSE),
        (404, b"", Cause.UNEXPECTED_STATUS),
        (200, b'{"token": "t"}', Cause.MANIFEST_DENIED),
    ],
)
def test_token_endpoint_causes(
    servers: Callable[..., lab.ScriptedServer], token_status: int, token_answer: bytes, cause: Cause
) -> None:
    srv = servers(_token_registry(token_answer, token_status))
    res = _probe(f"{srv.host}/app:1", insecure_registries=frozenset({srv.host}))
    assert res.evidence.cause is cause, res.evidence.reason


def test_closed_port_is_a_transport_error() -> None:
    port = lab.free_port()
    res = _probe(f"127.0.0.1:{port}/app:1", insecure_registries=frozenset({f"127.0.0.1:{port}"}))
    assert res.evidence.cause is Cause.TRANSPORT_ERROR
    assert res.verdict is Verdict.UNREACHABLE


def test_real_registries_causes(
    anon_registry: lab.Registry, basic_registry: lab.Registry, token_registry: lab.Registry
) -> None:
    hosts = frozenset({anon_registry.host, basic_registry.host, token_registry.host})
    refs = [
        anon_registry.ref("app", "1.0"),
        basic_registry.ref("app", "1.0"),
        token_registry.ref("public/app", "1.0"),
        token_registry.ref("private/app", "1.0"),
        token_registry.ref("refused/app", "1.0"),
        anon_registry.ref("missing", "1.0"),
    ]
    opts = ProbeOptions(insecure_registries=hosts)
    results = asyncio.run(probe([ImageRef.parse(r) for r in refs], opts))
    assert [r.evidence.cause for r in results] == [
        Cause.ANONYMOUS_PULL,
        Cause.CREDENTIALS_REQUIRED,
        Cause.ANONYMOUS_TOKEN_PULL,
        Cause.MANIFEST_DENIED,
        Cause.TOKEN_REFUSED,
        Cause.MANIFEST_NOT_FOUND,
    ], [r.evidence.reason for r in results]


def test_plain_http_registry_reached_over_tls_has_its_own_cause(
    anon_registry: lab.Registry,
) -> None:
    # A registry serving plain HTTP, probed over https (not opted in): the TLS handshake gets
    # an HTTP answer. The CLI hints at --insecure-registry for this cause.
    res = _probe(anon_registry.ref("app", "1.0"))
    assert res.evidence.cause is Cause.PLAIN_HTTP_TO_TLS, res.evidence.reason
    assert res.verdict is Verdict.UNREACHABLE
    assert "--" not in res.evidence.reason  # the library names no CLI flag


def test_tls_certificate_failure_is_a_tls_error(tls_registry: lab.Registry) -> None:
    res = _probe(tls_registry.ref("app", "1.0"))  # the lab CA is not trusted
    assert res.evidence.cause is Cause.TLS_ERROR, res.evidence.reason


# -- insecure registries: host[:port] as Docker matches them ------------------------------------


@pytest.mark.parametrize(
    ("host", "entries", "expected"),
    [
        ("reg.example", {"reg.example"}, True),
        ("reg.example:5000", {"reg.example"}, False),
        ("reg.example:443", {"reg.example"}, False),
        ("reg.example:5000", {"reg.example:5000"}, True),
        ("reg.example", {"reg.example:5000"}, False),
        ("REG.example:5000", {"reg.EXAMPLE:5000"}, True),
        ("10.1.2.3:5000", {"10.0.0.0/8"}, True),
        ("10.1.2.3", {"10.0.0.0/8"}, True),
        ("11.1.2.3:5000", {"10.0.0.0/8"}, False),
        ("[::1]:5000", {"::1/128"}, True),
        ("[::1]:5000", {"[::1]:5000"}, True),
        ("reg.example", set(), False),
    ],
)
def test_insecure_registry_matching(host: str, entries: set[str], expected: bool) -> None:
    assert insecure_matches(host, frozenset(entries)) is expected


def test_a_bare_host_does_not_cover_other_ports(anon_registry: lab.Registry) -> None:
    # 127.0.0.1 alone no longer sends 127.0.0.1:PORT over plain HTTP (nor HOST:443): https is
    # tried, and the plain-HTTP registry answers it with HTTP.
    ref = anon_registry.ref("app", "1.0")
    bare = _probe(ref, insecure_registries=frozenset({"127.0.0.1"}))
    assert bare.evidence.cause is Cause.PLAIN_HTTP_TO_TLS, bare.evidence.reason
    assert bare.evidence.steps[0].url.startswith("https://")
    exact = _probe(ref, insecure_registries=frozenset({anon_registry.host}))
    assert exact.evidence.cause is Cause.ANONYMOUS_PULL, exact.evidence.reason
    assert exact.evidence.steps[0].url.startswith("http://")


# -- redirects like real clients -----------------------------------------------------------------


def _mirror(scope_needed: str, realm_base: Callable[[], str]) -> Any:
    """A registry that grants ``scope_needed`` anonymously: its 401 names that scope, its
    token endpoint gives a token good for the manifest only when that scope was asked."""
    asked: list[list[str]] = []

    def respond(req: ScriptedRequest, sock: socket.socket) -> None:
        url = urllib.parse.urlsplit(req.path)
        if url.path == "/token":
            scopes = urllib.parse.parse_qs(url.query).get("scope", [])
            asked.append(scopes)
            token = "good" if scope_needed in scopes else "narrow"
            sock.sendall(http_response(200, {}, json.dumps({"token": token}).encode()))
        elif req.headers.get("authorization") == "Bearer good":
            sock.sendall(http_response(200, MANIFEST))
        else:
            chal = f'Bearer realm="{realm_base()}/token",service="mirror",scope="{scope_needed}"'
            sock.sendall(http_response(401, {"WWW-Authenticate": chal}))

    respond.asked = asked  # type: ignore[attr-defined]
    return respond


def _redirecting(target: Callable[[], str]) -> Any:
    def respond(req: ScriptedRequest, sock: socket.socket) -> None:
        path = req.path.replace("/v2/", "/v2/mirror/", 1)
        sock.sendall(http_response(307, {"Location": f"{target()}{path}"}))

    return respond


def test_redirect_to_a_plain_http_registry_with_an_http_realm(
    servers: Callable[..., lab.ScriptedServer],
) -> None:
    # The user opted registry A into plain HTTP; A redirects to B (plain HTTP too, reached
    # from A), whose realm is http on B: allowed, as B was reached over opted-in plain HTTP.
    # And B's token is asked with the scope B's challenge named, plus the repository's pull.
    holder: dict[str, lab.ScriptedServer] = {}
    mirror = _mirror("repository:mirror/app:pull", lambda: holder["b"].url)
    holder["b"] = servers(mirror)
    a = servers(_redirecting(lambda: holder["b"].url))
    res = _probe(f"{a.host}/app:1", insecure_registries=frozenset({a.host}))
    assert res.evidence.cause is Cause.ANONYMOUS_TOKEN_PULL, res.evidence.reason
    assert mirror.asked == [["repository:app:pull", "repository:mirror/app:pull"]]
    # the token went to B only
    assert all("authorization" not in r.headers for r in a.requests)


def test_redirect_token_scope_comes_from_the_challenging_server(
    servers: Callable[..., lab.ScriptedServer], lab_ca: Any, lab_ca_file: Any
) -> None:
    # A (plain HTTP, opted in) redirects to B over https; B's realm is https. Asking B for
    # A's repository's scope only would get a token B refuses (a wrong "private").
    holder: dict[str, lab.ScriptedServer] = {}
    mirror = _mirror("repository:mirror/app:pull", lambda: holder["b"].url)
    holder["b"] = servers(mirror, _tls(lab_ca))
    a = servers(_redirecting(lambda: holder["b"].url))
    res = _probe(
        f"{a.host}/app:1", insecure_registries=frozenset({a.host}), ca_file=str(lab_ca_file)
    )
    assert res.evidence.cause is Cause.ANONYMOUS_TOKEN_PULL, res.evidence.reason
    assert mirror.asked == [["repository:app:pull", "repository:mirror/app:pull"]]


def test_an_https_registry_redirecting_to_http_is_still_refused(
    servers: Callable[..., lab.ScriptedServer], lab_ca: Any, lab_ca_file: Any
) -> None:
    plain = servers(_answer(200, MANIFEST))
    a = servers(_redirecting(lambda: plain.url), _tls(lab_ca))
    res = _probe(f"{a.host}/app:1", ca_file=str(lab_ca_file))
    assert res.evidence.cause is Cause.REDIRECT_REFUSED
    assert plain.requests == []


# -- the proxy path ------------------------------------------------------------------------------


def test_probes_go_through_an_https_proxy(
    tls_registry: lab.Registry, lab_ca_file: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = lab.ConnectProxy()
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    try:
        refs = [tls_registry.ref("app", "1.0"), tls_registry.ref("missing", "1.0")]
        opts = ProbeOptions(ca_file=str(lab_ca_file), **{**FAST, "timeout": 10.0})
        results = asyncio.run(probe([ImageRef.parse(r) for r in refs], opts))
    finally:
        proxy.stop()
    assert [r.evidence.cause for r in results] == [
        Cause.ANONYMOUS_PULL,
        Cause.MANIFEST_NOT_FOUND,
    ], [r.evidence.reason for r in results]
    assert proxy.tunnels and set(proxy.tunnels) == {tls_registry.host}


def test_no_proxy_bypasses_the_proxy(
    tls_registry: lab.Registry, lab_ca_file: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = lab.ConnectProxy()
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    try:
        res = _probe(tls_registry.ref("app", "1.0"), ca_file=str(lab_ca_file))
    finally:
        proxy.stop()
    assert res.evidence.cause is Cause.ANONYMOUS_PULL
    assert proxy.tunnels == []


# -- the pure verdict function -------------------------------------------------------------------


def _resp(status: int, headers: dict[str, str] | None = None, codes: tuple[str, ...] = ()) -> Any:
    hdrs = httpx.Headers(headers or {})
    return RegistryResponse(
        method="HEAD",
        url="https://r.example/v2/a/manifests/1",
        status=status,
        headers=hdrs,
        body=b"",
        truncated=False,
        error_codes=codes,
        challenge=", ".join(hdrs.get_list("www-authenticate")) or None,
        origin="https://r.example",
    )


def _judge(resp: RegistryResponse, **kw: Any) -> Decided | RetryWithGet | NeedToken:
    args: dict[str, Any] = {
        "token_note": None,
        "known": None,
        "asked_scopes": (),
        "refreshed": False,
    }
    return judge_manifest(resp, "HEAD", **{**args, **kw})


def test_verdict_function() -> None:
    chal = {"WWW-Authenticate": 'Bearer realm="https://a/t",service="s",scope="repository:a:pull"'}
    need = _judge(_resp(401, chal))
    assert need == NeedToken(BearerChallenge("https://a/t", "s", ("repository:a:pull",)), False)
    known = BearerChallenge("https://a/t", "s")
    # with the token asked for that scope: denied, no second token
    denied = _judge(
        _resp(401, chal), token_note="", known=known, asked_scopes=("repository:a:pull",)
    )
    assert isinstance(denied, Decided) and denied.cause is Cause.MANIFEST_DENIED
    # a scope the token was not asked for: one fresh token, then a verdict
    wider = {"WWW-Authenticate": 'Bearer realm="https://a/t",service="s",scope="repository:b:pull"'}
    again = _judge(
        _resp(401, wider), token_note="", known=known, asked_scopes=("repository:a:pull",)
    )
    assert isinstance(again, NeedToken) and again.refresh
    once = _judge(
        _resp(401, wider),
        token_note="",
        known=known,
        asked_scopes=("repository:a:pull",),
        refreshed=True,
    )
    assert isinstance(once, Decided) and once.cause is Cause.MANIFEST_DENIED
    assert _judge(_resp(405)) == RetryWithGet()
    ok = _judge(_resp(200, MANIFEST), token_note=" (cached)")
    assert ok == Decided(
        Cause.ANONYMOUS_TOKEN_PULL, "manifest HEAD 200 with anonymous token (cached)"
    )


def _scoped_service(extra_scope: str, public: bool) -> Any:
    """A registry (ECR Public-like) whose challenge names a scope not about a repository:
    its tokens are good only when asked with that scope too."""
    asked: list[list[str]] = []

    def respond(req: ScriptedRequest, sock: socket.socket) -> None:
        url = urllib.parse.urlsplit(req.path)
        host = req.headers["host"]
        chal = f'Bearer realm="http://{host}/token",service="svc",scope="{extra_scope}"'
        if url.path == "/token":
            scopes = urllib.parse.parse_qs(url.query).get("scope", [])
            asked.append(scopes)
            token = "good" if extra_scope in scopes else "bad"
            sock.sendall(http_response(200, {}, json.dumps({"token": token}).encode()))
        elif public and req.headers.get("authorization") == "Bearer good":
            sock.sendall(http_response(200, MANIFEST))
        else:
            sock.sendall(http_response(401, {"WWW-Authenticate": chal}))

    respond.asked = asked  # type: ignore[attr-defined]
    return respond


@pytest.mark.parametrize("public", [True, False])
def test_a_registry_wide_challenge_scope_is_asked_by_every_repository(
    servers: Callable[..., lab.ScriptedServer], public: bool
) -> None:
    # The first wave learns the challenge; the later probes fetch their tokens ahead with the
    # cached challenge, which keeps "aws" (not a repository's scope): one token per
    # repository, no second one.
    service = _scoped_service("aws", public)
    srv = servers(service)
    refs = [ImageRef.parse(f"{srv.host}/team/app{i}:1") for i in range(6)]
    opts = ProbeOptions(
        insecure_registries=frozenset({srv.host}), per_registry=2, **{**FAST, "timeout": 10.0}
    )
    results = asyncio.run(probe(refs, opts))
    want = Cause.ANONYMOUS_TOKEN_PULL if public else Cause.MANIFEST_DENIED
    assert [r.evidence.cause for r in results] == [want] * 6, [r.evidence.reason for r in results]
    assert len(service.asked) == 6
    assert all("aws" in scopes for scopes in service.asked)
    assert sorted(s for scopes in service.asked for s in scopes if s != "aws") == [
        f"repository:team/app{i}:pull" for i in range(6)
    ]


@pytest.mark.parametrize("field", ["concurrency", "per_registry"])
def test_limits_below_one_are_refused_by_the_prober_and_the_pull_check(field: str) -> None:
    from kotsrewrite import InputError, ProbeOptions, Prober
    from kotsrewrite._registry._pull import PullChecker

    bad = ProbeOptions(**{field: 0})
    for build in (Prober, PullChecker):
        with pytest.raises(InputError, match="must be at least 1"):
            build(bad)
    assert ProbeOptions().checked() == ProbeOptions()
