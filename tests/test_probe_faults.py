"""The prober against misbehaving servers on loopback: each fault gives the right verdict, with
evidence, within its time budget; never a hang or a traceback."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from kotsrewrite import ImageRef, ProbeOptions, ProbeResult, Verdict, probe
from tests import lab
from tests.lab import ScriptedRequest, http_response

FAST = {"backoff": 0.05, "timeout": 3.0, "connect_timeout": 1.0, "read_timeout": 1.0}


def _probe(refs: list[str], **kw: object) -> tuple[list[ProbeResult], float]:
    hosts = frozenset(r.split("/", 1)[0] for r in refs)
    opts = ProbeOptions(insecure_registries=hosts, **{**FAST, **kw})  # type: ignore[arg-type]
    t0 = time.monotonic()
    out = asyncio.run(probe([ImageRef.parse(r) for r in refs], opts))
    return out, time.monotonic() - t0


Handler = Callable[[ScriptedRequest, socket.socket, "lab.ScriptedServer"], None]


@pytest.fixture
def server() -> Iterator[Callable[[Handler], lab.ScriptedServer]]:
    started: list[lab.ScriptedServer] = []

    def make(handler: Handler) -> lab.ScriptedServer:
        holder: list[lab.ScriptedServer] = []
        srv = lab.ScriptedServer(lambda req, sock: handler(req, sock, holder[0]))
        holder.append(srv)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def _reply(
    sock: socket.socket, status: int, headers: dict[str, str] | None = None, body: bytes = b""
) -> None:
    sock.sendall(http_response(status, headers, body))


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _bearer(srv: lab.ScriptedServer, realm: str | None = None) -> dict[str, str]:
    realm = realm or f"{srv.url}/token"
    return {"WWW-Authenticate": f'Bearer realm="{realm}",service="svc"'}


def _token_flow(token_answer: Callable[[socket.socket], None]) -> Handler:
    def handler(req: ScriptedRequest, sock: socket.socket, srv: lab.ScriptedServer) -> None:
        if req.path.startswith("/token"):
            token_answer(sock)
        elif req.headers.get("authorization") == "Bearer good":
            _reply(sock, 200)
        else:
            _reply(sock, 401, _bearer(srv))

    return handler


def _steps(result: ProbeResult) -> list[tuple[str, int | None]]:
    return [(s.step, s.status) for s in result.evidence.steps]


# -- rate limiting ------------------------------------------------------------------------------


def test_429_retry_after_honoured_then_rate_limited(server) -> None:  # type: ignore[no-untyped-def]
    srv = server(lambda req, sock, s: _reply(sock, 429, {"Retry-After": "1"}))
    (res,), elapsed = _probe([f"{srv.host}/app:1"], max_attempts=2)
    assert res.verdict is Verdict.RATE_LIMITED
    assert 0.9 <= elapsed < 2.5
    assert len(srv.requests) == 2
    assert [s.attempt for s in res.evidence.steps] == [1, 2]


def test_429_huge_retry_after_is_not_waited_for(server) -> None:  # type: ignore[no-untyped-def]
    srv = server(lambda req, sock, s: _reply(sock, 429, {"Retry-After": "3600"}))
    (res,), elapsed = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.RATE_LIMITED
    assert "Retry-After 3600" in res.evidence.reason
    assert elapsed < 1.0
    assert len(srv.requests) == 1


def test_429_then_success_is_public(server) -> None:  # type: ignore[no-untyped-def]
    def handler(req: ScriptedRequest, sock: socket.socket, srv: lab.ScriptedServer) -> None:
        if len(srv.requests) == 1:
            _reply(sock, 429, {"RateLimit-Reset": "0"})
        else:
            _reply(sock, 200)

    srv = server(handler)
    (res,), elapsed = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.PUBLIC
    assert _steps(res) == [("manifest", 429), ("manifest", 200)]
    assert elapsed < 1.0


# -- server errors and transport failures --------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_retried_then_unreachable(server, status: int) -> None:  # type: ignore[no-untyped-def]
    srv = server(lambda req, sock, s: _reply(sock, status))
    (res,), elapsed = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.UNREACHABLE
    assert _steps(res) == [("manifest", status)] * 3
    assert f"{status} after 3 attempts" in res.evidence.reason
    assert elapsed < 1.5


def test_503_then_success_is_public(server) -> None:  # type: ignore[no-untyped-def]
    srv = server(lambda req, sock, s: _reply(sock, 503 if len(s.requests) == 1 else 200))
    (res,), _ = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.PUBLIC


def test_connect_refused() -> None:
    port = lab.free_port()
    (res,), elapsed = _probe([f"127.0.0.1:{port}/app:1"])
    assert res.verdict is Verdict.UNREACHABLE
    assert "ConnectError" in res.evidence.reason
    assert len(res.evidence.steps) == 3 and all(s.status is None for s in res.evidence.steps)
    assert elapsed < 1.5


def test_many_images_on_a_dead_registry_end_fast() -> None:
    port = lab.free_port()
    refs = [f"127.0.0.1:{port}/app{i}:1" for i in range(40)]
    results, elapsed = _probe(refs)
    assert {r.verdict for r in results} == {Verdict.UNREACHABLE}
    assert elapsed < 2.0
    assert sum("first probe" in r.evidence.reason for r in results) >= 30


def test_read_timeout(server) -> None:  # type: ignore[no-untyped-def]
    stop = threading.Event()
    srv = server(lambda req, sock, s: stop.wait(10))
    try:
        (res,), elapsed = _probe([f"{srv.host}/app:1"], timeout=1.0, read_timeout=0.4)
    finally:
        stop.set()
    assert res.verdict is Verdict.UNREACHABLE
    assert elapsed < 1.6
    assert "Timeout" in res.evidence.reason or "timed out" in res.evidence.reason


def test_slowloris_bounded_by_total_timeout(server) -> None:  # type: ignore[no-untyped-def]
    stop = threading.Event()

    def handler(req: ScriptedRequest, sock: socket.socket, srv: lab.ScriptedServer) -> None:
        for byte in http_response(200, {"X-Pad": "y" * 100}):
            if stop.wait(0.1):
                return
            sock.sendall(bytes([byte]))

    srv = server(handler)
    try:
        (res,), elapsed = _probe([f"{srv.host}/app:1"], timeout=1.0, read_timeout=0.5)
    finally:
        stop.set()
    assert res.verdict is Verdict.UNREACHABLE
    assert "timed out" in res.evidence.reason
    assert elapsed < 1.5


def test_reset_mid_response(server) -> None:  # type: ignore[no-untyped-def]
    def handler(req: ScriptedRequest, sock: socket.socket, srv: lab.ScriptedServer) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Ty")
        _reset(sock)

    srv = server(handler)
    (res,), elapsed = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.UNREACHABLE
    assert len(res.evidence.steps) == 3 and res.evidence.steps[0].error
    assert elapsed < 1.5


def test_token_body_reset_mid_body(server) -> None:  # type: ignore[no-untyped-def]
    def token(sock: socket.socket) -> None:
        sock.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{"token": "abc')
        _reset(sock)

    srv = server(_token_flow(token))
    (res,), elapsed = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.UNREACHABLE
    assert res.evidence.reason.startswith("token endpoint:")
    assert elapsed < 1.5


# -- challenges and tokens -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "challenge",
    ['Bearer realm="http://unterminated', "Bearer realm=", "=====", 'Bearer a b realm="x"'],
)
def test_malformed_challenge_is_private(server, challenge: str) -> None:  # type: ignore[no-untyped-def]
    srv = server(lambda req, sock, s: _reply(sock, 401, {"WWW-Authenticate": challenge}))
    (res,), _ = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.PRIVATE
    assert "malformed challenge" in res.evidence.reason
    assert res.evidence.steps[0].challenge == challenge


def test_401_without_challenge_is_private(server) -> None:  # type: ignore[no-untyped-def]
    srv = server(lambda req, sock, s: _reply(sock, 401))
    (res,), _ = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.PRIVATE


def test_token_endpoint_not_json(server) -> None:  # type: ignore[no-untyped-def]
    srv = server(_token_flow(lambda sock: _reply(sock, 200, {}, b"<html>hello</html>")))
    (res,), _ = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.UNREACHABLE
    assert "not JSON" in res.evidence.reason
    assert _steps(res) == [("manifest", 401), ("token", 200)]


def test_token_endpoint_huge_body(server) -> None:  # type: ignore[no-untyped-def]
    huge = json.dumps({"token": "x" * (4 << 20)}).encode()
    srv = server(_token_flow(lambda sock: _reply(sock, 200, {}, huge)))
    (res,), elapsed = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.UNREACHABLE
    assert "larger than 65536 bytes" in res.evidence.reason
    assert elapsed < 1.5


def test_token_without_expires_in_and_access_token(server) -> None:  # type: ignore[no-untyped-def]
    srv = server(_token_flow(lambda sock: _reply(sock, 200, {}, b'{"access_token": "good"}')))
    (res,), _ = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.PUBLIC
    assert _steps(res) == [("manifest", 401), ("token", 200), ("manifest", 200)]


@pytest.mark.parametrize(
    "realm",
    [
        "http://169.254.169.254/latest/meta-data",
        "https://169.254.169.254/token",
        "https://metadata.google.internal/token",
        "https://[fe80::1]/token",
        "https://100.100.100.200/token",
        "https://[fd00:ec2::254]/token",
        "https://user:pw@example.invalid/token",
        "file:///etc/passwd",
    ],
)
def test_forbidden_realm_refused(server, realm: str) -> None:  # type: ignore[no-untyped-def]
    srv = server(lambda req, sock, s: _reply(sock, 401, _bearer(s, realm)))
    (res,), elapsed = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.UNREACHABLE
    assert res.evidence.reason.startswith("token realm refused:")
    assert len(srv.requests) == 1
    assert elapsed < 1.0


def test_expired_token_refetched_once(server) -> None:  # type: ignore[no-untyped-def]
    tokens = iter(["stale", "good"])

    def handler(req: ScriptedRequest, sock: socket.socket, srv: lab.ScriptedServer) -> None:
        if req.path.startswith("/token"):
            _reply(sock, 200, {}, json.dumps({"token": next(tokens)}).encode())
        elif req.headers.get("authorization") == "Bearer good":
            _reply(sock, 200)
        elif req.headers.get("authorization"):
            chal = _bearer(srv)["WWW-Authenticate"] + ',error="invalid_token"'
            _reply(sock, 401, {"WWW-Authenticate": chal})
        else:
            _reply(sock, 401, _bearer(srv))

    srv = server(handler)
    (res,), _ = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.PUBLIC
    assert [s for s, _ in _steps(res)] == ["manifest", "token", "manifest", "token", "manifest"]


# -- statuses and redirects ----------------------------------------------------------------------


def test_head_405_falls_back_to_get(server) -> None:  # type: ignore[no-untyped-def]
    srv = server(lambda req, sock, s: _reply(sock, 405 if req.method == "HEAD" else 200))
    (res,), _ = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.PUBLIC
    assert [s.method for s in res.evidence.steps] == ["HEAD", "GET"]


def test_get_403_denied_codes(server) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"errors": [{"code": "DENIED", "message": "no"}]}).encode()

    def handler(req: ScriptedRequest, sock: socket.socket, srv: lab.ScriptedServer) -> None:
        if req.method == "HEAD":
            _reply(sock, 405)
        else:
            _reply(sock, 403, {"Content-Type": "application/json"}, body)

    srv = server(handler)
    (res,), _ = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.PRIVATE
    assert res.evidence.steps[-1].error_codes == ("DENIED",)
    assert "DENIED" in res.evidence.reason


def test_redirect_loop(server) -> None:  # type: ignore[no-untyped-def]
    srv = server(lambda req, sock, s: _reply(sock, 302, {"Location": req.path + "x"}))
    (res,), elapsed = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.UNREACHABLE
    assert "more than 5 redirects" in res.evidence.reason
    assert len(srv.requests) == 6
    assert elapsed < 1.0


def test_redirect_to_metadata_refused(server) -> None:  # type: ignore[no-untyped-def]
    srv = server(lambda req, sock, s: _reply(sock, 307, {"Location": "http://169.254.169.254/x"}))
    (res,), _ = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.UNREACHABLE
    assert "redirect refused" in res.evidence.reason


def test_unexpected_status(server) -> None:  # type: ignore[no-untyped-def]
    srv = server(lambda req, sock, s: _reply(sock, 418))
    (res,), _ = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.UNREACHABLE
    assert "unexpected status" in res.evidence.reason


# -- concurrency ---------------------------------------------------------------------------------


class _InFlight:
    """Requests in flight per server, and the peaks: per server and over all servers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: dict[str, int] = {}
        self.peak: dict[str, int] = {}

    def serve(self, name: str, seconds: float) -> None:
        with self.lock:
            self.now[name] = self.now.get(name, 0) + 1
            total = sum(self.now.values())
            self.peak[name] = max(self.peak.get(name, 0), self.now[name])
            self.peak["total"] = max(self.peak.get("total", 0), total)
        time.sleep(seconds)
        with self.lock:
            self.now[name] -= 1


def test_per_registry_limit_and_no_head_of_line_blocking(server) -> None:  # type: ignore[no-untyped-def]
    gauge = _InFlight()

    def slow(req: ScriptedRequest, sock: socket.socket, srv: lab.ScriptedServer) -> None:
        gauge.serve("slow", 0.1)
        _reply(sock, 200)

    slow_srv = server(slow)
    fast_srv = server(lambda req, sock, s: _reply(sock, 200))
    refs = [f"{slow_srv.host}/app{i}:1" for i in range(24)]
    refs += [f"{fast_srv.host}/app{i}:1" for i in range(8)]
    hosts = frozenset({slow_srv.host, fast_srv.host})
    opts = ProbeOptions(insecure_registries=hosts, per_registry=4, concurrency=6, **FAST)
    fast_done: list[float] = []
    t0 = time.monotonic()

    def on_result(r: ProbeResult) -> None:
        if r.image.domain == fast_srv.host:
            fast_done.append(time.monotonic() - t0)

    results = asyncio.run(probe([ImageRef.parse(r) for r in refs], opts, on_result=on_result))
    elapsed = time.monotonic() - t0
    assert {r.verdict for r in results} == {Verdict.PUBLIC}
    assert gauge.peak["slow"] == 4
    assert max(fast_done) < 0.4  # the fast registry never waits for the slow one
    assert 0.55 < elapsed < 1.5  # 24 / 4 = 6 waves of 0.1 s


def _token_pair(server, same_origin: bool) -> tuple[lab.ScriptedServer, _InFlight]:  # type: ignore[no-untyped-def]
    gauge = _InFlight()
    token_body = json.dumps({"token": "good", "expires_in": 300}).encode()

    def token(req: ScriptedRequest, sock: socket.socket) -> None:
        gauge.serve("token", 0.05)
        _reply(sock, 200, {"Content-Type": "application/json"}, token_body)

    tok = None if same_origin else server(lambda req, sock, s: token(req, sock))

    def registry(req: ScriptedRequest, sock: socket.socket, srv: lab.ScriptedServer) -> None:
        if req.path.startswith("/token"):
            token(req, sock)
            return
        gauge.serve("registry", 0.05)
        if req.headers.get("authorization") == "Bearer good":
            _reply(sock, 200)
        else:
            _reply(sock, 401, _bearer(srv, f"{(tok or srv).url}/token"))

    return server(registry), gauge


def test_tokens_are_fetched_ahead_of_the_registry_slot(server) -> None:  # type: ignore[no-untyped-def]
    # Docker Hub-like: the token service is another origin. Probes past the first wave fetch
    # their token while they wait for a registry slot (within the token service's own limit),
    # so a registry slot is held for the manifest round trip only, and more than per_registry
    # requests are in flight over the two hosts (in-slot token fetches never exceed 2 in all),
    # each host within its own limit. The tokens are opaque ("good"), so none is asked for
    # several repositories at once (a batch would show as a third step).
    reg, gauge = _token_pair(server, same_origin=False)
    results, _ = _probe([f"{reg.host}/app{i}:1" for i in range(16)], per_registry=2)
    assert {r.verdict for r in results} == {Verdict.PUBLIC}
    assert gauge.peak["registry"] == 2 and gauge.peak["token"] == 2
    assert gauge.peak["total"] > 2
    for res in results[2:]:  # past the first wave: token, then manifest, nothing wasted
        assert [(s.step, s.status) for s in res.evidence.steps] == [
            ("token", 200),
            ("manifest", 200),
        ]
        assert res.evidence.reason == "manifest HEAD 200 with anonymous token", res.evidence


def test_a_realm_on_the_registry_host_shares_its_slots(server) -> None:  # type: ignore[no-untyped-def]
    # GHCR-like: token endpoint and registry on one host. Fetching tokens ahead must not raise
    # what that host sees at once above the per-registry limit.
    reg, gauge = _token_pair(server, same_origin=True)
    results, _ = _probe([f"{reg.host}/app{i}:1" for i in range(16)], per_registry=2)
    assert {r.verdict for r in results} == {Verdict.PUBLIC}
    assert gauge.peak["total"] == 2


def test_realm_name_resolving_to_metadata_refused(server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    real = asyncio.BaseEventLoop.getaddrinfo

    async def fake(self, host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == "innocent.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 0))]
        return await real(self, host, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", fake)
    srv = server(lambda req, sock, s: _reply(sock, 401, _bearer(s, "http://innocent.test/t")))
    (res,), _ = _probe([f"{srv.host}/app:1"])
    assert res.verdict is Verdict.UNREACHABLE
    assert "innocent.test resolves to 169.254.169.254" in res.evidence.reason
