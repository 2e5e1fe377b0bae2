"""Benchmark: what each hook of kotsrewrite/_registry/_compat.py pays, in CPU per request.

probe_bench's wall and CPU figures move by ±30 % with the machine's load, more than either
hook is worth, so this measures each hook on its own, in CPU time of this process
(``time.process_time``), alternating the two variants round after round (ABAB...) so that
drifting load hits both alike; the median per round is reported:

* ``plain-hpack``: encoding one token request's headers (HEAD, a 1 KB Bearer token sent
  never-indexed, as h2 sends ``Authorization``) with h2's Huffman coding vs
  :class:`~kotsrewrite._registry._compat.PlainHpackEncoder`, per request.
* ``asyncio-backend``: HEAD requests (16 at a time) to a real TLS registry on loopback
  (Distribution, HTTP/2) through one httpcore pool on
  :class:`~kotsrewrite._registry._network.AsyncioBackend` (which needs the
  ``StreamReader._buffer`` hook) vs httpcore's own anyio backend, per request.

Run: ``.venv/bin/python benchmarks/compat_bench.py [--rounds 7] [--requests 400]``.
Last line: ``RESULT plain_hpack_us_saved=X asyncio_backend_us_saved=Y`` (CPU per request).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _hpack_round(plain: bool, n: int) -> float:
    import hpack

    from kotsrewrite._registry._compat import PlainHpackEncoder

    token = "eyJ" + "aB3_-x9Q" * 125  # ~1 KB, like a registry's JWT
    headers = [
        (":method", "HEAD"),
        (":scheme", "https"),
        (":authority", "registry.example.com"),
        (":path", "/v2/team/app/manifests/1.0"),
        (
            "accept",
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
        ),
        ("accept-encoding", "identity"),
        ("user-agent", "kotsrewrite/0.1 (anonymous probe)"),
        hpack.NeverIndexedHeaderTuple("authorization", f"Bearer {token}"),
    ]
    encoder = PlainHpackEncoder() if plain else hpack.Encoder()
    t0 = time.process_time()
    for _ in range(n):
        encoder.encode(headers)
    return (time.process_time() - t0) / n * 1e6


async def _requests_round(asyncio_backend: bool, url: str, ctx: ssl.SSLContext, n: int) -> float:
    import httpcore

    from kotsrewrite._registry._network import AsyncioBackend
    from kotsrewrite._registry._prober import MANIFEST_ACCEPT

    accept = ", ".join(MANIFEST_ACCEPT)

    backend = AsyncioBackend() if asyncio_backend else None
    pool = httpcore.AsyncConnectionPool(
        ssl_context=ctx, http2=True, max_keepalive_connections=16, network_backend=backend
    )
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with sem:
            resp = await pool.request(
                "HEAD", f"{url}/v2/app/manifests/1.0", headers={"Accept": accept}
            )
            assert resp.status == 200, resp.status

    await one(0)  # connect outside the measured part
    t0 = time.process_time()
    await asyncio.gather(*(one(i) for i in range(n)))
    spent = time.process_time() - t0
    await pool.aclose()
    if backend is not None:
        await backend.wait_closed()
    return spent / n * 1e6


def _alternate(rounds: int, measure: Callable[[bool], float]) -> tuple[float, float]:
    """Medians of (without the hook, with it), alternating which goes first."""
    without: list[float] = []
    with_: list[float] = []
    for r in range(rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for hooked in order:
            (with_ if hooked else without).append(measure(hooked))
    return statistics.median(without), statistics.median(with_)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=400, help="requests per round")
    args = parser.parse_args(argv)
    print(f"compat_bench: load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

    huff, plain = _alternate(args.rounds, lambda p: _hpack_round(p, 2000))
    print(f"plain-hpack: Huffman {huff:.1f} us, plain {plain:.1f} us per request's headers")

    import trustme

    from tests import lab

    ca = trustme.CA()
    with lab.registry(tls=ca) as reg:
        reg.push("app", "1.0")
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)

        def measure(hooked: bool) -> Any:
            return asyncio.run(_requests_round(hooked, f"https://{reg.host}", ctx, args.requests))

        anyio_us, asyncio_us = _alternate(args.rounds, measure)
    print(
        f"asyncio-backend: anyio backend {anyio_us:.0f} us, asyncio backend {asyncio_us:.0f} us"
        " CPU per HEAD request (HTTP/2 over TLS, 16 at a time)"
    )
    print(
        f"RESULT plain_hpack_us_saved={huff - plain:.1f}"
        f" asyncio_backend_us_saved={anyio_us - asyncio_us:.0f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
