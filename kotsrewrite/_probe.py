"""Anonymous registry probing. STUB: being written."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from ._model import ProbeResult
from ._reference import ImageRef

__all__ = ["ProbeOptions", "probe", "probe_sync"]


@attrs.frozen
class ProbeOptions:
    """Transport and concurrency options for probing."""

    concurrency: int = 32
    per_registry: int = 8
    timeout: float = 10.0
    insecure_registries: frozenset[str] = frozenset()
    ca_file: str | None = None


async def probe(
    images: Iterable[ImageRef], options: ProbeOptions | None = None
) -> list[ProbeResult]:
    """Probe each distinct image anonymously; one result per distinct reference."""
    raise NotImplementedError


def probe_sync(
    images: Iterable[ImageRef], options: ProbeOptions | None = None
) -> list[ProbeResult]:
    """Synchronous wrapper of :func:`probe` for callers without an event loop."""
    raise NotImplementedError
