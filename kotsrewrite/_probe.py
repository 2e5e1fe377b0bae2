"""Anonymous registry probing: can a cluster pull this image without credentials?

The public face of the registry client in :mod:`kotsrewrite._registry` (one job per module
there: network backend, pools, sending, tokens, scheduling, verdicts, evidence). Verdicts
(SPEC 5) are documented in :mod:`kotsrewrite._registry._verdict`; each result's evidence has a
:class:`~kotsrewrite._model.Cause` and a reason for people.

Safety: no credential is ever sent. The client is built with ``trust_env=True`` (proxy
variables honoured) but httpx reads no ``.netrc`` unless asked (we never ask), no auth is
configured, URLs with user info are refused, and docker's config.json is never read. Bodies
are read through a stream and capped (64 KiB); redirects are followed by hand (at most 5, never
https to http, never to a refused address). A token is only ever sent to the origin whose
challenge asked for it.

Insecure registries: :attr:`ProbeOptions.insecure_registries` entries mean plain HTTP for that
``host[:port]`` exactly, as Docker's ``insecure-registries`` (docker would first try https
without verification; we do not, so a loopback test registry costs no failed TLS handshake).
Loopback registries are not insecure by default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import httpx

from ._model import ProbeResult
from ._reference import ImageRef
from ._registry._network import run_sync
from ._registry._options import ProbeOptions
from ._registry._pools import build_client
from ._registry._prober import MANIFEST_ACCEPT, Prober

__all__ = [
    "MANIFEST_ACCEPT",
    "ProbeOptions",
    "Prober",
    "build_client",
    "probe",
    "probe_sync",
]


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
    """Synchronous wrapper of :func:`probe` for callers without an event loop (on asyncio's
    own loop).

    Called from a thread that already runs an event loop, it runs the probe in a worker thread.
    """
    refs = list(images)
    return run_sync(lambda: probe(refs, options, on_result=on_result))
