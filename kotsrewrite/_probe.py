"""Anonymous registry probing: can a cluster pull this image without credentials?

For each distinct ``(registry, repository, reference)`` the prober sends
``HEAD <scheme>://<api-host>/v2/<repository>/manifests/<digest|tag|latest>`` with the four
manifest media types in ``Accept`` (GET only when HEAD answers 405). A ``401`` with a Bearer
challenge leads to an anonymous ``GET realm?service=..&scope=repository:<repo>:pull`` and one
retry with ``Authorization: Bearer``. Challenges are cached per registry (the next repository on
the same registry costs two round trips, token and manifest, not three) and tokens per
``(realm, service, scope)``; concurrent identical work is coalesced (one in-flight future).

Verdicts (SPEC 5) and the decisions taken where the spec leaves room:

* ``public``: the manifest answered 2xx anonymously (with no token, or with an anonymous
  token). Nothing else proves public (a 2xx ``text/html`` page, e.g. a captive portal, is
  ``unreachable``).
* ``private``: 401/403 on the manifest after anonymous auth; token endpoint 401/403; a Basic
  (or any non-Bearer) challenge; ``DENIED``/``UNAUTHORIZED`` error codes in a body;
  **a 401 whose challenge cannot be parsed or has no realm** (the registry demands credentials
  and offers no anonymous path; docker would fail the same way).
* ``not_found``: 404 on the manifest (some registries hide private repositories behind 404).
* ``rate_limited``: 429 after bounded retries that honour ``Retry-After`` (seconds or HTTP
  date) or ``RateLimit-Reset``; a wait longer than ``max_retry_after`` (or than the time left)
  is not waited for: the verdict is given at once.
* ``unreachable``: DNS, connect, TLS, timeouts, 5xx after bounded retries with backoff, and
  also: **a token realm we refuse** (reason ``token realm refused: ...``: plain http realm for
  an https registry, link-local/metadata address, credentials in the URL), **a token endpoint
  that answers 2xx without a usable token** (non-JSON, no token, larger than the body cap),
  any other unexpected status (400, 3xx without Location, token endpoint 404), redirect
  loops or downgrades to http. These prove nothing either way; ``--on-unknown`` decides.

Safety: no credential is ever sent. The client is built with ``trust_env=True`` (proxy
variables honoured) but httpx 0.28 reads no ``.netrc`` unless asked (we never ask), no auth is
configured, URLs with user info are refused, and docker's config.json is never read. Bodies
are read through a stream and capped (64 KiB); redirects are followed by hand (at most 5, never
https to http, never to a refused address). A token is only ever sent to the origin whose
challenge asked for it: a registry that redirects to another host that challenges too
(``registry.k8s.io`` -> Artifact Registry) gets a token for that host, as docker does.

Insecure registries: ``--insecure-registry HOST[:PORT]`` means plain HTTP for that host,
directly (docker would first try https without verification; we do not, so a loopback test
registry costs no failed TLS handshake). Loopback registries are not insecure by default.

Unreachable registries: when a probe of a registry that has not answered once in this run
fails at the transport level (or times out), the later probes of that registry get
``unreachable`` at once, citing it, instead of each waiting for its own timeout.

Performance (for many images): per-registry semaphore first, then the global one (a busy
registry never holds global slots, so registries do not block each other); one connection pool
per origin (httpcore's pool scans all its connections per request), on asyncio's own streams
rather than anyio's, called directly with httpcore requests (no httpx Request/Response per
request; httpcore's errors mapped to httpx's as its transport does); uvloop under
``probe_sync`` when installed; response bodies always drained so connections are reused;
HTTP/2 when the server offers it over TLS; the first wave of
a registry does not wait for one probe to learn its challenge (at most ``per_registry - 1``
extra anonymous HEADs, but one round trip less). Cost per repository once a registry's
challenge is known: 1 round trip (anonymous or Basic registry, or a refusing token
endpoint), 2 (token + manifest) for token registries.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import functools
import http.cookiejar
import ipaddress
import itertools
import json
import logging
import random
import re
import socket
import ssl
import time
import urllib.request
from asyncio import staggered
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from datetime import UTC, datetime
from typing import Any

import attrs
import hpack
import httpcore
import httpx

from ._auth import (
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
from ._errors import InputError, PolicyError
from ._model import Evidence, OnUnknown, ProbeCause, ProbeResult, ProbeStep, Verdict
from ._reference import ImageRef

__all__ = [
    "MANIFEST_ACCEPT",
    "ProbeOptions",
    "Prober",
    "apply_on_unknown",
    "build_client",
    "probe",
    "probe_sync",
]

#: Media types sent in ``Accept`` on every manifest request.
MANIFEST_ACCEPT = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_ACCEPT = ", ".join(MANIFEST_ACCEPT)
_USER_AGENT = "kotsrewrite/0.1 (anonymous probe)"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_CHALLENGE_EVIDENCE = 1000
#: Each completed request as a debug record (method, URL, status, elapsed; never a token).
_log = logging.getLogger("kotsrewrite.probe")
_CLIENT_HEADERS: tuple[tuple[str, str], ...] = (
    # What build_client's AsyncClient sends by default, in its order.
    ("Accept", "*/*"),
    ("Accept-Encoding", "identity"),
    ("Connection", "keep-alive"),
    ("User-Agent", _USER_AGENT),
)


@attrs.frozen
class ProbeOptions:
    """Transport and concurrency options for probing."""

    concurrency: int = 64
    """Probes in flight at once, over all registries (64: eight registries at their
    ``per_registry`` limit; with 32, five registries shared 32 slots and none got its 8)."""
    per_registry: int = 8
    """Probes in flight at once against one registry (its politeness limit)."""
    token_batch: int = 8
    """Repositories asked for in one token request, when probes waiting for a registry slot
    fetch their tokens ahead from a token service on a host of its own (Docker Hub's
    ``auth.docker.io``). A repository the token does not grant ``pull`` on gets a token of
    its own, so this only saves requests; 1 asks one token per repository."""
    timeout: float = 10.0
    """Total time budget of one probe (all its requests, retries and waits), in seconds."""
    insecure_registries: frozenset[str] = frozenset()
    """Registry hosts (``host`` or ``host:port``) reached over plain HTTP."""
    ca_file: str | None = None
    """PEM file of extra CA certificates trusted for registries and token realms."""
    connect_timeout: float = 5.0
    read_timeout: float = 5.0
    """Per-request connect and read timeouts (each also bounded by :attr:`timeout`)."""
    max_attempts: int = 3
    """Attempts per request on transport errors, 5xx and 429."""
    backoff: float = 0.2
    """First retry delay in seconds; doubles per attempt, with jitter."""
    max_retry_after: float = 5.0
    """Longest ``Retry-After`` honoured; a longer one gives ``rate_limited`` at once."""
    max_body: int = 64 * 1024
    """Bytes read at most from any response body."""
    max_redirects: int = 5


# --------------------------------------------------------------------------------------------
# Client


def _ssl_context(options: ProbeOptions) -> ssl.SSLContext | bool:
    if options.ca_file is None:
        return True
    import certifi

    try:
        ctx = ssl.create_default_context(cafile=certifi.where())
        ctx.load_verify_locations(cafile=options.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise InputError(
            f"cannot load CA certificates from {options.ca_file!r}: {exc}",
            file="--ca-file",
            hint="give a readable PEM file of CA certificates",
        ) from None
    return ctx


class _AsyncioStream(httpcore.AsyncNetworkStream):
    """An httpcore network stream on asyncio's own streams (``StreamReader``/``StreamWriter``,
    TLS by ``StreamWriter.start_tls``): the same interface as httpcore's anyio backend with
    less work per read and write (no anyio task-group/cancel-scope layers, and TLS in the
    event loop's ``SSLProtocol``, native code under uvloop). Timeouts and errors map to
    httpcore's exceptions exactly as its anyio backend maps them."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        closing: set[asyncio.Task[None]],
        on_tls: Callable[[str | None], None] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._closing = closing
        self._on_tls = on_tls

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            if timeout is None:
                return await self._reader.read(max_bytes)
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.ReadError(exc) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            if timeout is None:
                await self._writer.drain()
            else:
                async with asyncio.timeout(timeout):
                    await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(exc) from exc
        except (OSError, RuntimeError) as exc:  # RuntimeError: write on a closed transport
            raise httpcore.WriteError(exc) from exc

    async def aclose(self) -> None:
        # Close without waiting here: TLS waits a round trip for the peer's close_notify, and
        # httpcore closes a pool's connections one after another (30 connections at 20 ms
        # RTT made closing the prober take 0.6 s). The backend awaits them all at once.
        if self._writer.is_closing():
            return
        self._writer.close()
        task = asyncio.ensure_future(_finish_close(self._writer))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout(exc) from exc
        except (OSError, ssl.SSLError, EOFError) as exc:
            await self.aclose()
            raise httpcore.ConnectError(exc) from exc
        if self._on_tls is not None:
            tls = self._writer.get_extra_info("ssl_object")
            self._on_tls(tls.selected_alpn_protocol() if tls is not None else None)
        return self

    def get_extra_info(self, info: str) -> Any:
        w = self._writer
        if info == "ssl_object":
            return w.get_extra_info("ssl_object")
        if info == "client_addr":
            return w.get_extra_info("sockname")
        if info == "server_addr":
            return w.get_extra_info("peername")
        if info == "socket":
            return w.get_extra_info("socket")
        if info == "is_readable":
            # The loop reads eagerly: anything the server sent on an idle connection (or its
            # close) is already in the reader's buffer, not in the socket.
            r = self._reader
            return r.at_eof() or bool(getattr(r, "_buffer", b"")) or w.is_closing()
        return None


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _connect_happy_eyeballs(host: str, port: int, local_address: str | None) -> socket.socket:
    """A connected non-blocking socket to ``host``: its addresses tried in turn, families
    interleaved, the next one started 250 ms after the previous (RFC 8305, as anyio's
    ``connect_tcp`` does; uvloop's ``create_connection`` has no ``happy_eyeballs_delay``)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"no address found for {host}")
    first = [i for i in infos if i[0] == infos[0][0]]
    other = [i for i in infos if i[0] != infos[0][0]]
    order = [i for pair in itertools.zip_longest(first, other) for i in pair if i is not None]

    async def attempt(info: Any) -> socket.socket:
        family, type_, proto, _name, addr = info
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            if local_address:
                sock.bind((local_address, 0))
            await loop.sock_connect(sock, addr)
        except BaseException:
            sock.close()
            raise
        return sock

    winner, _index, errors = await staggered.staggered_race(
        [functools.partial(attempt, info) for info in order], 0.25
    )
    if winner is None:
        failed = [e for e in errors if e is not None]
        if len(failed) == 1:
            raise failed[0]
        raise OSError(f"all connection attempts to {host}:{port} failed: {failed}")
    assert isinstance(winner, socket.socket)
    return winner


async def _finish_close(writer: asyncio.StreamWriter) -> None:
    try:
        # TLS: close_notify is answered within a round trip; a silent peer is cut.
        async with asyncio.timeout(1.0):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except (OSError, ssl.SSLError):
        pass


class _AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on asyncio streams (see :class:`_AsyncioStream`)."""

    def __init__(self) -> None:
        self.closing: set[asyncio.Task[None]] = set()
        """Streams being closed (each ends within a second: see :func:`_finish_close`)."""
        self.protocols: dict[tuple[str, int], str] = {}
        """``(host, port)`` -> the protocol its TLS handshake chose (``h2``, ``http/1.1``)."""

    def _tls_done(self, host: str, port: int, protocol: str | None) -> None:
        self.protocols[(host, port)] = protocol or "http/1.1"

    async def wait_closed(self) -> None:
        """Wait until every stream this backend opened and closed has finished closing."""
        while self.closing:
            await asyncio.gather(*list(self.closing), return_exceptions=True)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                if _is_ip_literal(host):
                    reader, writer = await asyncio.open_connection(
                        host, port, local_addr=(local_address, 0) if local_address else None
                    )
                else:
                    sock = await _connect_happy_eyeballs(host, port, local_address)
                    reader, writer = await asyncio.open_connection(sock=sock)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.ConnectError(exc) from exc
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return _AsyncioStream(
            reader, writer, self.closing, functools.partial(self._tls_done, host, port)
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used by the prober")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Slots:
    """A semaphore whose urgent waiters go first.

    Token fetches share a token service's slots: those of probes holding a registry slot
    (the first wave, which learns the challenge) are urgent; those made ahead, while waiting
    for a registry slot, are not. With one FIFO queue the first wave's fetches queued behind
    a hundred fetches ahead while holding every registry slot: the registry idled.
    """

    def __init__(self, n: int) -> None:
        self._free = n
        self._urgent: collections.deque[asyncio.Future[None]] = collections.deque()
        self._normal: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, urgent: bool = False) -> None:
        """Take a slot, waiting (behind earlier waiters of the same kind) if none is free."""
        if self._free > 0 and not self._urgent and not self._normal:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._normal
        queue.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed a slot just as the waiter was cancelled
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(fut)
            raise

    def release(self) -> None:
        """Hand the slot to the first waiter (urgent ones first), else free it."""
        for queue in (self._urgent, self._normal):
            while queue:
                fut = queue.popleft()
                if not fut.done():
                    fut.set_result(None)
                    return
        self._free += 1


@attrs.define(eq=False)
class _Batcher:
    """Token fetches made ahead of a registry slot for one ``realm`` and ``service``, sent
    several repositories to a request (:meth:`Prober._batch_loop`)."""

    realm: str
    service: str | None
    allow_http: bool
    slots: _Slots
    pending: collections.OrderedDict[str, asyncio.Future[_Token | _TokenFailure]] = attrs.Factory(
        collections.OrderedDict
    )
    alone: set[str] = attrs.Factory(set)
    """Repositories a batch did not grant: fetched one each, as without batching."""
    prior: dict[str, tuple[ProbeStep, ...]] = attrs.Factory(dict)
    """The steps of the batch that did not grant a repository (kept as its evidence)."""
    grants: bool | None = None
    """Whether batches help with this service (None: not known yet). Learnt from the first
    wave's own token (fetched alone, inside a registry slot): ``False`` when it is opaque
    (not a JWT naming what it grants), ``True`` when it grants its repository; else from
    the first batch, sent alone: ``False`` if it granted nothing (a service that refuses
    anonymous tokens or grants nothing here), and the rest go one each."""
    singles: set[asyncio.Future[_Token | _TokenFailure]] = attrs.Factory(set)
    """Fetches of one repository in flight while :attr:`grants` is unknown."""
    first: asyncio.Event | None = None
    loop: asyncio.Future[None] | None = None


class _H1AwareConnection(httpcore.AsyncConnectionInterface):
    """An httpcore connection that, while being made to an origin known to speak HTTP/1.1,
    is not offered to other requests.

    httpcore's pool, allowed HTTP/2, offers a connection still being made to every queued
    request of its origin, expecting to multiplex them. When the handshake shows HTTP/1.1
    the first request keeps it and the others go back to the queue, where the next
    connection being made is offered to all of them again: one handshake at a time. At a
    token server speaking HTTP/1.1 (80 ms RTT, 8 requests at once) the last token came
    0.46 s after the first; with this, 0.15 s. With the protocol known
    (:attr:`_AsyncioBackend.protocols`, set by the first handshake), each waiting request
    makes its own connection, in parallel.
    """

    def __init__(
        self,
        conn: httpcore.AsyncConnectionInterface,
        protocols: dict[tuple[str, int], str],
        key: tuple[str, int],
    ) -> None:
        self._conn = conn
        self._protocols = protocols
        self._key = key
        self._tuned = False

    def is_available(self) -> bool:
        conn = self._conn
        if conn.info() == "CONNECTING" and self._protocols.get(self._key) == "http/1.1":
            return False
        return conn.is_available()

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        if not self._tuned:
            self._tuned = _plain_header_encoding(self._conn)
        return await self._conn.handle_async_request(request)

    async def aclose(self) -> None:
        await self._conn.aclose()

    def can_handle_request(self, origin: httpcore.Origin) -> bool:
        return self._conn.can_handle_request(origin)

    def has_expired(self) -> bool:
        return self._conn.has_expired()

    def is_idle(self) -> bool:
        return self._conn.is_idle()

    def is_closed(self) -> bool:
        return self._conn.is_closed()

    def info(self) -> str:
        return self._conn.info()

    def __repr__(self) -> str:
        return repr(self._conn)


class _PlainEncoder(hpack.Encoder):
    """HPACK without Huffman coding: header values are sent as they are (a little larger).

    h2 Huffman-codes every value in pure Python, and never indexes ``Authorization``, so
    each request carrying a token (600-1,200 bytes here) coded it again: 7.6 % of the
    prober's CPU in probe_bench. Literal strings are as valid HPACK (RFC 7541, 5.2)."""

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)


def _plain_header_encoding(conn: httpcore.AsyncConnectionInterface) -> bool:
    """Switch ``conn``'s HPACK encoder to :class:`_PlainEncoder` once it is connected over
    HTTP/2; ``True`` once nothing is left to do (done, HTTP/1.1, or an httpcore whose
    internals differ: then the encoder stays as it is)."""
    inner = getattr(conn, "_connection", None)
    if inner is None:
        return conn.info() != "CONNECTING"
    encoder = getattr(getattr(inner, "_h2_state", None), "encoder", None)
    if type(encoder) is hpack.Encoder:
        encoder.__class__ = _PlainEncoder
    return True


class _Pool(httpcore.AsyncConnectionPool):
    """httpcore's pool (of one origin, ``key``) with :class:`_H1AwareConnection`
    connections."""

    def __init__(
        self, protocols: dict[tuple[str, int], str], key: tuple[str, int], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._protocols = protocols
        self._key = key

    def create_connection(self, origin: httpcore.Origin) -> httpcore.AsyncConnectionInterface:
        conn = super().create_connection(origin)
        return _H1AwareConnection(conn, self._protocols, self._key)


class _PerOriginTransport(httpx.AsyncBaseTransport):
    """One connection pool per origin, behind one client.

    httpcore's pool scans every connection it holds (with a readability syscall for each idle
    one) whenever a request is queued or finished: with one shared pool for many registries
    and token servers that costs O(connections) per request and dominated the CPU at a few
    hundred images. Pools per origin keep that scan to the handful of connections of one
    registry. Proxies come from the environment as httpx would take them (``HTTPS_PROXY``,
    ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``).
    """

    def __init__(self, verify: ssl.SSLContext | bool, limits: httpx.Limits) -> None:
        self._verify = verify
        self._limits = limits
        self._pools: dict[tuple[str, str, int | None], httpx.AsyncHTTPTransport] = {}
        self._backend = _AsyncioBackend()

    def _proxy_for(self, url: httpx.URL) -> str | None:
        proxies = urllib.request.getproxies_environment()
        if not proxies:
            return None
        host = url.host if url.port is None else f"{url.host}:{url.port}"
        if urllib.request.proxy_bypass(host):
            return None
        return proxies.get(url.scheme) or proxies.get("all")

    def core_pool(self, url: httpx.URL) -> httpcore.AsyncConnectionPool | None:
        """The asyncio-native httpcore pool of ``url``'s origin (created on first use), or
        ``None`` when that origin goes through a proxy (then use the httpx layer)."""
        pool = self._pools.get((url.scheme, url.host, url.port))
        if pool is None:
            pool = self._pool_for(url)
        core = pool._pool
        if isinstance(core, httpcore.AsyncConnectionPool) and isinstance(
            core._network_backend, _AsyncioBackend
        ):
            return core
        return None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool_for(request.url).handle_async_request(request)

    def _pool_for(self, url: httpx.URL) -> httpx.AsyncHTTPTransport:
        key = (url.scheme, url.host, url.port)
        pool = self._pools.get(key)
        if pool is None:
            proxy = self._proxy_for(url)
            pool = self._pools[key] = httpx.AsyncHTTPTransport(
                verify=self._verify,
                http2=True,
                limits=self._limits,
                trust_env=True,
                proxy=proxy,
            )
            if proxy is None and isinstance(self._verify, ssl.SSLContext):
                # The same pool on asyncio-native streams instead of anyio's (see
                # _AsyncioStream); proxied origins keep httpx's own pool.
                pool._pool = _Pool(
                    self._backend.protocols,
                    _host_port(url),
                    ssl_context=self._verify,
                    max_connections=self._limits.max_connections,
                    max_keepalive_connections=self._limits.max_keepalive_connections,
                    keepalive_expiry=self._limits.keepalive_expiry,
                    http1=True,
                    http2=True,
                    network_backend=self._backend,
                )
        return pool

    async def aclose(self) -> None:
        pools = list(self._pools.values())
        self._pools.clear()
        await asyncio.gather(*(pool.aclose() for pool in pools))
        await self._backend.wait_closed()


def build_client(
    options: ProbeOptions | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` the prober uses: HTTP/2 where offered, one connection pool
    per origin, proxies from the environment, no credentials of any kind (no auth, no netrc),
    no automatic redirects. ``transport`` replaces the network (tests)."""
    opts = options or ProbeOptions()
    limits = httpx.Limits(
        max_connections=None,
        max_keepalive_connections=max(16, opts.per_registry * 2),
        keepalive_expiry=30.0,
    )
    timeout = httpx.Timeout(
        connect=opts.connect_timeout, read=opts.read_timeout, write=opts.read_timeout, pool=None
    )
    verify = _ssl_context(opts)
    if verify is True:
        # One context for every pool (loading the CA bundle costs ~40 ms each time);
        # trust_env: SSL_CERT_FILE / SSL_CERT_DIR are honoured as httpx would.
        verify = httpx.create_ssl_context(trust_env=True)
    # Cookies are never stored (so never replayed): a probe carries nothing but its token.
    no_cookies = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return httpx.AsyncClient(
        cookies=no_cookies,
        http2=True,
        trust_env=True,
        auth=None,
        verify=verify,
        timeout=timeout,
        limits=limits,
        follow_redirects=False,
        headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"},
        transport=transport if transport is not None else _PerOriginTransport(verify, limits),
    )


# --------------------------------------------------------------------------------------------
# Internals


class _Outcome(Exception):
    """A verdict reached inside a probe (internal control flow)."""

    def __init__(self, verdict: Verdict, reason: str, *, transport: bool = False) -> None:
        super().__init__(reason)
        self.verdict = verdict
        self.reason = reason
        self.transport = transport


@attrs.define
class _Resp:
    method: str
    url: str
    status: int
    headers: httpx.Headers
    body: bytes
    truncated: bool
    error_codes: tuple[str, ...]
    challenge: str | None
    origin: str = ""
    """``scheme://host[:port]`` of :attr:`url`."""


_TKey = tuple[str, str | None, str, bool]  # (realm, service, scope, plain-HTTP realm allowed)


@attrs.define
class _Ctx:
    steps: list[ProbeStep]
    deadline: float
    own_tokens: set[_TKey] = attrs.field(factory=set)
    """Token cache keys this probe fetched itself before taking its registry slot."""

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


@attrs.define
class _Token:
    token: str = attrs.field(repr=False)
    expires_at: float
    steps: tuple[ProbeStep, ...]


@attrs.define
class _TokenFailure:
    verdict: Verdict
    reason: str
    steps: tuple[ProbeStep, ...]


_Key = tuple[str, str, str]  # (base URL, repository, reference)


async def _drain(chunks_in: AsyncIterable[bytes], cap: int) -> tuple[list[bytes], bool]:
    """Read a body up to ``cap`` bytes: the chunks, and whether it went over the cap.

    Every response is drained, even for HEAD (no bytes, but the end of the message must be
    read): an undrained response closes its connection, and connection reuse is most of the
    speed. A body over the cap closes the connection instead."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in chunks_in:
        chunks.append(chunk)
        total += len(chunk)
        if total > cap:
            return chunks, True
    return chunks, False


def _with_defaults(headers: dict[str, str]) -> list[tuple[str, str]]:
    """The client's default headers, then ours (ours replace a default of the same name):
    the headers httpx's client would send."""
    hdrs = [*_CLIENT_HEADERS]
    for name, value in headers.items():
        low = name.lower()
        for i, (have, _v) in enumerate(hdrs):
            if have.lower() == low:
                hdrs[i] = (have, value)
                break
        else:
            hdrs.append((name, value))
    return hdrs


def _response(
    method: str,
    url: httpx.URL,
    status: int,
    headers: httpx.Headers,
    chunks: list[bytes],
    truncated: bool,
    read_body: bool,
    cap: int,
) -> _Resp:
    """What one exchange answered, with the body kept only where it is evidence."""
    body = b"".join(chunks)[:cap] if read_body or status >= 400 else b""
    codes = () if truncated else _error_codes(body)
    chal = ", ".join(headers.get_list("www-authenticate")) or None
    if chal is not None and len(chal) > _MAX_CHALLENGE_EVIDENCE:
        chal = chal[:_MAX_CHALLENGE_EVIDENCE] + "..."
    return _Resp(
        method=method,
        url=str(url),
        status=status,
        headers=headers,
        body=body,
        truncated=truncated,
        error_codes=codes,
        challenge=chal,
        origin=_origin(url),
    )


def _error_codes(body: bytes) -> tuple[str, ...]:
    if not body:
        return ()
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ()
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return ()
    codes = [
        e["code"] for e in errors[:20] if isinstance(e, dict) and isinstance(e.get("code"), str)
    ]
    return tuple(c[:64] for c in codes)


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if value is not None:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    reset = headers.get("ratelimit-reset")
    if reset is not None:
        try:
            seconds = float(reset.strip())
        except ValueError:
            return None
        if seconds > 1e9:  # an epoch time
            seconds -= time.time()
        return max(0.0, seconds)
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"[:300]


def _is_tls_error(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError):
            return True
        cur = cur.__cause__ or cur.__context__
    text = str(exc)
    return "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text


# OpenSSL's reasons for a TLS handshake answered by something that is not TLS: a plain HTTP
# answer ("HTTP/1.1 400 ...") read as a TLS record (3.0: WRONG_VERSION_NUMBER; later
# versions may say PACKET_LENGTH_TOO_LONG).
_PLAIN_HTTP_TLS_REASONS = frozenset({"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG"})


def _tls_cause(exc: BaseException) -> ProbeCause | None:
    """:attr:`ProbeCause.PLAIN_HTTP` when the TLS handshake got a plain HTTP answer."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError) and cur.reason in _PLAIN_HTTP_TLS_REASONS:
            return ProbeCause.PLAIN_HTTP
        cur = cur.__cause__ or cur.__context__
    return None


def _host_of(url: httpx.URL) -> str:
    return url.host


def _reason_codes(resp: _Resp, challenge_error: str | None = None) -> str:
    bits = list(resp.error_codes)
    if challenge_error and challenge_error not in bits:
        bits.append(challenge_error)
    return f" {'/'.join(bits)}" if bits else ""


# --------------------------------------------------------------------------------------------
# The prober


class Prober:
    """One probing run: one HTTP client, shared caches, concurrency limits.

    Use as an async context manager::

        async with Prober(ProbeOptions(per_registry=8)) as prober:
            results = await prober.probe(images)

    ``client`` lets a caller (a test, a benchmark) supply its own ``httpx.AsyncClient``
    (build it with :func:`build_client` to keep the no-credential guarantees); it is not closed
    by the prober. ``transport`` is passed to :func:`build_client` otherwise.
    """

    def __init__(
        self,
        options: ProbeOptions | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.options = options or ProbeOptions()
        if self.options.concurrency < 1 or self.options.per_registry < 1:
            raise InputError(
                "concurrency limits must be at least 1",
                file="--concurrency",
                hint="give a positive number",
            )
        self._own_client = client is None
        self._own_network = client is None and transport is None
        self._client = (
            client if client is not None else build_client(self.options, transport=transport)
        )
        # Hot path: with the prober's own client, requests go to its transport directly
        # (the client's per-request machinery, i.e. header merging, cookie jar, auth and
        # redirect flows, costs about a quarter of the CPU per request and does nothing here:
        # no cookies, no auth, no automatic redirects). Same headers and timeouts as the
        # client would send.
        self._direct: httpx.AsyncBaseTransport | None = (
            # Only our own transport: an injected one (httpx.MockTransport in tests) may hand
            # back responses already read, which only the client layer knows how to stream.
            self._client._transport if self._own_network else None
        )
        self._timeout_ext = httpx.Timeout(
            connect=self.options.connect_timeout,
            read=self.options.read_timeout,
            write=self.options.read_timeout,
            pool=None,
        ).as_dict()
        self._global = asyncio.Semaphore(self.options.concurrency)
        self._per_registry: dict[str, asyncio.Semaphore] = {}
        self._challenges: dict[str, dict[str, tuple[str, str | None]]] = {}
        """registry base URL -> origin -> (realm, service) of its Bearer challenge."""
        self._answered: set[str] = set()
        """Origins that have answered at least once in this run."""
        self._down: dict[str, tuple[str, tuple[ProbeStep, ...]]] = {}
        self._tokens: dict[_TKey, _Token] = {}
        self._token_tasks: dict[_TKey, asyncio.Future[_Token | _TokenFailure]] = {}
        self._inflight: dict[_Key, asyncio.Future[ProbeResult]] = {}
        self._queued: dict[str, int] = {}
        """registry base URL -> probes started on it so far (the first wave is per_registry)."""
        self._learned: dict[str, asyncio.Event] = {}
        """registry base URL -> set once its challenge is known or a probe of it has ended."""
        self._realm_slots: dict[str, _Slots] = {}
        """token service origin -> token requests in flight ahead of a registry slot."""
        self._batchers: dict[tuple[str, str | None, bool], _Batcher] = {}
        """(realm, service, plain HTTP allowed) -> its batcher (an http realm is allowed only
        for a registry reached over opted-in plain HTTP: batches never mix the two)."""
        self._batch_tasks: set[asyncio.Future[None]] = set()
        self._resolved: dict[str, str | None] = {}
        self._bases: dict[tuple[str, str], str] = {}
        """(scheme, api host) -> base URL (parsed once per registry, not once per image)."""
        self._realm_urls: dict[str, httpx.URL] = {}
        self._base_refused: dict[str, str | None] = {}
        """registry base URL -> why its address is refused (None: it is not)."""
        self.requests = 0
        """HTTP requests sent so far (attempts and redirects included)."""

    async def __aenter__(self) -> Prober:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel probes still in flight and close the HTTP client if the prober made it."""
        futures: list[asyncio.Future[Any]] = [*self._inflight.values()]
        futures += self._token_tasks.values()
        futures += self._batch_tasks
        pending = [f for f in futures if not f.done()]
        for fut in pending:
            fut.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self._own_client:
            await self._client.aclose()

    # -- public ------------------------------------------------------------------------------

    def base_url(self, ref: ImageRef) -> str:
        """``https://host`` or ``http://host`` (for an insecure registry) for ``ref``."""
        host = ref.api_host
        insecure = self.options.insecure_registries
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        plain = host in insecure or hostname in insecure
        scheme = "http" if plain else "https"
        base = self._bases.get((scheme, host))
        if base is None:
            base = self._bases[(scheme, host)] = _origin(httpx.URL(f"{scheme}://{host}"))
        return base

    def key(self, ref: ImageRef) -> _Key:
        """What identifies one probe: (base URL, repository, digest or tag)."""
        return (self.base_url(ref), ref.repository, ref.manifest_reference)

    async def probe(
        self,
        images: Iterable[ImageRef],
        *,
        on_result: Callable[[ProbeResult], None] | None = None,
    ) -> list[ProbeResult]:
        """Probe every image; one result per input, in input order (duplicates share a probe).

        ``on_result`` is called with each input's result as soon as it is known.
        """
        refs = list(images)
        by_key: dict[_Key, list[int]] = {}
        for i, ref in enumerate(refs):
            by_key.setdefault(self.key(ref), []).append(i)
        results: list[ProbeResult | None] = [None] * len(refs)
        futures = {key: self._start(key, refs[idx[0]]) for key, idx in by_key.items()}
        waiters = {asyncio.ensure_future(_wrap(k, f)): k for k, f in futures.items()}
        for done in asyncio.as_completed(list(waiters)):
            key, shared = await done
            for i in by_key[key]:
                res = attrs.evolve(shared, image=refs[i])
                results[i] = res
                if on_result is not None:
                    on_result(res)
        return [r for r in results if r is not None]

    async def probe_one(self, ref: ImageRef) -> ProbeResult:
        """Probe one image (coalesced with any identical probe in flight)."""
        result = await self._start(self.key(ref), ref)
        return attrs.evolve(result, image=ref)

    # -- scheduling --------------------------------------------------------------------------

    def _start(self, key: _Key, ref: ImageRef) -> asyncio.Future[ProbeResult]:
        fut = self._inflight.get(key)
        if fut is None:
            fut = asyncio.ensure_future(self._run(key, ref))
            self._inflight[key] = fut
        return fut

    async def _run(self, key: _Key, ref: ImageRef) -> ProbeResult:
        base = key[0]
        sem = self._per_registry.get(base)
        if sem is None:
            sem = self._per_registry[base] = asyncio.Semaphore(self.options.per_registry)
        learned = self._learned.get(base)
        if learned is None:
            learned = self._learned[base] = asyncio.Event()
        queued = self._queued[base] = self._queued.get(base, 0) + 1
        ctx = _Ctx(steps=[], deadline=0.0)
        try:
            if queued > self.options.per_registry:
                # Not in the first wave: fetch this repository's token while waiting for a
                # registry slot (the token endpoint is another service, with its own limit),
                # so that the slot is held for the manifest round trip only.
                await learned.wait()
                refused = await self._token_ahead(ctx, key)
                if refused is not None:
                    return self._result(ref, ctx, time.monotonic(), *refused)
            # Per-registry first, then global: a busy registry never holds global slots while
            # waiting for its own, so registries do not block each other.
            async with sem, self._global:
                return await self._probe_key(key, ref, ctx)
        finally:
            learned.set()

    async def _token_ahead(self, ctx: _Ctx, key: _Key) -> tuple[Verdict, str] | None:
        """Fetch ``key``'s tokens for the registry's known challenges (not holding a registry
        slot); a verdict if the token endpoint already decided it (a refusal, a failure)."""
        base, repo, _ = key
        if base in self._down:
            return None
        for origin, chal in list(self._challenges.get(base, {}).items()):
            allow_http = origin == base and base.startswith("http://")
            try:
                if self._token_slots(chal[0], base) is None:
                    # The realm is on the registry's own host: its fetch takes a registry
                    # slot, as in the probe itself (the politeness limit is per host).
                    async with self._per_registry[base]:
                        await self._token(ctx, chal, repo, allow_http, base)
                else:
                    await self._token(ctx, chal, repo, allow_http, base, urgent=False)
            except _Outcome as out:
                return out.verdict, out.reason
            ctx.own_tokens.add((chal[0], chal[1], _scope(repo), allow_http))
        return None

    def _token_slots(self, realm: str, base: str) -> _Slots | None:
        """The limit on token requests to ``realm``'s host: ``None`` when that host is the
        registry's own (whose slot the caller holds); else per token service host (Docker
        Hub's auth.docker.io), ``per_registry`` at once like any registry."""
        try:
            realm_origin = _origin(self._realm_url(realm))
        except (httpx.InvalidURL, ValueError):
            return None  # refused by the fetch itself, with the reason in the evidence
        if realm_origin == base:
            return None
        slots = self._realm_slots.get(realm_origin)
        if slots is None:
            slots = self._realm_slots[realm_origin] = _Slots(self.options.per_registry)
        return slots

    def _result(
        self, ref: ImageRef, ctx: _Ctx, started: float, verdict: Verdict, reason: str
    ) -> ProbeResult:
        elapsed = (time.monotonic() - started) * 1000.0
        probed_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        evidence = Evidence(
            reason=reason, steps=tuple(ctx.steps), elapsed_ms=elapsed, probed_at=probed_at
        )
        return ProbeResult(image=ref, verdict=verdict, evidence=evidence)

    async def _probe_key(self, key: _Key, ref: ImageRef, ctx: _Ctx) -> ProbeResult:
        started = time.monotonic()
        ctx.deadline = started + self.options.timeout
        try:
            async with asyncio.timeout(self.options.timeout):
                verdict, reason = await self._decide(ctx, key)
        except _Outcome as out:
            verdict, reason = out.verdict, out.reason
        except TimeoutError:
            verdict = Verdict.UNREACHABLE
            reason = f"probe timed out after {self.options.timeout:g} s"
            self._mark_down_if_first(key[0], reason, ctx)
        except Exception as exc:  # never raise for a registry's behaviour: a verdict
            verdict, reason = Verdict.UNREACHABLE, f"unexpected error: {_describe(exc)}"
        return self._result(ref, ctx, started, verdict, reason)

    def _mark_down_if_first(self, base: str, reason: str, ctx: _Ctx) -> None:
        """A registry that never answered in this run and just failed at the transport level
        (or timed out) is down: its other probes get ``unreachable`` at once, citing this."""
        if base not in self._answered and base not in self._down:
            self._down[base] = (reason, tuple(ctx.steps))

    # -- the decision ------------------------------------------------------------------------

    async def _decide(self, ctx: _Ctx, key: _Key) -> tuple[Verdict, str]:
        base, repo, reference = key
        why = self._base_refused.get(base, "")
        if why == "":
            why = self._base_refused[base] = is_forbidden_address(self._realm_url(base).host)
        if why:
            raise _Outcome(Verdict.UNREACHABLE, f"registry address refused: {why}")
        url = self._manifest_url(base, repo, reference)

        def allow_http(origin: str) -> bool:
            # An http realm only for a registry the user opted into plain HTTP for.
            return origin == base and base.startswith("http://")

        # No waiting for a first probe to learn the registry's challenge: the probes of the
        # first wave (at most per_registry) each pay their own anonymous HEAD, in parallel,
        # which is faster than queueing behind one; later ones use the cached challenge.
        if base in self._down:
            reason, steps = self._down[base]
            ctx.steps.extend(steps)
            raise _Outcome(Verdict.UNREACHABLE, f"registry unreachable (first probe: {reason})")

        # Tokens per origin: the registry's, and that of any host it redirects to that
        # challenges too (registry.k8s.io -> Artifact Registry). Each is sent to its origin only.
        tokens: dict[str, _Token] = {}
        token_note = ""
        for origin, chal in list(self._challenges.get(base, {}).items()):
            tokens[origin], token_note = await self._token(
                ctx, chal, repo, allow_http(origin), base
            )
        refreshed: set[str] = set()
        method = "HEAD"
        while True:
            try:
                resp = await self._exchange(
                    ctx,
                    "manifest",
                    method,
                    url,
                    {"Accept": _ACCEPT},
                    read_body=method == "GET",
                    tokens=tokens,
                )
            except _Outcome as out:
                if out.transport:
                    self._mark_down_if_first(base, out.reason, ctx)
                raise
            origin = resp.origin
            token = tokens.get(origin)
            auth_note = f" with anonymous token{token_note}" if token else " anonymously"
            what = f"manifest {method} {resp.status}"
            if 200 <= resp.status < 300:
                ctype = resp.headers.get("content-type", "").lower()
                if ctype.startswith("text/html"):
                    # A captive portal or a web page, not a registry's manifest.
                    return Verdict.UNREACHABLE, f"{what} with text/html: not a registry answer"
                return Verdict.PUBLIC, f"{what}{auth_note}"
            if resp.status == 405 and method == "HEAD":
                method = "GET"
                continue
            if any(c in ("DENIED", "UNAUTHORIZED") for c in resp.error_codes) and resp.status in (
                400,
                404,
            ):
                return Verdict.PRIVATE, f"{what}{_reason_codes(resp)}{auth_note}"
            if resp.status == 401:
                if resp.challenge is None:
                    return Verdict.PRIVATE, f"{what}{_reason_codes(resp)} with no challenge"
                try:
                    challenges = parse_www_authenticate(resp.headers.get_list("www-authenticate"))
                except ChallengeParseError as exc:
                    return (
                        Verdict.PRIVATE,
                        f"{what} with a malformed challenge ({exc}): no anonymous access offered",
                    )
                bearer = _bearer(challenges)
                found = (bearer.params["realm"], bearer.params.get("service")) if bearer else None
                known = self._challenges.get(base, {})
                if token is None:
                    if found is not None:
                        self._challenges.setdefault(base, {})[origin] = found
                        self._learned[base].set()
                        tokens[origin], token_note = await self._token(
                            ctx, found, repo, allow_http(origin), base
                        )
                        continue
                    if any(c.scheme == "bearer" for c in challenges):
                        return (
                            Verdict.PRIVATE,
                            f"{what} with a malformed challenge (Bearer without a realm):"
                            " no anonymous access offered",
                        )
                    schemes = ", ".join(sorted({c.scheme.capitalize() for c in challenges}))
                    return (
                        Verdict.PRIVATE,
                        f"{what}{_reason_codes(resp)}: {schemes} challenge, registry requires"
                        " credentials",
                    )
                err = bearer.params.get("error") if bearer is not None else None
                if (
                    found is not None
                    and origin not in refreshed
                    and (err == "invalid_token" or found != known.get(origin))
                ):
                    # Expired/revoked token or a moved realm: fetch a fresh one, once.
                    refreshed.add(origin)
                    self._challenges.setdefault(base, {})[origin] = found
                    self._tokens.pop((found[0], found[1], _scope(repo), allow_http(origin)), None)
                    tokens[origin], token_note = await self._token(
                        ctx, found, repo, allow_http(origin), base
                    )
                    continue
                return Verdict.PRIVATE, f"{what}{_reason_codes(resp, err)}{auth_note}"
            if resp.status == 403:
                return Verdict.PRIVATE, f"{what}{_reason_codes(resp)}{auth_note}"
            if resp.status == 404:
                return Verdict.NOT_FOUND, f"{what}{_reason_codes(resp)}{auth_note}"
            return Verdict.UNREACHABLE, f"{what}: unexpected status{_reason_codes(resp)}"

    # -- tokens ------------------------------------------------------------------------------

    async def _token(
        self,
        ctx: _Ctx,
        challenge: tuple[str, str | None],
        repo: str,
        allow_http: bool,
        base: str,
        *,
        urgent: bool = True,
    ) -> tuple[_Token, str]:
        """``repo``'s token for ``challenge`` (cached, shared with a fetch in flight, or
        fetched). ``urgent``: the caller holds a registry slot, so its fetch goes ahead of
        the fetches made while waiting for one (:meth:`_token_ahead`)."""
        realm, service = challenge
        # (allow_http too: a token fetched from an http realm for a registry the user opted
        # into plain HTTP is never handed to an https registry sharing that realm)
        tkey = (realm, service, _scope(repo), allow_http)
        tok = self._tokens.get(tkey)
        if tok is not None and tok.expires_at - 5.0 > time.monotonic():
            return tok, "" if tkey in ctx.own_tokens else " (cached)"
        fut = self._token_tasks.get(tkey)
        shared = fut is not None
        if fut is None:
            slots = self._token_slots(realm, base)
            b = None
            if slots is not None and self.options.token_batch > 1:
                bkey = (realm, service, allow_http)
                b = self._batchers.get(bkey)
                if b is None:
                    b = self._batchers[bkey] = _Batcher(realm, service, allow_http, slots)
            if b is not None and not urgent:
                fut = self._batched(b, repo)
            else:
                fut = asyncio.ensure_future(
                    self._fetch_token(realm, service, repo, allow_http, slots, urgent)
                )
                if b is not None and b.grants is None:
                    b.singles.add(fut)
                    fut.add_done_callback(functools.partial(_learn_batching, b, repo))
            self._token_tasks[tkey] = fut
            fut.add_done_callback(functools.partial(self._token_done, tkey))
        outcome = await asyncio.shield(fut)
        if shared:
            ctx.steps.extend(attrs.evolve(s, step="token (shared)") for s in outcome.steps)
        else:
            ctx.steps.extend(outcome.steps)
        if isinstance(outcome, _TokenFailure):
            raise _Outcome(outcome.verdict, outcome.reason)
        return outcome, ""

    def _token_done(self, tkey: _TKey, fut: asyncio.Future[_Token | _TokenFailure]) -> None:
        """A token fetch ended: cache its token in the same step as the fetch stops being
        in flight, so no probe in between finds neither and asks again."""
        self._token_tasks.pop(tkey, None)
        if not fut.cancelled():
            out = fut.result()
            if isinstance(out, _Token):
                self._tokens[tkey] = out

    def _batched(self, b: _Batcher, repo: str) -> asyncio.Future[_Token | _TokenFailure]:
        """``repo``'s token, fetched with those of other repositories waiting for the same
        token service (see :class:`_Batcher`)."""
        fut: asyncio.Future[_Token | _TokenFailure] = asyncio.get_running_loop().create_future()
        b.pending[repo] = fut
        self._batch_running(b)
        return fut

    def _batch_running(self, b: _Batcher) -> None:
        if b.loop is None and b.pending:
            b.loop = asyncio.ensure_future(self._batch_loop(b))
            self._batch_tasks.add(b.loop)
            b.loop.add_done_callback(self._batch_tasks.discard)

    async def _batch_loop(self, b: _Batcher) -> None:
        """Send ``b``'s waiting fetches as token slots free up: up to ``token_batch``
        repositories a request, or one (a repository a batch did not grant, or a service
        whose first batch granted nothing)."""
        try:
            while b.pending:
                if b.first is not None:
                    await b.first.wait()  # the first batch tells whether batches help here
                    continue
                if b.grants is None and b.singles:
                    # so may the first wave's own tokens, already on their way
                    await asyncio.wait(list(b.singles), return_when=asyncio.FIRST_COMPLETED)
                    continue
                await b.slots.acquire(False)
                if not b.pending:
                    b.slots.release()
                    break
                repo = next(iter(b.pending))
                repos = [repo]
                if repo not in b.alone and b.grants is not False:
                    for other in b.pending:
                        if len(repos) == self.options.token_batch:
                            break
                        if other != repo and other not in b.alone:
                            repos.append(other)
                futs = [b.pending.pop(r) for r in repos]
                if len(repos) > 1 and b.grants is None:
                    b.first = asyncio.Event()
                task = asyncio.ensure_future(self._send_batch(b, repos, futs))
                self._batch_tasks.add(task)
                task.add_done_callback(self._batch_tasks.discard)
        finally:
            b.loop = None

    async def _send_batch(
        self, b: _Batcher, repos: list[str], futs: list[asyncio.Future[_Token | _TokenFailure]]
    ) -> None:
        """One token request for ``repos`` (holding a slot of ``b``); each repository the
        token grants gets it, the others go back to the front of the queue, alone."""
        try:
            asked = repos[0] if len(repos) == 1 else repos
            out = await self._fetch_token(b.realm, b.service, asked, b.allow_http, None, False)
            if len(repos) == 1:
                prior = b.prior.pop(repos[0], ())
                if prior:
                    out.steps = prior + out.steps
                if not futs[0].done():  # (cancelled: the prober is closing)
                    futs[0].set_result(out)
                return
            granted: frozenset[str] = (
                granted_pulls(out.token) if isinstance(out, _Token) else None
            ) or frozenset()
            if b.grants is None:
                b.grants = bool(granted & set(repos))
            for repo, fut in reversed(list(zip(repos, futs, strict=True))):
                if fut.done():
                    continue
                if repo in granted:
                    fut.set_result(out)
                else:
                    b.alone.add(repo)
                    b.prior[repo] = out.steps
                    b.pending[repo] = fut
                    b.pending.move_to_end(repo, last=False)
        except BaseException:
            for fut in futs:
                fut.cancel()
            raise
        finally:
            b.slots.release()
            if len(repos) > 1 and b.first is not None:
                b.first.set()
                b.first = None
            self._batch_running(b)

    async def _fetch_token(
        self,
        realm: str,
        service: str | None,
        repo: str | list[str],
        allow_http: bool,
        slots: _Slots | None,
        urgent: bool,
    ) -> _Token | _TokenFailure:
        if slots is not None:
            await slots.acquire(urgent)
            try:
                return await self._fetch_token(realm, service, repo, allow_http, None, urgent)
            finally:
                slots.release()
        ctx = _Ctx(steps=[], deadline=time.monotonic() + self.options.timeout)
        out: _Token | _TokenFailure
        try:
            async with asyncio.timeout(self.options.timeout):
                out = await self._fetch_token_steps(ctx, realm, service, repo, allow_http)
        except TimeoutError:
            out = _TokenFailure(
                Verdict.UNREACHABLE,
                f"token endpoint: timed out after {self.options.timeout:g} s",
                (),
            )
        except Exception as exc:  # never raise for a registry's behaviour: a verdict
            out = _TokenFailure(Verdict.UNREACHABLE, f"token endpoint: {_describe(exc)}", ())
        out.steps = tuple(ctx.steps)
        return out

    async def _fetch_token_steps(
        self, ctx: _Ctx, realm: str, service: str | None, repo: str | list[str], allow_http: bool
    ) -> _Token | _TokenFailure:
        try:
            check_realm(realm, allow_http=allow_http)
            url = self._realm_url(realm)
            await self._check_resolved(url.host)
        except (RealmRefusedError, httpx.InvalidURL) as exc:
            ctx.steps.append(
                ProbeStep(
                    step="token",
                    method="GET",
                    url=realm[:500],
                    status=None,
                    elapsed_ms=0.0,
                    error=f"refused: {exc}",
                )
            )
            return _TokenFailure(Verdict.UNREACHABLE, f"token realm refused: {exc}", ())
        scope: str | list[str] = (
            _scope(repo) if isinstance(repo, str) else [_scope(r) for r in repo]
        )
        params: dict[str, str | list[str]] = {"scope": scope}
        if service is not None:
            params = {"service": service, **params}
        if url.query or url.fragment:
            url = url.copy_merge_params(params)
        else:  # the same URL, without copy_merge_params' parse-merge-reparse
            url = _with_query(url, str(httpx.QueryParams(params)))
        try:
            step = "token" if isinstance(repo, str) else f"token (batch of {len(repo)})"
            resp = await self._exchange(
                ctx, step, "GET", url, {"Accept": "application/json"}, read_body=True
            )
        except _Outcome as out:
            return _TokenFailure(out.verdict, f"token endpoint: {out.reason}", ())
        what = f"token GET {resp.status}"
        if resp.status in (401, 403):
            return _TokenFailure(
                Verdict.PRIVATE,
                f"{what}{_reason_codes(resp)}: token endpoint refused an anonymous token",
                (),
            )
        if not 200 <= resp.status < 300:
            return _TokenFailure(
                Verdict.UNREACHABLE, f"{what}: unexpected status{_reason_codes(resp)}", ()
            )
        if resp.truncated:
            return _TokenFailure(
                Verdict.UNREACHABLE,
                f"{what}: token response larger than {self.options.max_body} bytes",
                (),
            )
        try:
            parsed = parse_token_response(resp.body)
        except TokenResponseError as exc:
            return _TokenFailure(Verdict.UNREACHABLE, f"{what}: no usable token: {exc}", ())
        return _Token(parsed.token, time.monotonic() + parsed.expires_in, ())

    def _manifest_url(self, base: str, repo: str, reference: str) -> httpx.URL:
        """``httpx.URL(f"{base}/v2/{repo}/manifests/{reference}")`` without parsing it again:
        the base URL's parsed form with this path (when the path holds only characters
        httpx leaves as they are; else parsed as usual)."""
        path = f"/v2/{repo}/manifests/{reference}"
        parsed = getattr(self._realm_url(base), "_uri_reference", None)
        if (
            parsed is not None
            and _PLAIN_PATH.fullmatch(path)
            and "/." not in path
            and not parsed.path
            and parsed.query is None
            and parsed.fragment is None
        ):
            url = httpx.URL.__new__(httpx.URL)
            url._uri_reference = parsed._replace(path=path)
            return url
        return httpx.URL(base + path)

    def _realm_url(self, url: str) -> httpx.URL:
        """``httpx.URL(url)``, parsed once per run (realms and base URLs are few)."""
        parsed = self._realm_urls.get(url)
        if parsed is None:
            if len(self._realm_urls) > 1000:
                self._realm_urls.clear()
            parsed = self._realm_urls[url] = httpx.URL(url)
        return parsed

    async def _check_resolved(self, host: str) -> None:
        """Refuse a realm host whose DNS answer is a link-local or metadata address.

        Only with the prober's own network transport (an injected client or transport decides
        itself where requests go). A failed or slow (> 2 s) lookup is left to the request (or
        to a proxy). The request resolves again, so this narrows, not closes, DNS rebinding."""
        if not self._own_network:
            return
        try:
            ipaddress.ip_address(host.strip("[]"))
            return  # an IP literal was checked by check_realm already
        except ValueError:
            pass
        if host in self._resolved:
            why = self._resolved[host]
        else:
            why = None
            try:
                infos = await asyncio.wait_for(
                    asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM),
                    2.0,
                )
            except (OSError, TimeoutError):
                infos = []
            for info in infos:
                why = is_forbidden_address(str(info[4][0]))
                if why:
                    why = f"{host} resolves to {info[4][0]}: {why}"
                    break
            self._resolved[host] = why
        if why:
            raise RealmRefusedError(why)

    # -- one HTTP exchange with retries and redirects -----------------------------------------

    async def _exchange(
        self,
        ctx: _Ctx,
        step: str,
        method: str,
        url: str | httpx.URL,
        headers: dict[str, str],
        *,
        read_body: bool,
        tokens: Mapping[str, _Token] | None = None,
    ) -> _Resp:
        opts = self.options
        attempt = 0
        while True:
            attempt += 1
            cur_url = url if isinstance(url, httpx.URL) else httpx.URL(url)
            cur_method = method
            cur_headers = dict(headers)
            redirects = 0
            while True:
                t0 = time.monotonic()
                hop_headers = cur_headers
                token = tokens.get(_origin(cur_url)) if tokens else None
                if token is not None:
                    hop_headers = {**cur_headers, "Authorization": f"Bearer {token.token}"}
                try:
                    resp = await self._send(cur_method, cur_url, hop_headers, read_body)
                except asyncio.CancelledError:
                    # The probe's time budget ran out mid-request (slowloris, a stalled
                    # server): keep the request as evidence of where the time went.
                    ctx.steps.append(
                        ProbeStep(
                            step=step,
                            method=cur_method,
                            url=str(cur_url),
                            status=None,
                            elapsed_ms=(time.monotonic() - t0) * 1000.0,
                            error="no complete answer within the probe's time budget",
                            attempt=attempt,
                        )
                    )
                    raise
                except httpx.HTTPError as exc:
                    ms = (time.monotonic() - t0) * 1000.0
                    desc = _describe(exc)
                    cause = _tls_cause(exc)
                    if cause is ProbeCause.PLAIN_HTTP:
                        desc = f"the server answered plain HTTP, not TLS ({desc})"
                    ctx.steps.append(
                        ProbeStep(
                            step=step,
                            method=cur_method,
                            url=str(cur_url),
                            status=None,
                            elapsed_ms=ms,
                            error=desc,
                            attempt=attempt,
                            cause=cause,
                        )
                    )
                    _log.debug("%s %s -> %s (%.0f ms)", cur_method, cur_url, desc, ms)
                    kind = "TLS error" if _is_tls_error(exc) else "transport error"
                    if kind == "TLS error" or attempt >= opts.max_attempts:
                        raise _Outcome(
                            Verdict.UNREACHABLE,
                            f"{step} {cur_method} {kind} after {attempt} attempt"
                            f"{'s' if attempt > 1 else ''}: {desc}",
                            transport=True,
                        ) from None
                    await self._sleep_backoff(ctx, attempt)
                    break  # retry from the original URL
                ms = (time.monotonic() - t0) * 1000.0
                self._answered.add(resp.origin)
                ctx.steps.append(
                    ProbeStep(
                        step=step,
                        method=cur_method,
                        url=str(cur_url),
                        status=resp.status,
                        elapsed_ms=ms,
                        error_codes=resp.error_codes,
                        attempt=attempt,
                        challenge=resp.challenge,
                    )
                )
                _log.debug("%s %s -> %d (%.0f ms)", cur_method, cur_url, resp.status, ms)
                if resp.status in _REDIRECTS:
                    cur_url, cur_method, cur_headers = self._redirect(
                        step, resp, cur_url, cur_method, cur_headers, redirects
                    )
                    try:
                        # A name (or a numeric spelling such as 2852039166) that resolves
                        # to a metadata address is refused as the literal would be.
                        await self._check_resolved(cur_url.host)
                    except RealmRefusedError as exc:
                        raise _Outcome(
                            Verdict.UNREACHABLE, f"{step}: redirect refused: {exc}"
                        ) from None
                    redirects += 1
                    continue
                if resp.status == 429:
                    wait = _retry_after(resp.headers)
                    if attempt >= opts.max_attempts:
                        raise _Outcome(
                            Verdict.RATE_LIMITED,
                            f"{step} {cur_method} 429 after {attempt} attempts",
                        )
                    if wait is not None and (
                        wait > opts.max_retry_after or wait > ctx.remaining() - 0.05
                    ):
                        raise _Outcome(
                            Verdict.RATE_LIMITED,
                            f"{step} {cur_method} 429: Retry-After {wait:.0f} s exceeds the"
                            f" {min(opts.max_retry_after, max(ctx.remaining(), 0)):.1f} s"
                            " allowed",
                        )
                    if wait is None:
                        await self._sleep_backoff(ctx, attempt)
                    else:
                        await asyncio.sleep(wait)
                    break
                if resp.status >= 500:
                    if attempt >= opts.max_attempts:
                        raise _Outcome(
                            Verdict.UNREACHABLE,
                            f"{step} {cur_method} {resp.status}{_reason_codes(resp)} after"
                            f" {attempt} attempts",
                        )
                    await self._sleep_backoff(ctx, attempt)
                    break
                return resp

    def _redirect(
        self,
        step: str,
        resp: _Resp,
        cur_url: httpx.URL,
        method: str,
        headers: dict[str, str],
        redirects: int,
    ) -> tuple[httpx.URL, str, dict[str, str]]:
        if redirects >= self.options.max_redirects:
            raise _Outcome(
                Verdict.UNREACHABLE,
                f"{step}: more than {self.options.max_redirects} redirects",
            )
        location = resp.headers.get("location")
        if not location:
            raise _Outcome(Verdict.UNREACHABLE, f"{step}: {resp.status} without Location")
        try:
            nxt = cur_url.join(location)
        except (httpx.InvalidURL, ValueError) as exc:
            raise _Outcome(Verdict.UNREACHABLE, f"{step}: bad redirect: {exc}") from None
        if nxt.scheme not in ("http", "https"):
            raise _Outcome(Verdict.UNREACHABLE, f"{step}: redirect to {nxt.scheme!r} refused")
        if cur_url.scheme == "https" and nxt.scheme == "http":
            raise _Outcome(
                Verdict.UNREACHABLE, f"{step}: redirect from https to http refused ({nxt})"
            )
        if nxt.userinfo:
            raise _Outcome(Verdict.UNREACHABLE, f"{step}: redirect URL with credentials refused")
        why = is_forbidden_address(nxt.host)
        if why:
            raise _Outcome(Verdict.UNREACHABLE, f"{step}: redirect refused: {why}")
        new_headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        new_method = "GET" if resp.status == 303 and method != "HEAD" else method
        return nxt, new_method, new_headers

    async def _sleep_backoff(self, ctx: _Ctx, attempt: int) -> None:
        delay = self.options.backoff * (2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        if delay >= ctx.remaining():
            delay = max(0.0, ctx.remaining() - 0.01)
        await asyncio.sleep(delay)

    async def _send(
        self, method: str, url: httpx.URL, headers: dict[str, str], read_body: bool
    ) -> _Resp:
        self.requests += 1
        direct = self._direct
        if direct is not None:
            if isinstance(direct, _PerOriginTransport):
                core = direct.core_pool(url)
                if core is not None:
                    return await self._send_core(core, method, url, headers, read_body)
            return await self._send_direct(direct, method, url, headers, read_body)
        cap = self.options.max_body
        async with self._client.stream(method, url, headers=headers) as r:
            chunks, truncated = await _drain(r.aiter_bytes(), cap)
            return _response(
                method, url, r.status_code, r.headers, chunks, truncated, read_body, cap
            )

    async def _send_core(
        self,
        pool: httpcore.AsyncConnectionPool,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        read_body: bool,
    ) -> _Resp:
        """:meth:`_send_direct` one layer lower: the request httpx's transport would hand its
        httpcore pool (``Host`` first, then the client's default headers, then ours), sent to
        that pool directly; httpcore's errors become the httpx errors the transport raises."""
        hdrs = _with_defaults(headers)
        raw = [(b"Host", url.netloc)]
        raw += [(k.encode("ascii"), v.encode("ascii")) for k, v in hdrs]
        request = httpcore.Request(
            method.encode("ascii"),
            httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=raw,
            extensions={"timeout": self._timeout_ext},
        )
        cap = self.options.max_body
        try:
            r = await pool.handle_async_request(request)
            try:
                rh = httpx.Headers(r.headers)
                # Raw bytes unless the server encoded them anyway (then decoded, as the client
                # would).
                stream = r.stream
                assert isinstance(stream, AsyncIterable)
                it: AsyncIterable[bytes] = (
                    httpx.Response(
                        r.status, headers=rh, stream=_CoreByteStream(stream)
                    ).aiter_bytes()
                    if "content-encoding" in rh
                    else stream
                )
                chunks, truncated = await _drain(it, cap)
            finally:
                await r.aclose()
        except _CORE_ERRORS as exc:
            raise _httpx_error(exc) from exc
        return _response(method, url, r.status, rh, chunks, truncated, read_body, cap)

    async def _send_direct(
        self,
        transport: httpx.AsyncBaseTransport,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        read_body: bool,
    ) -> _Resp:
        """:meth:`_send` without the client layer: the request the client would build
        (its default headers, then ours; ``Host`` added by ``httpx.Request``)."""
        hdrs = _with_defaults(headers)
        request = httpx.Request(
            method, url, headers=hdrs, extensions={"timeout": self._timeout_ext}
        )
        r = await transport.handle_async_request(request)
        cap = self.options.max_body
        try:
            # Raw bytes unless the server encoded them anyway (then decoded, as the client
            # would).
            stream = r.stream
            assert isinstance(stream, httpx.AsyncByteStream)
            it = (
                httpx.Response(r.status_code, headers=r.headers, stream=stream).aiter_bytes()
                if "content-encoding" in r.headers
                else stream
            )
            chunks, truncated = await _drain(it, cap)
        finally:
            await r.aclose()
        return _response(method, url, r.status_code, r.headers, chunks, truncated, read_body, cap)


_PLAIN_PATH = re.compile(r"[A-Za-z0-9._~/:+-]*")
"""Path characters httpx neither escapes nor normalises (no ``%``, no dot segments below)."""

_PLAIN_QUERY = re.compile(r"[A-Za-z0-9._~%+=&-]*")


def _with_query(url: httpx.URL, query: str) -> httpx.URL:
    """``httpx.URL(f"{url}?{query}")`` for a URL without query or fragment and an encoded
    query (``QueryParams``' form) that httpx would leave as it is, without parsing it again."""
    parsed = getattr(url, "_uri_reference", None)
    if (
        parsed is not None
        and parsed.query is None
        and parsed.fragment is None
        and _PLAIN_QUERY.fullmatch(query)
    ):
        out = httpx.URL.__new__(httpx.URL)
        out._uri_reference = parsed._replace(query=query)
        return out
    return httpx.URL(f"{url}?{query}")


_CORE_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
    httpcore.ProtocolError,
)


def _httpx_error(exc: Exception) -> httpx.TransportError:
    """The httpx error httpx's transport raises for an httpcore error (same class name,
    same message)."""
    cls = getattr(httpx, type(exc).__name__, None)
    if not (isinstance(cls, type) and issubclass(cls, httpx.TransportError)):
        cls = httpx.TransportError
    return cls(str(exc))


class _CoreByteStream(httpx.AsyncByteStream):
    """An httpcore response stream as httpx's byte stream (to decode a body as httpx does)."""

    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk


def _host_port(url: httpx.URL) -> tuple[str, int]:
    """``url``'s host and port as httpcore connects to them (the host IDNA-encoded)."""
    return url.raw_host.decode("ascii"), url.port or (443 if url.raw_scheme == b"https" else 80)


def _learn_batching(b: _Batcher, repo: str, fut: asyncio.Future[_Token | _TokenFailure]) -> None:
    """What a token fetched alone says of batching at its service (:attr:`_Batcher.grants`)."""
    b.singles.discard(fut)
    if b.grants is not None or fut.cancelled():
        return
    out = fut.result()
    if isinstance(out, _Token):
        granted = granted_pulls(out.token)
        if granted is None:
            b.grants = False
        elif repo in granted:
            b.grants = True


def _origin(url: httpx.URL) -> str:
    port = f":{url.port}" if url.port is not None else ""
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}{port}"


def _scope(repo: str) -> str:
    return f"repository:{repo}:pull"


def _bearer(challenges: Sequence[Challenge]) -> Challenge | None:
    for c in challenges:
        if c.scheme == "bearer" and c.params.get("realm"):
            return c
    return None


async def _wrap(key: _Key, fut: asyncio.Future[ProbeResult]) -> tuple[_Key, ProbeResult]:
    return key, await fut


# --------------------------------------------------------------------------------------------
# Module-level API


async def probe(
    images: Iterable[ImageRef],
    options: ProbeOptions | None = None,
    *,
    on_result: Callable[[ProbeResult], None] | None = None,
    client: httpx.AsyncClient | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[ProbeResult]:
    """Probe each image anonymously; one result per input, in input order.

    Each distinct ``(registry, repository, digest-or-tag)`` is requested once; inputs that
    share it share the result (with their own :attr:`ProbeResult.image`). Never raises for a
    registry's behaviour: every image gets a verdict with evidence.
    """
    async with Prober(options, client=client, transport=transport) as prober:
        return await prober.probe(images, on_result=on_result)


def probe_sync(
    images: Iterable[ImageRef],
    options: ProbeOptions | None = None,
    *,
    on_result: Callable[[ProbeResult], None] | None = None,
) -> list[ProbeResult]:
    """Synchronous wrapper of :func:`probe` for callers without an event loop.

    Called from a thread that already runs an event loop, it runs the probe in a worker thread.
    """
    refs = list(images)

    def run() -> list[ProbeResult]:
        return _run_loop(probe(refs, options, on_result=on_result))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def _run_loop(coro: Coroutine[Any, Any, list[ProbeResult]]) -> list[ProbeResult]:
    """``asyncio.run(coro)``, on uvloop when it is installed (about 10 % less CPU per
    request than asyncio's own loop in benchmarks/probe_bench.py), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def apply_on_unknown(result: ProbeResult, policy: OnUnknown) -> Verdict:
    """The verdict to act on under ``--on-unknown``: ``public``/``private`` as proved, others
    mapped to ``private`` or ``public``; :class:`PolicyError` under ``fail``."""
    if result.verdict.is_known:
        return result.verdict
    if policy is OnUnknown.PRIVATE:
        return Verdict.PRIVATE
    if policy is OnUnknown.PUBLIC:
        return Verdict.PUBLIC
    raise PolicyError(
        f"{result.image}: verdict {result.verdict} ({result.evidence.reason})",
        hint="fix access to the registry, or choose --on-unknown private|public",
    )
