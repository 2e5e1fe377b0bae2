"""Progress and request logging for the command line (stderr only; never the license ID).

:class:`ProbeProgress` is an ``on_result`` callback for :func:`~kotsrewrite.probe_sync` that
draws a transient progress display (count, rate, per-registry state) with ``rich`` when the
stream is a terminal, and does nothing otherwise. :func:`verbose_logging` attaches a handler to
the ``kotsrewrite`` logger so each probe request (method, URL, status, elapsed) is printed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, TextIO

from ._model import ProbeResult
from ._reference import ImageRef

if TYPE_CHECKING:
    from rich.live import Live
    from rich.text import Text

__all__ = ["ProbeProgress", "verbose_logging"]


class ProbeProgress:
    """A transient probe progress display on ``stream`` when it is a terminal.

    Use as a context manager around the probe and pass the instance as ``on_result``.
    """

    def __init__(self, images: Sequence[ImageRef], stream: TextIO, *, enabled: bool = True):
        self.total = len(images)
        self.done = 0
        self._per_registry_total = Counter(ref.registry for ref in images)
        self._per_registry_done: Counter[str] = Counter()
        self._verdicts: Counter[str] = Counter()
        self._start = time.monotonic()
        self._enabled = enabled and _isatty(stream) and self.total > 0
        self._live: Live | None = None
        self._stream = stream

    def __enter__(self) -> ProbeProgress:
        if self._enabled:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self._stream, force_terminal=True, highlight=False)
            live = Live(self._render(), console=console, transient=True, refresh_per_second=8)
            live.start()
            self._live = live
        return self

    def __exit__(self, *exc: object) -> None:
        live = self._live
        if live is not None:
            live.stop()
            self._live = None

    def __call__(self, result: ProbeResult) -> None:
        """Record one result (the ``on_result`` callback)."""
        self.done += 1
        self._per_registry_done[result.image.registry] += 1
        self._verdicts[str(result.verdict)] += 1
        live = self._live
        if live is not None:
            live.update(self._render())

    def _render(self) -> Text:
        from rich.text import Text

        elapsed = max(time.monotonic() - self._start, 1e-6)
        rate = self.done / elapsed
        verdicts = ", ".join(f"{n} {v}" for v, n in sorted(self._verdicts.items()))
        lines = [
            f"probing {self.done}/{self.total} images  {rate:.1f}/s"
            + (f"  ({verdicts})" if verdicts else "")
        ]
        for registry in sorted(self._per_registry_total):
            got = self._per_registry_done[registry]
            want = self._per_registry_total[registry]
            state = "done" if got >= want else "probing"
            lines.append(f"  {registry:<40} {got}/{want} {state}")
        shown = lines[:12]
        if len(lines) > 12:
            shown.append(f"  ... {len(lines) - 12} more registries")
        return Text("\n".join(shown))


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _StreamHandler(logging.Handler):
    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.DEBUG)
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(f"kotsrewrite: {record.name.removeprefix('kotsrewrite.')}: ")
            self.stream.write(record.getMessage() + "\n")
            self.stream.flush()
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def verbose_logging(stream: TextIO, *, enabled: bool = True) -> Iterator[None]:
    """Print the ``kotsrewrite`` logger's debug records on ``stream`` while active."""
    if not enabled:
        yield
        return
    logger = logging.getLogger("kotsrewrite")
    handler = _StreamHandler(stream)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
