"""SSRF: a registry cannot make the prober fetch a token (or follow a redirect) from a
link-local, cloud metadata or, unless the registry itself is opted-in plain HTTP, non-https
address. Each refusal is a verdict with its reason, and no connection is ever attempted to
the refused address: every connection and DNS lookup the event loop makes is recorded, and a
real listener stands where an http realm points.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from kotsrewrite import ImageRef, ProbeOptions, ProbeResult, Verdict, probe
from kotsrewrite._auth import RealmRefusedError, check_realm, is_forbidden_address
from tests import lab
from tests.lab import ScriptedRequest, http_response

# Names that our fake DNS answers (everything else goes to the real resolver: loopback and
# numeric forms only, no network).
FAKE_DNS = {
    "link-local.test": "169.254.10.1",
    "v6-link-local.test": "fe80::5",
    "imds.test": "169.254.169.254",
    "alibaba.test": "100.100.100.200",
}


@attrs.define
class NetLog:
    """Every DNS lookup and TCP connection the event loop was asked for."""

    lookups: list[str] = attrs.field(factory=list)
    connects: list[tuple[str, int]] = attrs.field(factory=list)

    def contacted(self) -> set[str]:
        return {host for host, _ in self.connects}


@pytest.fixture
def netlog(monkeypatch: pytest.MonkeyPatch) -> NetLog:
    log = NetLog()
    real_gai = asyncio.BaseEventLoop.getaddrinfo
    real_conn = asyncio.BaseEventLoop.create_connection

    async def getaddrinfo(self: Any, host: Any, port: Any, *a: Any, **kw: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        log.lookups.append(name)
        if name in FAKE_DNS:
            addr = FAKE_DNS[name]
            fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sockaddr: tuple[Any, ...] = (
                (addr, port or 0, 0, 0) if ":" in addr else (addr, port or 0)
            )
            return [(fam, socket.SOCK_STREAM, 6, "", sockaddr)]
        return await real_gai(self, host, port, *a, **kw)

    async def create_connection(
        self: Any, factory: Any, host: Any = None, port: Any = None, *a: Any, **kw: Any
    ) -> Any:
        log.connects.append((str(host), int(port or 0)))
        if str(host) not in ("127.0.0.1", "::1", "localhost"):
            # recorded, and never let through: a test must not reach a real metadata service
            raise OSError(f"test network: connection to {host} blocked")
        return await real_conn(self, factory, host, port, *a, **kw)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(asyncio.BaseEventLoop, "create_connection", create_connection)
    return log


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    path = tmp_path_factory.mktemp("ssrf-ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


@pytest.fixture
def servers() -> Iterator[Callable[..., lab.ScriptedServer]]:
    started: list[lab.ScriptedServer] = []

    def make(
        respond: Callable[[ScriptedRequest, socket.socket], None], ctx: ssl.SSLContext | None = None
    ) -> lab.ScriptedServer:
        srv = lab.ScriptedServer(respond, ssl_context=ctx)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def _tls(authority: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


def _challenge(realm: str) -> Callable[[ScriptedRequest, socket.socket], None]:
    hdr = {"WWW-Authenticate": f'Bearer realm="{realm}",service="svc"'}
    return lambda req, sock: sock.sendall(http_response(401, hdr))


def _run(ref: str, **opts: Any) -> tuple[ProbeResult, float]:
    t0 = time.monotonic()
    options = ProbeOptions(backoff=0.05, timeout=5.0, connect_timeout=2.0, read_timeout=2.0, **opts)
    (res,) = asyncio.run(probe([ImageRef.parse(ref)], options))
    return res, time.monotonic() - t0


REFUSED_REALMS = [
    # (id, realm, words the explanation must contain)
    ("imds-https", "https://169.254.169.254/latest/api/token", "link-local or metadata"),
    ("imds-http", "http://169.254.169.254/latest/meta-data/", "plain http"),
    ("ipv6-link-local", "https://[fe80::1]/token", "link-local or metadata"),
    ("ipv6-link-local-zone", "https://[fe80::1%25eth0]/token", "link-local"),
    ("ipv4-mapped-imds", "https://[::ffff:169.254.169.254]/token", "link-local or metadata"),
    ("aws-imds-ipv6", "https://[fd00:ec2::254]/token", "link-local or metadata"),
    ("gce-metadata", "https://metadata.google.internal/computeMetadata/v1/token", "metadata"),
    ("gce-metadata-fqdn-upper", "https://METADATA.GOOGLE.INTERNAL./token", "metadata"),
    ("alibaba-metadata", "https://100.100.100.200/latest/meta-data", "link-local or metadata"),
    ("decimal-ip-imds", "https://2852039166/latest", "169.254.169.254 is a link-local"),
    ("hex-ip-imds", "https://0xa9fea9fe/latest", "169.254.169.254 is a link-local"),
    ("octal-ip-imds", "https://0251.0376.0251.0376/", "169.254.169.254 is a link-local"),
    ("dns-to-link-local", "https://link-local.test/token", "resolves to 169.254.10.1"),
    ("dns-to-ipv6-link-local", "https://v6-link-local.test/token", "resolves to fe80::5"),
    ("dns-to-alibaba", "https://alibaba.test/token", "resolves to 100.100.100.200"),
    ("credentials-in-url", "https://user:pw@127.0.0.1:1/token", "credentials"),
    ("not-http", "gopher://127.0.0.1:70/_x", "not https"),
]


@pytest.mark.parametrize(
    ("realm", "why"), [r[1:] for r in REFUSED_REALMS], ids=[r[0] for r in REFUSED_REALMS]
)
def test_realm_refused_without_a_connection(
    realm: str, why: str, netlog: NetLog, servers: Any, ca: tuple[trustme.CA, Path]
) -> None:
    reg = servers(_challenge(realm), _tls(ca[0]))
    res, elapsed = _run(f"{reg.host}/app:1", ca_file=str(ca[1]))
    assert res.verdict is Verdict.UNREACHABLE
    assert res.evidence.reason.startswith("token realm refused:"), res.evidence.reason
    assert why in res.evidence.reason
    token_steps = [s for s in res.evidence.steps if s.step == "token"]
    assert token_steps and token_steps[0].status is None
    assert token_steps[0].error is not None and token_steps[0].error.startswith("refused:")
    # the registry was contacted, nothing else
    assert netlog.contacted() == {"127.0.0.1"}
    assert {p for _, p in netlog.connects} == {reg.port}
    assert len(reg.requests) == 1
    assert "metadata.google.internal" not in {n.lower().rstrip(".") for n in netlog.lookups}
    assert elapsed < 2.5  # refused at once (the probe budget is 5 s)


def test_http_realm_from_https_registry_never_reaches_the_listener(
    netlog: NetLog, servers: Any, ca: tuple[trustme.CA, Path]
) -> None:
    listener = servers(lambda req, sock: sock.sendall(http_response(200, {}, b'{"token":"t"}')))
    reg = servers(_challenge(f"http://127.0.0.1:{listener.port}/token"), _tls(ca[0]))
    # even when the user opted the *realm's* host into plain HTTP: only the registry counts
    res, _ = _run(
        f"{reg.host}/app:1", ca_file=str(ca[1]), insecure_registries=frozenset({listener.host})
    )
    assert res.verdict is Verdict.UNREACHABLE
    assert "realm is plain http but the registry was reached over https" in res.evidence.reason
    assert listener.requests == []
    assert listener.port not in {p for _, p in netlog.connects}


def test_http_realm_allowed_for_an_opted_in_http_registry(netlog: NetLog, servers: Any) -> None:
    """The control: same listener, registry opted into plain HTTP: the realm is contacted
    (which also shows the recorder sees the prober's connections)."""
    listener = servers(lambda req, sock: sock.sendall(http_response(200, {}, b'{"token":"t"}')))
    reg = servers(_challenge(f"http://127.0.0.1:{listener.port}/token"))
    res, _ = _run(f"{reg.host}/app:1", insecure_registries=frozenset({reg.host}))
    assert len(listener.requests) == 1
    assert listener.port in {p for _, p in netlog.connects}
    assert res.verdict is Verdict.PRIVATE  # the registry keeps answering 401 to the token


@pytest.mark.parametrize("http_first", [True, False])
def test_a_token_from_an_http_realm_is_never_shared_with_an_https_registry(
    netlog: NetLog, servers: Any, ca: tuple[trustme.CA, Path], http_first: bool
) -> None:
    # Two registries, one opted into plain HTTP and one over https, name the same http realm
    # and probe the same repository in one run: the same (realm, service, scope). The token
    # the first fetches must not serve the other, in either order.
    listener = servers(lambda req, sock: sock.sendall(http_response(200, {}, b'{"token":"t"}')))
    realm = f"http://127.0.0.1:{listener.port}/token"
    plain = servers(_challenge(realm))
    secure = servers(_challenge(realm), _tls(ca[0]))
    refs = [f"{plain.host}/app:1", f"{secure.host}/app:1"]
    options = ProbeOptions(
        backoff=0.05,
        timeout=5.0,
        ca_file=str(ca[1]),
        insecure_registries=frozenset({plain.host}),
    )
    images = [ImageRef.parse(r) for r in (refs if http_first else refs[::-1])]
    by = {str(r.image): r for r in asyncio.run(probe(images, options))}
    over_http, over_https = by[refs[0]], by[refs[1]]
    assert over_http.verdict is Verdict.PRIVATE  # its registry keeps answering 401
    assert over_https.verdict is Verdict.UNREACHABLE
    assert "realm is plain http but the registry was reached over https" in (
        over_https.evidence.reason
    )
    assert len(listener.requests) == 1  # for the plain-HTTP registry only


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://2852039166/latest/meta-data/",
        "http://imds.test/latest/meta-data/",
        "http://[fe80::1]/x",
        "http://metadata.google.internal/computeMetadata/v1/",
    ],
    ids=["literal", "decimal-ip", "dns-name", "ipv6-link-local", "gce-name"],
)
@pytest.mark.parametrize("where", ["manifest", "token"])
def test_redirect_to_metadata_refused_without_a_connection(
    target: str, where: str, netlog: NetLog, servers: Any
) -> None:
    """A registry (or its token endpoint) answering 302 to a metadata address: refused,
    however the address is spelled, and never connected to."""

    def respond(req: ScriptedRequest, sock: socket.socket) -> None:
        if where == "manifest" or req.path.startswith("/token"):
            sock.sendall(http_response(302, {"Location": target}))
        else:
            sock.sendall(http_response(401, {"WWW-Authenticate": f'Bearer realm="{base}/token"'}))

    reg = servers(respond)
    base = reg.url
    res, elapsed = _run(f"{reg.host}/app:1", insecure_registries=frozenset({reg.host}))
    assert res.verdict is Verdict.UNREACHABLE
    assert "redirect refused" in res.evidence.reason, res.evidence.reason
    assert netlog.contacted() == {"127.0.0.1"}
    assert elapsed < 2.5  # refused at once (the probe budget is 5 s)


# -- properties of the realm check -------------------------------------------------------------

_hosts = st.one_of(
    st.sampled_from(
        [
            "169.254.169.254",
            "[fe80::1]",
            "metadata.google.internal",
            "100.100.100.200",
            "[::ffff:169.254.0.1]",
            "reg.example.com",
            "127.0.0.1",
            "[::1]",
            "",
            "a:b@c",
            "[x",
        ]
    ),
    st.ip_addresses().map(lambda a: f"[{a}]" if a.version == 6 else str(a)),
    st.text(alphabet="abc.:-[]%@0123456789", max_size=20),
)


@given(
    scheme=st.sampled_from(["https", "http", "HTTPS", "ftp", ""]),
    host=_hosts,
    port=st.sampled_from(["", ":443", ":0", ":99999", ":x"]),
    path=st.sampled_from(["/token", "", "/?a=b#c"]),
    allow_http=st.booleans(),
)
@settings(max_examples=400, deadline=None)
def test_check_realm_only_refuses_with_a_reason(
    scheme: str, host: str, port: str, path: str, allow_http: bool
) -> None:
    realm = f"{scheme}://{host}{port}{path}"
    try:
        assert check_realm(realm, allow_http=allow_http) == realm
    except RealmRefusedError as exc:
        assert str(exc)
        return
    # accepted: https (or http when allowed), a host, no forbidden address
    assert scheme.lower() == "https" or (allow_http and scheme.lower() == "http")
    bare = host.rsplit("@", 1)[-1]
    assert bare and is_forbidden_address(bare) is None
    if bare.strip("[]").split("%")[0].count(".") == 3 or ":" in bare:
        import ipaddress

        try:
            addr = ipaddress.ip_address(bare.strip("[]").split("%")[0])
        except ValueError:
            return
        assert not addr.is_link_local
