"""The prober's fault matrix: real loopback servers that misbehave, one row per fault.

Each row names the fault, the verdict it must give and the time bound it must respect; every
row also checks that nothing was logged or printed as a traceback. A few rows run again through
the CLI (``python -m kotsrewrite probe``) in a subprocess: exit 0, a verdict, no traceback.
At the end, hypothesis drives arbitrary ``WWW-Authenticate`` values and token bodies through a
whole probe: always a verdict, never an exception.

Servers: :class:`tests.lab.ScriptedServer` (HTTP/1.1, optionally TLS with a trustme
certificate) and a small HTTP/2 server built on the ``h2`` library (TLS, ALPN ``h2``) that can
send ``GOAWAY`` or ``RST_STREAM``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kotsrewrite import ImageRef, ProbeOptions, ProbeResult, Verdict, probe
from kotsrewrite._auth import ChallengeParseError, parse_www_authenticate
from kotsrewrite._probe import Prober, build_client
from kotsrewrite._registry import _tokens as probe_module
from tests import lab
from tests.lab import ScriptedRequest, http_response

pytestmark = pytest.mark.slow

FAST: dict[str, Any] = {
    "backoff": 0.05,
    "timeout": 3.0,
    "connect_timeout": 1.0,
    "read_timeout": 1.0,
}
ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------
# Servers


def _reply(
    sock: socket.socket, status: int, headers: dict[str, str] | None = None, body: bytes = b""
) -> None:
    sock.sendall(http_response(status, headers, body))


def _dribble(sock: socket.socket, data: bytes, every: float = 1.0) -> None:
    """Slowloris: one byte per ``every`` seconds until done or the socket closes."""
    for byte in data:
        sock.sendall(bytes([byte]))
        time.sleep(every)


def _endless_chunked(sock: socket.socket, status: int = 200) -> None:
    sock.sendall(f"HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # until the client hangs up
        sock.sendall(chunk)


def _server_ctx(ca: trustme.CA, *names: str, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(names or ("127.0.0.1", "localhost"))).configure_cert(ctx)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


class H2Server:
    """HTTP/2 over TLS (ALPN h2) on 127.0.0.1. ``mode``:

    * ``goaway-after-first``: answer the first request of each connection with 200, then send
      ``GOAWAY`` and close the connection;
    * ``rst-first``: reset the very first stream of the run (``RST_STREAM``), answer the rest;
    * ``rst-always``: reset every stream.
    """

    def __init__(self, ctx: ssl.SSLContext, mode: str) -> None:
        self.mode = mode
        self.ctx = ctx
        self.requests: list[tuple[int, str]] = []  # (connection number, path)
        self.connections = 0
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self.host = f"127.0.0.1:{self.port}"
        self._open: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._open.append(conn)
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, raw: socket.socket) -> None:
        import h2.config
        import h2.connection
        import h2.errors
        import h2.events

        with self._lock:
            self.connections += 1
            number = self.connections
        try:
            raw.settimeout(10)
            sock = self.ctx.wrap_socket(raw, server_side=True)
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            conn.initiate_connection()
            sock.sendall(conn.data_to_send())
            served = 0
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                close = False
                for ev in conn.receive_data(data):
                    if not isinstance(ev, h2.events.RequestReceived):
                        continue
                    hdrs = {
                        (k.decode() if isinstance(k, bytes) else k): (
                            v.decode() if isinstance(v, bytes) else v
                        )
                        for k, v in ev.headers or []
                    }
                    with self._lock:
                        self.requests.append((number, hdrs.get(":path", "")))
                        first_of_run = len(self.requests) == 1
                    sid = ev.stream_id
                    if self.mode == "rst-always" or (self.mode == "rst-first" and first_of_run):
                        conn.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
                        continue
                    conn.send_headers(
                        sid,
                        [(":status", "200"), ("content-type", "application/json")],
                        end_stream=True,
                    )
                    served += 1
                    if self.mode == "goaway-after-first":
                        conn.close_connection(last_stream_id=sid)
                        close = True
                        break
                sock.sendall(conn.data_to_send())
                if close:
                    time.sleep(0.05)
                    return
        except (OSError, ssl.SSLError):
            return
        except Exception:  # h2 protocol errors from a client hanging up
            return
        finally:
            with contextlib.suppress(OSError):
                raw.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        for c in self._open:
            with contextlib.suppress(OSError):
                c.close()


# --------------------------------------------------------------------------------------------
# The matrix


@attrs.define
class Env:
    """What a row may use: the CA the client trusts, its PEM file, and server starters."""

    ca: trustme.CA
    ca_file: Path
    started: list[Any] = attrs.field(factory=list)

    def http(
        self,
        handler: Callable[[ScriptedRequest, socket.socket, lab.ScriptedServer], None],
        ctx: ssl.SSLContext | None = None,
    ) -> lab.ScriptedServer:
        holder: list[lab.ScriptedServer] = []
        srv = lab.ScriptedServer(lambda req, sock: handler(req, sock, holder[0]), ssl_context=ctx)
        holder.append(srv)
        self.started.append(srv)
        return srv

    def h2(self, mode: str) -> H2Server:
        srv = H2Server(_server_ctx(self.ca, alpn=["h2"]), mode)
        self.started.append(srv)
        return srv


@attrs.define
class Scenario:
    refs: list[str]
    options: dict[str, Any] = attrs.field(factory=dict)
    run: Callable[[ProbeOptions], Coroutine[Any, Any, list[ProbeResult]]] | None = None
    check: Callable[[list[ProbeResult]], None] | None = None


@attrs.define
class Row:
    name: str
    verdict: Verdict
    bound: float
    """Seconds the whole row may take (the probe's time budget plus slack)."""
    reason: str
    """Text the reason of (each) result must contain."""
    setup: Callable[[Env], Scenario]

    @property
    def id(self) -> str:
        return f"{self.name} -> {self.verdict} in <{self.bound:g}s"


def _token_registry(
    token_answer: Callable[[socket.socket], None],
    manifest: Callable[[ScriptedRequest, socket.socket, lab.ScriptedServer], None] | None = None,
) -> Callable[[ScriptedRequest, socket.socket, lab.ScriptedServer], None]:
    """A Bearer registry whose token endpoint is ``/token`` on itself."""

    def handler(req: ScriptedRequest, sock: socket.socket, srv: lab.ScriptedServer) -> None:
        if req.path.startswith("/token"):
            token_answer(sock)
        elif req.headers.get("authorization") and manifest is not None:
            manifest(req, sock, srv)
        elif req.headers.get("authorization") == "Bearer good":
            _reply(sock, 200)
        else:
            chal = f'Bearer realm="{srv.url}/token",service="svc"'
            _reply(sock, 401, {"WWW-Authenticate": chal})

    return handler


def _good_token(expires: int | None = None) -> Callable[[socket.socket], None]:
    body: dict[str, Any] = {"token": "good"}
    if expires is not None:
        body["expires_in"] = expires
    return lambda sock: _reply(
        sock, 200, {"Content-Type": "application/json"}, json.dumps(body).encode()
    )


def _tokens_issued(srv: lab.ScriptedServer) -> int:
    return sum(r.path.startswith("/token") for r in srv.requests)


# -- rows ------------------------------------------------------------------------------------------


def slowloris_headers(env: Env) -> Scenario:
    srv = env.http(lambda req, sock, s: _dribble(sock, http_response(200, {"X-Pad": "y" * 40})))
    return Scenario([f"{srv.host}/app:1"], {"timeout": 2.0, "read_timeout": 1.5})


def slowloris_token_body(env: Env) -> Scenario:
    def token(sock: socket.socket) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n")
        _dribble(sock, json.dumps({"token": "good", "pad": "z" * 150}).encode())

    srv = env.http(_token_registry(token))
    return Scenario([f"{srv.host}/app:1"], {"timeout": 2.0, "read_timeout": 1.5})


def endless_token_body(env: Env) -> Scenario:
    srv = env.http(_token_registry(lambda sock: _endless_chunked(sock)))
    return Scenario([f"{srv.host}/app:1"])


def endless_manifest_get(env: Env) -> Scenario:
    def handler(req: ScriptedRequest, sock: socket.socket, srv: lab.ScriptedServer) -> None:
        if req.method == "HEAD":
            _reply(sock, 405)
        else:
            _endless_chunked(sock)

    srv = env.http(handler)

    def check(results: list[ProbeResult]) -> None:
        assert [s.method for s in results[0].evidence.steps] == ["HEAD", "GET"]

    return Scenario([f"{srv.host}/app:1"], check=check)


def endless_404_get(env: Env) -> Scenario:
    def handler(req: ScriptedRequest, sock: socket.socket, srv: lab.ScriptedServer) -> None:
        if req.method == "HEAD":
            _reply(sock, 405)
        else:
            _endless_chunked(sock, 404)

    srv = env.http(handler)
    return Scenario([f"{srv.host}/app:1"])


def redirect_loop(status: int) -> Callable[[Env], Scenario]:
    def setup(env: Env) -> Scenario:
        peers: list[lab.ScriptedServer] = []

        def bounce(req: ScriptedRequest, sock: socket.socket, srv: lab.ScriptedServer) -> None:
            other = peers[1] if srv is peers[0] else peers[0]
            _reply(sock, status, {"Location": f"{other.url}{req.path}"})

        peers.extend([env.http(bounce), env.http(bounce)])

        def check(results: list[ProbeResult]) -> None:
            # the first request and exactly max_redirects (5) hops, then a verdict
            assert len(peers[0].requests) + len(peers[1].requests) == 6
            assert all(s.status == status for s in results[0].evidence.steps)

        return Scenario([f"{peers[0].host}/app:1"], check=check)

    return setup


def redirect_https_to_http(env: Env) -> Scenario:
    plain = env.http(lambda req, sock, s: _reply(sock, 200))
    tls = env.http(
        lambda req, sock, s: _reply(sock, 302, {"Location": f"{plain.url}{req.path}"}),
        ctx=_server_ctx(env.ca),
    )

    def check(results: list[ProbeResult]) -> None:
        assert plain.requests == []  # never contacted

    return Scenario([f"{tls.host}/app:1"], {"ca_file": str(env.ca_file)}, check=check)


def redirect_other_host(env: Env) -> Scenario:
    """A token registry that sends its (authorized) manifest request to another host, as
    registries do with blob stores: that host must never see the registry's token."""
    other = env.http(lambda req, sock, s: _reply(sock, 200))
    port = other.port

    def manifest(req: ScriptedRequest, sock: socket.socket, srv: lab.ScriptedServer) -> None:
        _reply(sock, 307, {"Location": f"http://localhost:{port}{req.path}"})

    reg = env.http(_token_registry(_good_token(300), manifest))

    def check(results: list[ProbeResult]) -> None:
        assert len(other.requests) == 1
        assert "authorization" not in other.requests[0].headers
        assert [s.status for s in results[0].evidence.steps] == [401, 200, 307, 200]

    return Scenario([f"{reg.host}/app:1"], check=check)


def retry_after_hour_date(env: Env) -> Scenario:
    when = email.utils.formatdate(time.time() + 3600, usegmt=True)
    srv = env.http(lambda req, sock, s: _reply(sock, 429, {"Retry-After": when}))

    def check(results: list[ProbeResult]) -> None:
        assert len(srv.requests) == 1

    return Scenario([f"{srv.host}/app:1"], check=check)


def ratelimit_reset_hour(env: Env) -> Scenario:
    srv = env.http(lambda req, sock, s: _reply(sock, 429, {"RateLimit-Reset": "3600"}))
    return Scenario([f"{srv.host}/app:1"])


def retry_after_beyond_budget(env: Env) -> Scenario:
    """Within the cap (5 s) but beyond the probe's remaining time (2 s): not waited for."""
    srv = env.http(lambda req, sock, s: _reply(sock, 429, {"Retry-After": "4"}))
    return Scenario([f"{srv.host}/app:1"], {"timeout": 2.0})


def token_invalid_json(env: Env) -> Scenario:
    srv = env.http(_token_registry(lambda sock: _reply(sock, 200, {}, b'{"token": "good"')))
    return Scenario([f"{srv.host}/app:1"])


def token_without_expires_in(env: Env) -> Scenario:
    """No expires_in: 60 s. A second probe (same repository, another tag) 0 s later reuses the
    token; a third one, 61 s later by the prober's clock, fetches a new one."""
    srv = env.http(_token_registry(_good_token(None)))
    refs = [f"{srv.host}/app:1", f"{srv.host}/app:2", f"{srv.host}/app:3"]

    async def run(opts: ProbeOptions) -> list[ProbeResult]:
        out: list[ProbeResult] = []
        async with Prober(opts) as prober:
            out.append(await prober.probe_one(ImageRef.parse(refs[0])))
            out.append(await prober.probe_one(ImageRef.parse(refs[1])))
            assert _tokens_issued(srv) == 1
            real = time.monotonic
            shifted = type("T", (), {"monotonic": staticmethod(lambda: real() + 61.0)})
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(probe_module, "time", shifted)
                out.append(await prober.probe_one(ImageRef.parse(refs[2])))
            assert _tokens_issued(srv) == 2
        return out

    def check(results: list[ProbeResult]) -> None:
        assert "(cached)" in results[1].evidence.reason
        assert "(cached)" not in results[2].evidence.reason

    return Scenario(refs, run=run, check=check)


def expired_token_always(env: Env) -> Scenario:
    """Every token is answered 401 invalid_token: one refetch, then a verdict (no loop)."""

    def manifest(req: ScriptedRequest, sock: socket.socket, srv: lab.ScriptedServer) -> None:
        chal = f'Bearer realm="{srv.url}/token",service="svc",error="invalid_token"'
        _reply(sock, 401, {"WWW-Authenticate": chal})

    srv = env.http(_token_registry(_good_token(300), manifest))

    def check(results: list[ProbeResult]) -> None:
        assert _tokens_issued(srv) == 2
        assert [s.step for s in results[0].evidence.steps] == [
            "manifest",
            "token",
            "manifest",
            "token",
            "manifest",
        ]

    return Scenario([f"{srv.host}/app:1"], check=check)


def expired_token_once(env: Env) -> Scenario:
    """The first token is answered 401 invalid_token (expired): one refetch, then public."""
    issued: list[str] = []

    def token(sock: socket.socket) -> None:
        issued.append("stale" if not issued else "good")
        body = json.dumps({"token": issued[-1], "expires_in": 300}).encode()
        _reply(sock, 200, {"Content-Type": "application/json"}, body)

    def manifest(req: ScriptedRequest, sock: socket.socket, srv: lab.ScriptedServer) -> None:
        if req.headers.get("authorization") == "Bearer good":
            _reply(sock, 200)
        else:
            chal = f'Bearer realm="{srv.url}/token",service="svc",error="invalid_token"'
            _reply(sock, 401, {"WWW-Authenticate": chal})

    srv = env.http(_token_registry(token, manifest))

    def check(results: list[ProbeResult]) -> None:
        assert _tokens_issued(srv) == 2
        assert [s.status for s in results[0].evidence.steps] == [401, 200, 401, 200, 200]

    return Scenario([f"{srv.host}/app:1"], check=check)


def h2_goaway(env: Env) -> Scenario:
    srv = env.h2("goaway-after-first")
    refs = [f"{srv.host}/app:{i}" for i in range(3)]

    async def run(opts: ProbeOptions) -> list[ProbeResult]:
        async with Prober(opts) as prober:  # sequential: each lands on a GOAWAY'd connection
            return [await prober.probe_one(ImageRef.parse(r)) for r in refs]

    def check(results: list[ProbeResult]) -> None:
        assert srv.connections >= 3
        assert len(srv.requests) >= 3

    return Scenario(refs, {"ca_file": str(env.ca_file)}, run=run, check=check)


def h2_rst_first(env: Env) -> Scenario:
    srv = env.h2("rst-first")

    def check(results: list[ProbeResult]) -> None:
        steps = results[0].evidence.steps
        assert steps[0].status is None and steps[0].error and steps[-1].status == 200

    return Scenario([f"{srv.host}/app:1"], {"ca_file": str(env.ca_file)}, check=check)


def h2_rst_always(env: Env) -> Scenario:
    srv = env.h2("rst-always")

    def check(results: list[ProbeResult]) -> None:
        assert len(srv.requests) == 3  # max_attempts

    return Scenario([f"{srv.host}/app:1"], {"ca_file": str(env.ca_file)}, check=check)


def tls_wrong_hostname(env: Env) -> Scenario:
    srv = env.http(lambda req, sock, s: _reply(sock, 200), ctx=_server_ctx(env.ca, "wrong.test"))

    def check(results: list[ProbeResult]) -> None:
        assert len(results[0].evidence.steps) == 1  # a TLS failure is not retried
        assert srv.requests == []

    return Scenario([f"{srv.host}/app:1"], {"ca_file": str(env.ca_file)}, check=check)


def tls_untrusted_ca(env: Env) -> Scenario:
    srv = env.http(lambda req, sock, s: _reply(sock, 200), ctx=_server_ctx(trustme.CA()))

    def check(results: list[ProbeResult]) -> None:
        assert len(results[0].evidence.steps) == 1
        assert srv.requests == []

    return Scenario([f"{srv.host}/app:1"], {"ca_file": str(env.ca_file)}, check=check)


U, PUB, PRIV, NF, RL = (
    Verdict.UNREACHABLE,
    Verdict.PUBLIC,
    Verdict.PRIVATE,
    Verdict.NOT_FOUND,
    Verdict.RATE_LIMITED,
)
ROWS = [
    Row("slowloris headers 1 B/s", U, 2.8, "timed out after 2 s", slowloris_headers),
    Row("slowloris token body 1 B/s", U, 2.8, "timed out", slowloris_token_body),
    Row("endless token body", U, 1.5, "larger than 65536 bytes", endless_token_body),
    Row("endless manifest body on GET after 405", PUB, 1.5, "GET 200", endless_manifest_get),
    Row("endless 404 body on GET after 405", NF, 1.5, "GET 404", endless_404_get),
    Row("301 loop", U, 1.0, "more than 5 redirects", redirect_loop(301)),
    Row("302 loop", U, 1.0, "more than 5 redirects", redirect_loop(302)),
    Row("307 loop", U, 1.0, "more than 5 redirects", redirect_loop(307)),
    Row("redirect https to http", U, 1.0, "https to http refused", redirect_https_to_http),
    Row("redirect to another host", PUB, 1.5, "HEAD 200", redirect_other_host),
    Row("Retry-After 1 h (date)", RL, 1.0, "s exceeds the 3.0 s allowed", retry_after_hour_date),
    Row("RateLimit-Reset 1 h", RL, 1.0, "Retry-After 3600 s exceeds", ratelimit_reset_hour),
    Row("Retry-After beyond probe budget", RL, 1.0, "Retry-After 4 s", retry_after_beyond_budget),
    Row("token invalid JSON", U, 1.0, "not JSON", token_invalid_json),
    Row("token without expires_in", PUB, 1.5, "with anonymous token", token_without_expires_in),
    Row("expired token on first use", PUB, 1.0, "with anonymous token", expired_token_once),
    Row("expired token on every retry", PRIV, 1.0, "invalid_token", expired_token_always),
    Row("h2 GOAWAY after first request", PUB, 2.0, "HEAD 200 anonymously", h2_goaway),
    Row("h2 RST_STREAM once", PUB, 1.5, "HEAD 200 anonymously", h2_rst_first),
    Row("h2 RST_STREAM always", U, 1.5, "after 3 attempts", h2_rst_always),
    Row("TLS wrong host name", U, 1.0, "TLS error", tls_wrong_hostname),
    Row("TLS untrusted CA", U, 1.0, "CERTIFICATE_VERIFY_FAILED", tls_untrusted_ca),
]


@pytest.fixture(scope="module")
def matrix_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("matrix-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


@pytest.fixture
def env(matrix_ca: tuple[trustme.CA, Path]) -> Iterator[Env]:
    e = Env(ca=matrix_ca[0], ca_file=matrix_ca[1])
    yield e
    for srv in e.started:
        srv.stop()


def _options(scenario: Scenario) -> ProbeOptions:
    hosts = frozenset(
        r.split("/", 1)[0] for r in scenario.refs if "ca_file" not in scenario.options
    )
    return ProbeOptions(insecure_registries=hosts, **{**FAST, **scenario.options})


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_fault_matrix(
    row: Row, env: Env, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    scenario = row.setup(env)
    opts = _options(scenario)
    caplog.set_level(logging.DEBUG)
    t0 = time.monotonic()
    results: list[ProbeResult]
    if scenario.run is not None:
        results = asyncio.run(scenario.run(opts))
    else:
        results = asyncio.run(probe([ImageRef.parse(r) for r in scenario.refs], opts))
    elapsed = time.monotonic() - t0
    _MATRIX_OUTCOMES[row.id] = (
        f"{row.name:<40} {results[0].verdict!s:<13} {elapsed:5.2f}s  {results[0].evidence.reason}"
    )
    assert len(results) == len(scenario.refs)
    for res in results:
        assert res.verdict is row.verdict, res.evidence.reason
        assert row.reason in res.evidence.reason
        assert res.evidence.steps, "a verdict comes with its evidence"
    assert elapsed < row.bound, f"took {elapsed:.2f} s, bound {row.bound} s"
    if scenario.check is not None:
        scenario.check(results)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err + caplog.text
    assert not any(r.exc_info for r in caplog.records)


_MATRIX_OUTCOMES: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def _print_matrix() -> Iterator[None]:
    """With ``-s`` (or in the report of a run), the matrix as a table."""
    yield
    if _MATRIX_OUTCOMES and sys.__stdout__ is not None:
        sys.__stdout__.write("\nfault matrix outcomes:\n")
        for line in _MATRIX_OUTCOMES.values():
            sys.__stdout__.write(f"  {line}\n")


# --------------------------------------------------------------------------------------------
# Through the CLI, in a subprocess: exit status, verdict, no traceback


CLI_ROWS = ["slowloris headers 1 B/s", "h2 RST_STREAM always", "TLS untrusted CA"]


def test_fault_matrix_through_cli(env: Env) -> None:
    """Three rows in one ``kotsrewrite probe`` run: exit 0, each verdict, a warning for each
    unknown verdict on stderr, no traceback, and the run bounded by the probe budget."""
    rows = [next(r for r in ROWS if r.name == name) for name in CLI_ROWS]
    scenarios = [row.setup(env) for row in rows]
    refs = [s.refs[0] for s in scenarios]
    args = [sys.executable, "-m", "kotsrewrite", "probe", "--format", "json", "--timeout", "2"]
    args += ["--insecure-registry", scenarios[0].refs[0].split("/", 1)[0]]
    args += ["--ca-file", str(env.ca_file)]
    t0 = time.monotonic()
    proc = subprocess.run([*args, *refs], capture_output=True, text=True, timeout=30, cwd=ROOT)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert [i["verdict"] for i in doc["images"]] == [str(r.verdict) for r in rows]
    for ref, row in zip(refs, rows, strict=True):
        assert f"{ref}: {row.verdict}" in proc.stderr
    assert elapsed < 2.0 + 3.0  # the slowest probe's budget, plus interpreter start-up


# --------------------------------------------------------------------------------------------
# Fuzzing a whole probe: any challenge, any token body -> a verdict, never an exception


_header_text = st.one_of(
    st.text(alphabet='Bearer Basic realm=service,scope="\\ \t=/:.-_error', max_size=80),
    st.text(max_size=60).filter(lambda t: "\r" not in t and "\n" not in t),
    st.builds(
        lambda realm, extra: f'Bearer realm="{realm}"{extra}',
        st.sampled_from(
            [
                "https://reg.test/token",
                "http://reg.test/token",
                "https://169.254.169.254/t",
                "https://[fe80::1]/t",
                "ftp://reg.test/t",
                "",
                "https://u:p@reg.test/t",
                "https://reg.test:99999/t",
                "https://[::1",
            ]
        ),
        st.sampled_from(["", ',service="s"', ",scope=x", ', error="invalid_token"', ",,"]),
    ),
)
_token_body = st.one_of(
    st.binary(max_size=120),
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=12),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["token", "access_token", "expires_in", "errors"]),
                inner,
                max_size=4,
            )
        ),
        max_leaves=8,
    ).map(lambda v: json.dumps(v).encode()),
)


_FUZZ_OPTS = ProbeOptions(backoff=0.0, max_retry_after=0.0, timeout=2.0)
_FUZZ_HANDLER: list[Callable[[httpx.Request], httpx.Response]] = [lambda r: httpx.Response(500)]
_FUZZ_CLIENT = build_client(
    _FUZZ_OPTS, transport=httpx.MockTransport(lambda request: _FUZZ_HANDLER[0](request))
)


async def _fuzz_probe() -> list[ProbeResult]:
    # One client for every example (building one loads the CA bundle: ~50 ms each).
    return await probe([ImageRef.parse("reg.test/app:1")], _FUZZ_OPTS, client=_FUZZ_CLIENT)


@given(
    challenge=_header_text,
    token_status=st.sampled_from([200, 200, 200, 401, 403, 404, 500, 302]),
    token_body=_token_body,
    second=st.sampled_from([200, 401, 403, 404, 429, 500]),
)
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_any_challenge_and_token_body_gives_a_verdict(
    challenge: str, token_status: int, token_body: bytes, second: int
) -> None:
    seen: list[str] = []
    raw = challenge.encode("utf-8")  # what a server may send: any bytes but CR/LF

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.startswith("/t") and "manifests" not in request.url.path:
            return httpx.Response(token_status, content=token_body)
        if "authorization" in request.headers:
            return httpx.Response(second, headers=[(b"WWW-Authenticate", raw)])
        return httpx.Response(401, headers=[(b"WWW-Authenticate", raw)])

    _FUZZ_HANDLER[0] = handler
    (res,) = asyncio.run(_fuzz_probe())
    assert isinstance(res.verdict, Verdict)
    assert res.evidence.reason and "unexpected error" not in res.evidence.reason
    assert res.evidence.steps
    # never a request to a refused realm
    assert not any("169.254" in u or "fe80" in u or u.startswith("ftp") for u in seen)
    if res.verdict is Verdict.PUBLIC:
        assert second == 200 and token_status == 200


@given(
    st.lists(
        st.one_of(
            st.text(max_size=80),
            st.text(alphabet='Bearer realm="\\,=\t \r\n\x00abc', max_size=60),
            st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
        ),
        min_size=0,
        max_size=3,
    )
)
@settings(max_examples=300, deadline=None)
def test_header_lists_parse_or_raise_the_parse_error(values: list[str]) -> None:
    """Several header values (as a response may carry), any characters: a challenge list or
    :class:`ChallengeParseError`; parsed values never carry CR, LF or NUL."""
    try:
        challenges = parse_www_authenticate(values)
    except ChallengeParseError as exc:
        assert str(exc)
        return
    assert challenges
    for c in challenges:
        for value in [*c.params.values(), c.token68 or ""]:
            assert not set(value) & {"\r", "\n", "\x00"}
