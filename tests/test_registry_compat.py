"""Each hook into another library's internals (kotsrewrite._registry._compat) still takes
effect with the installed versions: these fail loudly when an upgrade silently disables one
(the prober would stay correct, on the documented fallback, only slower).

The HPACK hook is also checked end to end against a real HTTP/2 registry in
tests/test_probe_connections.py (``test_a_burst_to_an_http2_origin_shares_one_connection``
asserts that requests went out with plain strings).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import h2.config
import h2.connection
import hpack
import httpcore
import httpx
import pytest

from kotsrewrite._registry._compat import (
    PlainHpackEncoder,
    reader_has_buffered_data,
    use_plain_hpack,
)
from kotsrewrite._registry._pools import httpx_error_for


def test_reader_buffer_hook_sees_unread_bytes() -> None:
    async def go() -> tuple[bool, bool, bool]:
        reader = asyncio.StreamReader()
        empty = reader_has_buffered_data(reader)
        reader.feed_data(b"HTTP/1.1 408 Request Timeout\r\n")
        fed = reader_has_buffered_data(reader)
        await reader.read(100)
        return empty, fed, reader_has_buffered_data(reader)

    assert asyncio.run(go()) == (False, True, False)


@pytest.mark.parametrize(
    "name",
    [
        "ConnectError",
        "ConnectTimeout",
        "ReadError",
        "ReadTimeout",
        "WriteError",
        "WriteTimeout",
        "PoolTimeout",
        "RemoteProtocolError",
        "LocalProtocolError",
        "ProxyError",
        "UnsupportedProtocol",
    ],
)
def test_httpcore_errors_map_to_httpx_errors_of_the_same_name(name: str) -> None:
    core = getattr(httpcore, name)("boom")
    mapped = httpx_error_for(core)
    assert type(mapped) is getattr(httpx, name)  # not the generic fallback
    assert str(mapped) == "boom"


def test_plain_hpack_hook_reaches_the_h2_encoder(lab_ca: Any) -> None:
    """An HTTP/2 connection made by httpcore gets its HPACK encoder swapped (on a loopback
    server speaking h2 over TLS just far enough: its settings frame)."""

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    lab_ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server_ctx.set_alpn_protocols(["h2"])

    async def go() -> tuple[type, bool]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            conn.initiate_connection()
            writer.write(conn.data_to_send())
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if type(event).__name__ == "RequestReceived":
                        conn.send_headers(event.stream_id, [(":status", "200")], end_stream=True)
                writer.write(conn.data_to_send())
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        client_ctx = ssl.create_default_context()
        lab_ca.configure_trust(client_ctx)
        conn = httpcore.AsyncHTTPConnection(
            httpcore.Origin(b"https", b"127.0.0.1", port), ssl_context=client_ctx, http2=True
        )
        before = use_plain_hpack(conn)  # not connected yet: nothing to do yet
        resp = await conn.request("GET", f"https://127.0.0.1:{port}/")
        assert resp.status == 200
        done = use_plain_hpack(conn)
        encoder = conn._connection._h2_state.encoder  # type: ignore[attr-defined]
        await conn.aclose()
        server.close()
        await server.wait_closed()
        assert not before and done
        return type(encoder), isinstance(encoder, hpack.Encoder)

    kind, is_encoder = asyncio.run(go())
    assert kind is PlainHpackEncoder and is_encoder


def test_plain_hpack_encoder_emits_no_huffman_strings() -> None:
    block = PlainHpackEncoder().encode([(":path", "/v2/app/manifests/1")])
    assert b"/v2/app/manifests/1" in block
    assert b"/v2/app/manifests/1" not in hpack.Encoder().encode([(":path", "/v2/app/manifests/1")])
