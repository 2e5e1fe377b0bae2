"""How the prober opens connections and shares a token service's slots.

* A burst of requests to an HTTPS origin that speaks only HTTP/1.1 connects in parallel once
  the first handshake has shown the protocol (httpcore alone queues them all on the one
  connection being made, expecting HTTP/2, and then makes one connection per handshake, in
  series).
* A burst to an HTTP/2 origin still shares one connection.
* Token fetches of probes that hold a registry slot go ahead of fetches made while waiting
  for one (:class:`kotsrewrite._probe._Slots`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from typing import Any

import pytest

from benchmarks._relay import start_relay_thread
from kotsrewrite import ImageRef, ProbeOptions, Verdict, probe
from kotsrewrite._registry._compat import PlainHpackEncoder as _PlainEncoder
from kotsrewrite._registry._schedule import PrioritySlots as _Slots
from tests import lab

MANIFEST_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
    b"Docker-Content-Digest: sha256:" + b"a" * 64 + b"\r\n"
    b"Content-Length: 2\r\n\r\n"
)


class HeldHandshakeServer:
    """An HTTPS server speaking HTTP/1.1 only (keep-alive; every HEAD answered 200 as a
    manifest) that completes the first connection's TLS handshake at once and holds every
    later connection's handshake until ``hold`` of them are waiting (or ``patience`` seconds
    have passed). :attr:`max_waiting` says how many were ever waiting together: connections
    made in parallel reach ``hold``; connections made one after another (each only once the
    previous handshake ended) never get past 1."""

    def __init__(self, ctx: ssl.SSLContext, hold: int, patience: float = 2.0) -> None:
        self._ctx = ctx
        self.hold = hold
        self.patience = patience
        self.accepted = 0
        self.max_waiting = 0
        self._waiting = 0
        self._cond = threading.Condition()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.host = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            self.accepted += 1
            first = self.accepted == 1
            threading.Thread(target=self._one, args=(conn, first), daemon=True).start()

    def _one(self, conn: socket.socket, first: bool) -> None:
        try:
            if not first:
                with self._cond:
                    self._waiting += 1
                    self.max_waiting = max(self.max_waiting, self._waiting)
                    self._cond.notify_all()
                    deadline = time.monotonic() + self.patience
                    while self._waiting < self.hold and time.monotonic() < deadline:
                        self._cond.wait(deadline - time.monotonic())
                # (not decremented: every later connection counts once)
            tls = self._ctx.wrap_socket(conn, server_side=True)
            self._conns.append(tls)
            tls.settimeout(10)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = tls.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                tls.sendall(MANIFEST_HEAD if head.startswith(b"HEAD ") else MANIFEST_HEAD + b"{}")
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.close()


def _server_ctx(ca: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.set_alpn_protocols(["http/1.1"])
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


def test_a_burst_to_an_http11_origin_connects_in_parallel(lab_ca: Any, lab_ca_file: Any) -> None:
    server = HeldHandshakeServer(_server_ctx(lab_ca), hold=7)
    try:
        refs = [ImageRef.parse(f"{server.host}/app/img{i}:1.0") for i in range(8)]
        opts = ProbeOptions(per_registry=8, ca_file=str(lab_ca_file))
        results = asyncio.run(probe(refs, opts))
    finally:
        server.stop()
    assert [r.verdict for r in results] == [Verdict.PUBLIC] * 8, [
        r.evidence.reason for r in results
    ]
    # One connection learned the protocol; the other seven were made together.
    assert server.accepted == 8
    assert server.max_waiting == 7


def test_a_burst_to_an_http2_origin_shares_one_connection(
    tls_registry: lab.Registry, lab_ca_file: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ...and once connected, its requests' headers are HPACK-coded without Huffman coding
    # (which the registry, Go's HTTP/2 server, reads like any other).
    plain: list[bytes] = []
    encode = _PlainEncoder.encode

    def counted(self: _PlainEncoder, headers: Any, huffman: bool = True) -> bytes:
        out = encode(self, headers, huffman)
        plain.append(out)
        return out

    monkeypatch.setattr(_PlainEncoder, "encode", counted)
    repos = [f"conn/h2-{i}" for i in range(16)]
    tls_registry.push_many([(r, "1.0") for r in repos])
    port, stop = start_relay_thread("127.0.0.1", tls_registry.port, 5.0)
    try:
        refs = [ImageRef.parse(f"127.0.0.1:{port}/{r}:1.0") for r in repos]
        results = asyncio.run(probe(refs, ProbeOptions(per_registry=8, ca_file=str(lab_ca_file))))
    finally:
        stats = stop()
    assert [r.verdict for r in results] == [Verdict.PUBLIC] * 16
    assert stats.connections == 1
    assert plain, "no request went out with plain HPACK strings"
    assert any(b"/v2/conn/h2-" in block for block in plain)  # the path, as it is


# -- _Slots -----------------------------------------------------------------------------------


def test_slots_serve_urgent_waiters_first() -> None:
    order: list[str] = []

    async def main() -> None:
        slots = _Slots(1)
        await slots.acquire()  # held

        async def take(name: str, urgent: bool) -> None:
            await slots.acquire(urgent)
            order.append(name)
            await asyncio.sleep(0)
            slots.release()

        tasks = [asyncio.create_task(take("ahead-1", False))]
        tasks.append(asyncio.create_task(take("ahead-2", False)))
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(take("holder", True)))
        await asyncio.sleep(0)
        slots.release()
        await asyncio.gather(*tasks)
        # every slot came back
        await asyncio.wait_for(slots.acquire(), 1)

    asyncio.run(main())
    assert order == ["holder", "ahead-1", "ahead-2"]


def test_slots_cancelled_waiters_give_no_slot_away() -> None:
    async def main() -> None:
        slots = _Slots(1)
        await slots.acquire()
        waiting = asyncio.create_task(slots.acquire(True))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # Handed the slot and cancelled in the same step: the slot goes back.
        handed = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        slots.release()  # hands the slot to `handed`...
        handed.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await handed
        await asyncio.wait_for(slots.acquire(), 1)  # the one slot is free again
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(slots.acquire(), 0.05)  # and there was only one

    asyncio.run(main())
