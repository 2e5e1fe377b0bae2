"""Connection pools: one per origin, proxies from the environment, and the client built on them.

httpcore's pool scans every connection it holds (with a readability syscall for each idle one)
whenever a request is queued or finished: with one shared pool for many registries and token
servers that costs O(connections) per request and dominated the CPU at a few hundred images.
Pools per origin keep that scan to the handful of connections of one registry.

A direct origin gets an httpcore pool on :class:`._network.AsyncioBackend`; an origin behind a
proxy (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, as httpx reads them) gets
httpx's own ``AsyncHTTPTransport(proxy=...)``. Only public interfaces of httpx and httpcore are
used here.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import ssl
import urllib.request
from collections.abc import AsyncIterable, AsyncIterator

import httpcore
import httpx

from .._errors import InputError
from ._compat import use_plain_hpack
from ._network import AsyncioBackend
from ._options import ProbeOptions

__all__ = [
    "CORE_ERRORS",
    "HTTPX_ERRORS",
    "USER_AGENT",
    "CoreByteStream",
    "H1AwareConnection",
    "OriginPool",
    "PerOriginTransport",
    "build_client",
    "client_limits",
    "client_on",
    "host_port",
    "httpx_error_for",
    "proxy_for",
    "ssl_context",
]

USER_AGENT = "kotsrewrite/0.1 (anonymous probe)"

#: httpcore's exceptions that httpx's transport maps to its own.
CORE_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
    httpcore.ProtocolError,
)

#: httpcore's exception -> httpx's of the same name, as httpx's transport maps them (most
#: specific first; public classes on both sides).
HTTPX_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


def httpx_error_for(exc: Exception) -> httpx.TransportError:
    """The httpx error httpx's transport raises for an httpcore error (same class name, same
    message), for requests sent to httpcore directly."""
    for core, mapped in HTTPX_ERRORS:
        if isinstance(exc, core):
            return mapped(str(exc))
    return httpx.TransportError(str(exc))


def ssl_context(options: ProbeOptions) -> ssl.SSLContext:
    """The TLS context for registries and token realms: the system's (``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR`` honoured as httpx would) plus :attr:`ProbeOptions.ca_file`.

    Raises :class:`InputError` naming the CA file when it cannot be loaded."""
    if options.ca_file is None:
        # One context for every pool (loading the CA bundle costs ~40 ms each time).
        return httpx.create_ssl_context(trust_env=True)
    import certifi

    try:
        ctx = ssl.create_default_context(cafile=certifi.where())
        ctx.load_verify_locations(cafile=options.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise InputError(
            f"cannot load CA certificates: {exc}",
            file=options.ca_file,
            hint="give a readable PEM file of CA certificates",
        ) from None
    return ctx


def host_port(url: httpx.URL) -> tuple[str, int]:
    """``url``'s host and port as httpcore connects to them (the host IDNA-encoded)."""
    return url.raw_host.decode("ascii"), url.port or (443 if url.raw_scheme == b"https" else 80)


def proxy_for(url: httpx.URL) -> str | None:
    """The proxy URL the environment names for ``url`` (``None``: connect directly)."""
    proxies = urllib.request.getproxies_environment()
    if not proxies:
        return None
    host = url.host if url.port is None else f"{url.host}:{url.port}"
    if urllib.request.proxy_bypass(host):
        return None
    return proxies.get(url.scheme) or proxies.get("all")


class H1AwareConnection(httpcore.AsyncConnectionInterface):
    """An httpcore connection that, while being made to an origin known to speak HTTP/1.1,
    is not offered to other requests; once connected over HTTP/2 its headers are coded
    without Huffman coding (:func:`._compat.use_plain_hpack`).

    httpcore's pool, allowed HTTP/2, offers a connection still being made to every queued
    request of its origin, expecting to multiplex them. When the handshake shows HTTP/1.1
    the first request keeps it and the others go back to the queue, where the next
    connection being made is offered to all of them again: one handshake at a time. At a
    token server speaking HTTP/1.1 (80 ms RTT, 8 requests at once) the last token came
    0.46 s after the first; with this, 0.15 s. With the protocol known
    (:attr:`AsyncioBackend.protocols`, set by the first handshake), each waiting request
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
            self._tuned = use_plain_hpack(self._conn)
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


class OriginPool(httpcore.AsyncConnectionPool):
    """httpcore's pool (of one origin, ``key``) with :class:`H1AwareConnection` connections."""

    def __init__(
        self,
        protocols: dict[tuple[str, int], str],
        key: tuple[str, int],
        *,
        ssl_context: ssl.SSLContext,
        limits: httpx.Limits,
        network_backend: AsyncioBackend,
    ) -> None:
        super().__init__(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=True,
            network_backend=network_backend,
        )
        self._protocols = protocols
        self._key = key

    def create_connection(self, origin: httpcore.Origin) -> httpcore.AsyncConnectionInterface:
        conn = super().create_connection(origin)
        return H1AwareConnection(conn, self._protocols, self._key)


class CoreByteStream(httpx.AsyncByteStream):
    """An httpcore response stream as httpx's byte stream: httpcore's errors become httpx's
    (as httpx's transport maps them) and closing closes the httpcore response."""

    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except CORE_ERRORS as exc:
            raise httpx_error_for(exc) from exc

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class PerOriginTransport(httpx.AsyncBaseTransport):
    """One connection pool per origin, behind one client (see the module's docstring)."""

    def __init__(self, verify: ssl.SSLContext, limits: httpx.Limits) -> None:
        self._verify = verify
        self._limits = limits
        self._pools: dict[tuple[str, str, int | None], OriginPool | httpx.AsyncHTTPTransport] = {}
        self._backend = AsyncioBackend()

    def route(self, url: httpx.URL) -> OriginPool | httpx.AsyncHTTPTransport:
        """``url``'s origin's pool (created on first use): an httpcore pool for a direct
        origin, httpx's transport with the proxy for a proxied one."""
        key = (url.scheme, url.host, url.port)
        pool = self._pools.get(key)
        if pool is None:
            proxy = proxy_for(url)
            if proxy is None:
                pool = OriginPool(
                    self._backend.protocols,
                    host_port(url),
                    ssl_context=self._verify,
                    limits=self._limits,
                    network_backend=self._backend,
                )
            else:
                pool = httpx.AsyncHTTPTransport(
                    verify=self._verify,
                    http2=True,
                    limits=self._limits,
                    trust_env=True,
                    proxy=proxy,
                )
            self._pools[key] = pool
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pool = self.route(request.url)
        if isinstance(pool, httpx.AsyncHTTPTransport):
            return await pool.handle_async_request(request)
        url = request.url
        assert isinstance(request.stream, AsyncIterable)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            resp = await pool.handle_async_request(core_request)
        except CORE_ERRORS as exc:
            raise httpx_error_for(exc) from exc
        assert isinstance(resp.stream, AsyncIterable)
        return httpx.Response(
            status_code=resp.status,
            headers=resp.headers,
            stream=CoreByteStream(resp.stream),
            extensions=resp.extensions,
        )

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
    verify = ssl_context(opts)
    if transport is None:
        transport = PerOriginTransport(verify, client_limits(opts))
    return client_on(opts, verify, transport)


def client_on(
    options: ProbeOptions, verify: ssl.SSLContext, transport: httpx.AsyncBaseTransport
) -> httpx.AsyncClient:
    """:func:`build_client` on a transport and TLS context made already."""
    timeout = httpx.Timeout(
        connect=options.connect_timeout,
        read=options.read_timeout,
        write=options.read_timeout,
        pool=None,
    )
    # Cookies are never stored (so never replayed): a probe carries nothing but its token.
    no_cookies = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return httpx.AsyncClient(
        cookies=no_cookies,
        http2=True,
        trust_env=True,
        auth=None,
        verify=verify,
        timeout=timeout,
        limits=client_limits(options),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        transport=transport,
    )


def client_limits(options: ProbeOptions) -> httpx.Limits:
    """Connection limits of every pool: no cap on connections (the schedule caps requests),
    enough kept alive for one registry's slots twice over."""
    return httpx.Limits(
        max_connections=None,
        max_keepalive_connections=max(16, options.per_registry * 2),
        keepalive_expiry=30.0,
    )
