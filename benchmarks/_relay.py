"""A TCP relay on 127.0.0.1 that adds latency to our own loopback traffic only.

Loopback has ~0 RTT, which hides the cost that matters when probing far registries: round
trips. :class:`LatencyRelay` listens on ``127.0.0.1:<free port>`` and forwards every chunk, in
each direction, ``delay_ms`` after it arrived (a one-way delay, so one request/response on an
open connection costs ``2 * delay_ms``). Order is kept per direction, a slow chunk never holds
up another connection, and throughput is not limited by the delay (chunks are pipelined, as on
a long fat link).

TCP's own handshake happens on loopback (the client's ``connect`` returns at once), so by
default the relay charges it to the first chunk sent upstream: nothing reaches the target
before ``3 * delay_ms`` after the connection was accepted, which is when the first request of
a client that sends right after connecting would arrive over a real link (SYN, SYN-ACK, then
data). A new connection thus costs one extra RTT, as it does in the world, and reusing
connections pays off as it should. Pass ``model_handshake=False`` to turn that off.

Use from asyncio::

    async with LatencyRelay("127.0.0.1", registry_port, delay_ms=10) as relay:
        url = f"http://127.0.0.1:{relay.port}/v2/"

or from synchronous code (the relay runs in a background thread with its own event loop)::

    port, stop = start_relay_thread("127.0.0.1", registry_port, delay_ms=10)
    try:
        ...
    finally:
        stats = stop()

Only loopback targets are accepted; the relay never listens on anything but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

import attrs

__all__ = ["LatencyRelay", "RelayStats", "RelayThread", "start_relay_thread"]

T = TypeVar("T")

_LISTEN_HOST = "127.0.0.1"
_CHUNK = 64 * 1024
_QUEUE_CHUNKS = 256
"""Chunks in flight per direction before the reader waits (about 16 MB at most)."""


@attrs.frozen
class RelayStats:
    """Counters of one relay."""

    connections: int
    """Connections accepted since start."""
    active: int
    """Connections open now."""
    bytes_to_target: int
    bytes_to_client: int
    failed_connects: int
    """Accepted connections whose upstream connect failed."""


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"relay target must be a loopback address, not {host!r}") from None
    if not addr.is_loopback:
        raise ValueError(f"relay target must be a loopback address, not {host!r}")


class LatencyRelay:
    """Forward ``127.0.0.1:<port>`` to a loopback target, ``delay_ms`` later each way."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        delay_ms: float = 10.0,
        *,
        model_handshake: bool = True,
        port: int = 0,
    ) -> None:
        """Prepare a relay; :meth:`start` (or ``async with``) opens the listening socket.

        ``delay_ms`` is the one-way delay (RTT = 2 * delay_ms). ``port`` 0 picks a free port.
        """
        _check_loopback(target_host)
        if delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        self.target_host = target_host
        self.target_port = target_port
        self.delay = delay_ms / 1000.0
        self.model_handshake = model_handshake
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0
        """The listening port on 127.0.0.1 (set once started)."""
        self.connections = 0
        self.active = 0
        self.bytes_to_target = 0
        self.bytes_to_client = 0
        self.failed_connects = 0

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, ready for a URL."""
        return f"{_LISTEN_HOST}:{self.port}"

    def stats(self) -> RelayStats:
        """A snapshot of the counters."""
        return RelayStats(
            connections=self.connections,
            active=self.active,
            bytes_to_target=self.bytes_to_target,
            bytes_to_client=self.bytes_to_client,
            failed_connects=self.failed_connects,
        )

    async def start(self) -> None:
        """Listen on 127.0.0.1 (a free port unless one was given)."""
        self._server = await asyncio.start_server(
            self._handle, _LISTEN_HOST, self._requested_port, limit=_CHUNK
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and cut every open connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        # Cancel the pipes, not the connection handlers: a handler then closes both sockets
        # and returns normally (cancelling a handler task makes asyncio log a traceback).
        for pipe in list(self._pipes):
            pipe.cancel()
        handlers = list(self._tasks)
        if handlers:
            await asyncio.wait(handlers)

    async def __aenter__(self) -> LatencyRelay:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ----------------------------------------------------------------------------------------

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        loop = asyncio.get_running_loop()
        accepted = loop.time()
        self.connections += 1
        self.active += 1
        t_writer: asyncio.StreamWriter | None = None
        try:
            try:
                t_reader, t_writer = await asyncio.open_connection(
                    self.target_host, self.target_port, limit=_CHUNK
                )
            except OSError:
                self.failed_connects += 1
                return
            earliest_up = accepted + 3 * self.delay if self.model_handshake else 0.0
            up = asyncio.create_task(self._pipe(c_reader, t_writer, earliest_up, True))
            down = asyncio.create_task(self._pipe(t_reader, c_writer, 0.0, False))
            pipes = {up, down}
            self._pipes |= pipes
            try:
                # both directions end normally (EOF each way), or one fails and ends both
                await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.wait(pipes)
                self._pipes -= pipes
                for pipe in pipes:  # a reset connection is normal: retrieve and drop it
                    if not pipe.cancelled():
                        pipe.exception()
        finally:
            self.active -= 1
            for w in (c_writer, t_writer):
                if w is not None:
                    w.close()
            self._tasks.discard(task)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        earliest: float,
        upstream: bool,
    ) -> None:
        """Copy reader to writer, each chunk ``delay`` after it was read, in order."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_QUEUE_CHUNKS)

        async def read_side() -> None:
            while True:
                try:
                    data = await reader.read(_CHUNK)
                except (OSError, asyncio.IncompleteReadError):
                    data = b""
                due = max(loop.time() + self.delay, earliest)
                await queue.put((due, data))
                if not data:
                    return

        reading = asyncio.create_task(read_side())
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        with contextlib.suppress(OSError):
                            writer.write_eof()
                    return
                writer.write(data)
                if upstream:
                    self.bytes_to_target += len(data)
                else:
                    self.bytes_to_client += len(data)
                await writer.drain()
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading


class RelayThread:
    """An event loop in a daemon thread hosting any number of relays, for synchronous callers.

    ``add()`` starts a relay and returns it; ``stop()`` closes them all and joins the thread.
    """

    def __init__(self) -> None:
        """Start the thread and its event loop."""
        self._loop = asyncio.new_event_loop()
        self._relays: list[LatencyRelay] = []
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.call_soon(ready.set)
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="latency-relay", daemon=True)
        self._thread.start()
        ready.wait()

    def add(
        self,
        target_host: str,
        target_port: int,
        delay_ms: float = 10.0,
        *,
        model_handshake: bool = True,
    ) -> LatencyRelay:
        """Start a relay in front of ``target_host:target_port``; returns it (``.port``)."""
        relay = LatencyRelay(target_host, target_port, delay_ms, model_handshake=model_handshake)
        asyncio.run_coroutine_threadsafe(relay.start(), self._loop).result(timeout=10)
        self._relays.append(relay)
        return relay

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the relay thread's loop (e.g. to host a helper server there)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout)

    def stats(self) -> list[RelayStats]:
        """Counters of every relay, in the order added."""
        return [relay.stats() for relay in self._relays]

    def stop(self) -> list[RelayStats]:
        """Close every relay, stop the loop and join the thread; returns final counters."""
        if self._loop.is_closed():
            return self.stats()

        async def close_all() -> None:
            for relay in self._relays:
                await relay.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        return self.stats()

    def __enter__(self) -> RelayThread:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_relay_thread(
    target_host: str,
    target_port: int,
    delay_ms: float = 10.0,
    *,
    model_handshake: bool = True,
) -> tuple[int, Callable[[], RelayStats]]:
    """Run one relay in a background thread: returns ``(port, stop)``.

    ``stop()`` closes the relay, joins the thread and returns its final :class:`RelayStats`.
    """
    host = RelayThread()
    try:
        relay = host.add(target_host, target_port, delay_ms, model_handshake=model_handshake)
    except BaseException:
        host.stop()
        raise

    def stop() -> RelayStats:
        host.stop()
        return relay.stats()

    return relay.port, stop
