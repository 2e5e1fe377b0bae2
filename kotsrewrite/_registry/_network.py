"""httpcore's network backend on asyncio's own streams.

httpcore's default backend goes through anyio (task groups, cancel scopes per read and write);
this one (~14 % less CPU per request, see :func:`._compat.reader_has_buffered_data`) uses
``asyncio.StreamReader``/``StreamWriter`` directly and TLS by ``StreamWriter.start_tls`` (the
event loop's ``SSLProtocol``). Timeouts and errors map to httpcore's exceptions exactly as its
anyio backend maps them. Only public httpcore interfaces (``AsyncNetworkBackend``,
``AsyncNetworkStream``) are implemented; the one internal it reads is in
:func:`._compat.reader_has_buffered_data`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import ipaddress
import ssl
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

import httpcore

from ._compat import reader_has_buffered_data

__all__ = ["AsyncioBackend", "AsyncioStream", "run_sync"]

_T = TypeVar("_T")


def run_sync(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """``asyncio.run(make())`` on asyncio's own loop; from a thread that already runs an event
    loop, in a worker thread (the synchronous wrappers of the prober and the pull check)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


#: RFC 8305's connection attempt delay, as anyio's ``connect_tcp`` uses.
HAPPY_EYEBALLS_DELAY = 0.25


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection (TCP, then maybe TLS) as httpcore's network stream."""

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
            return r.at_eof() or reader_has_buffered_data(r) or w.is_closing()
        return None


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _finish_close(writer: asyncio.StreamWriter) -> None:
    try:
        # TLS: close_notify is answered within a round trip; a silent peer is cut.
        async with asyncio.timeout(1.0):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except (OSError, ssl.SSLError):
        pass


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on asyncio streams (see :class:`AsyncioStream`).

    It also learns, per ``(host, port)``, which protocol TLS chose (:attr:`protocols`), which
    :class:`._pools.H1AwareConnection` uses to connect in parallel to HTTP/1.1 origins."""

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
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                if _is_ip_literal(host):
                    reader, writer = await asyncio.open_connection(host, port, local_addr=local)
                else:
                    # Addresses tried in turn, families interleaved, the next one started
                    # 250 ms after the previous (RFC 8305, as anyio's connect_tcp does).
                    reader, writer = await asyncio.open_connection(
                        host,
                        port,
                        local_addr=local,
                        happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY,
                        interleave=1,
                    )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.ConnectError(exc) from exc
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(
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
