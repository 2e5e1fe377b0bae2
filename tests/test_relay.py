"""The benchmark's latency relay: added delay within tolerance, data intact, no serialization."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

from benchmarks._relay import LatencyRelay, RelayThread, start_relay_thread

DELAY_MS = 10.0
TOLERANCE_S = 0.030


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def _echo_server() -> asyncio.Server:
    return await asyncio.start_server(_echo, "127.0.0.1", 0)


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def _round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    start = time.perf_counter()
    writer.write(b"ping\n")
    await writer.drain()
    assert await reader.readexactly(5) == b"ping\n"
    return time.perf_counter() - start


def test_round_trip_on_open_connection_costs_two_delays() -> None:
    async def main() -> list[float]:
        server = await _echo_server()
        async with server, LatencyRelay("127.0.0.1", _port(server), DELAY_MS) as relay:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            await _round_trip(reader, writer)  # pays the modelled handshake
            times = [await _round_trip(reader, writer) for _ in range(5)]
            writer.close()
            return times

    rtt = 2 * DELAY_MS / 1000
    times = sorted(asyncio.run(main()))
    assert all(elapsed >= rtt for elapsed in times)
    # the median, so one scheduling hiccup on a loaded CI machine does not fail the test
    assert times[len(times) // 2] < rtt + TOLERANCE_S


def test_new_connection_pays_one_more_round_trip_for_the_handshake() -> None:
    async def first_exchange(model_handshake: bool) -> float:
        server = await _echo_server()
        async with (
            server,
            LatencyRelay(
                "127.0.0.1", _port(server), DELAY_MS, model_handshake=model_handshake
            ) as relay,
        ):
            start = time.perf_counter()
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            writer.write(b"ping\n")
            await writer.drain()
            assert await reader.readexactly(5) == b"ping\n"
            writer.close()
            return time.perf_counter() - start

    rtt = 2 * DELAY_MS / 1000
    with_handshake = [asyncio.run(first_exchange(True)) for _ in range(3)]
    without = [asyncio.run(first_exchange(False)) for _ in range(3)]
    assert all(elapsed >= 2 * rtt for elapsed in with_handshake)
    assert all(elapsed >= rtt for elapsed in without)
    # best of three, so one scheduling hiccup on a loaded machine does not fail the test
    assert min(with_handshake) < 2 * rtt + TOLERANCE_S
    assert min(without) < rtt + TOLERANCE_S


def test_one_megabyte_round_trip_is_intact_and_pipelined() -> None:
    payload = os.urandom(1024 * 1024)

    async def main() -> tuple[bytes, float, LatencyRelay]:
        server = await _echo_server()
        async with server, LatencyRelay("127.0.0.1", _port(server), DELAY_MS) as relay:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            start = time.perf_counter()

            async def send() -> None:
                # many writes of odd sizes so chunks are split and reordering would show
                for i in range(0, len(payload), 7919):
                    writer.write(payload[i : i + 7919])
                    await writer.drain()
                writer.write_eof()

            sender = asyncio.create_task(send())
            async with asyncio.timeout(10):  # a relay that drops the link would hang here
                received = await reader.read(-1)  # until the echo server closes after our EOF
                await sender
            elapsed = time.perf_counter() - start
            writer.close()
            await asyncio.sleep(0)
            return received, elapsed, relay

    received, elapsed, relay = asyncio.run(main())  # probe_bench's loop since uvloop went
    assert received == payload
    assert relay.bytes_to_target == len(payload)
    assert relay.bytes_to_client == len(payload)
    # pipelined: the delay is paid once per direction (plus handshake), not once per chunk
    assert elapsed < 1.0


def test_concurrent_connections_are_not_serialized() -> None:
    delay_ms = 50.0
    clients = 20

    async def main() -> tuple[float, int]:
        server = await _echo_server()
        async with server, LatencyRelay("127.0.0.1", _port(server), delay_ms) as relay:

            async def one() -> None:
                reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
                await _round_trip(reader, writer)
                writer.close()

            start = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(clients)))
            return time.perf_counter() - start, relay.connections

    elapsed, connections = asyncio.run(main())
    assert connections == clients
    # one new connection costs 2 RTT (handshake + exchange) = 200 ms; serialized would be 4 s
    assert 4 * delay_ms / 1000 <= elapsed < 4 * delay_ms / 1000 + 0.6


def test_thread_wrapper_for_sync_code_counts_connections_and_bytes() -> None:
    echo_host = RelayThread()  # hosts the echo server on its loop so this test stays sync
    server = echo_host.run(_echo_server())
    port, stop = start_relay_thread("127.0.0.1", _port(server), delay_ms=DELAY_MS)
    times = []
    try:
        for _ in range(3):
            start = time.perf_counter()  # before connect: the handshake is charged from accept
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.sendall(b"hello")
                got = b""
                while len(got) < 5:
                    got += conn.recv(5 - len(got))
                elapsed = time.perf_counter() - start
                assert got == b"hello"
                times.append(elapsed)
    finally:
        stats = stop()

        async def close_server() -> None:
            server.close()
            await server.wait_closed()

        echo_host.run(close_server())
        echo_host.stop()
    # a new connection: modelled handshake (1 RTT) + the exchange (1 RTT)
    assert all(elapsed >= 4 * DELAY_MS / 1000 for elapsed in times)
    assert min(times) < 4 * DELAY_MS / 1000 + TOLERANCE_S
    assert stats.connections == 3
    assert stats.bytes_to_target == 15
    assert stats.bytes_to_client == 15
    assert stats.active == 0


def test_closed_target_port_closes_the_client_and_counts_a_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = int(probe.getsockname()[1])  # bound, never listening: connect is refused
        port, stop = start_relay_thread("127.0.0.1", dead_port, delay_ms=1)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                assert conn.recv(10) == b""
        finally:
            stats = stop()
    assert stats.failed_connects == 1


@pytest.mark.parametrize("target", ["10.0.0.1", "example.com", "0.0.0.0"])
def test_only_loopback_targets_are_accepted(target: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        LatencyRelay(target, 5000)
