"""Every dependence of the registry client on another library's internals, in one place.

Each hook below reaches into something a library does not promise to keep (a private
attribute, a naming convention). Each one:

* pays for itself in a benchmark of ``benchmarks/`` (the figure is in its docstring);
* has a fallback that keeps the prober correct (only slower) when the internals change;
* has a test in ``tests/test_registry_compat.py`` that fails loudly when the hook stops
  taking effect with the installed versions (so an upgrade that silently disables it is
  seen in CI, not in a benchmark months later).

Hooks that did not pay were removed rather than kept here: building ``httpx.URL`` from its
parsed ``_uri_reference`` saved 12 us per manifest URL and 20 us per token URL (1-2 % of the
prober's ~0.9 ms CPU per request), ``asyncio.staggered`` gave way to
``loop.create_connection(happy_eyeballs_delay=...)`` once uvloop was gone, and the prober
keeps its own transport and pools instead of reaching for ``AsyncClient._transport``,
``AsyncHTTPTransport._pool`` and ``AsyncConnectionPool._network_backend``. Mapping httpcore's
errors to httpx's uses a table of public classes (:data:`._pools.HTTPX_ERRORS`).

``benchmarks/probe_bench.py --without HOOK`` runs the prober with a hook's fallback, to
measure what it pays.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hpack
import httpcore

__all__ = [
    "PlainHpackEncoder",
    "reader_has_buffered_data",
    "use_plain_hpack",
]


class PlainHpackEncoder(hpack.Encoder):
    """HPACK without Huffman coding: header values are sent as they are (a little larger).

    h2 Huffman-codes every value in pure Python, and never indexes ``Authorization``, so each
    request carrying a token (600-1,200 bytes here) coded it again. ``benchmarks/compat_bench.py``
    (a 1 KB token): 271-293 us of CPU per request's headers with Huffman coding, 14-15 us
    without (two runs, load average 8.7 and 10.2 on 2 cores); in ``probe_bench.py`` (500
    images, 20 ms RTT) that was 7.6 % of the prober's CPU. Literal strings are as valid HPACK
    (RFC 7541, 5.2)."""

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)


def use_plain_hpack(conn: httpcore.AsyncConnectionInterface) -> bool:
    """Switch ``conn``'s HPACK encoder to :class:`PlainHpackEncoder` once it is connected over
    HTTP/2; ``True`` once nothing is left to do (done, HTTP/1.1, or internals that differ).

    Internals: httpcore's ``AsyncHTTPConnection._connection`` (the HTTP/1.1 or HTTP/2
    connection once made) and ``AsyncHTTP2Connection._h2_state`` (h2's ``H2Connection``),
    whose ``encoder`` is an ``hpack.Encoder``. Fallback: the encoder is left as it is
    (Huffman coding, 7.6 % more CPU)."""
    inner = getattr(conn, "_connection", None)
    if inner is None:
        return conn.info() != "CONNECTING"
    encoder = getattr(getattr(inner, "_h2_state", None), "encoder", None)
    if type(encoder) is hpack.Encoder:
        encoder.__class__ = PlainHpackEncoder
    return True


def reader_has_buffered_data(reader: asyncio.StreamReader) -> bool:
    """Whether ``reader`` holds bytes not read yet.

    The asyncio backend (:mod:`._network`) answers httpcore's ``is_readable`` (asked of an
    idle connection before it is reused: has the server closed it or sent something?) from
    the reader's buffer, since the loop reads the socket eagerly. That backend costs less CPU
    per request than httpcore's anyio backend: ``benchmarks/compat_bench.py`` (HEAD requests
    over HTTP/2 and TLS to a loopback Distribution registry, 16 at a time) measured 599 vs
    685, 766 vs 1,047 and 636 vs 737 us per request (7, 9 and 15 rounds, load average 8.7-10
    on 2 cores; a 3-round run showed 836 vs 669: at that load few rounds are noise).

    Internals: ``asyncio.StreamReader._buffer``. Fallback: ``False`` (then only EOF and a
    closing transport count as readable: an idle connection the server wrote to without
    closing is reused, and its next answer fails, which httpcore retries on a new one)."""
    buffer = getattr(reader, "_buffer", None)
    return bool(buffer)
