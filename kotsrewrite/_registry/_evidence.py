"""Evidence built in one place: the steps a probe took, reasons for people, results.

A :class:`ProbeLog` collects one probe's steps (each HTTP exchange or failed attempt, as
:class:`~kotsrewrite._model.ProbeStep`) and its deadline; :func:`result` turns it, with a cause
and a reason, into the :class:`~kotsrewrite._model.ProbeResult` the report shows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

import attrs

from .._model import Cause, Evidence, ProbeCause, ProbeResult, ProbeStep
from .._reference import ImageRef

__all__ = ["MAX_CHALLENGE_EVIDENCE", "ProbeLog", "describe", "reason_codes", "result"]

#: Longest ``WWW-Authenticate`` kept in a step (longer ones end with ``...``).
MAX_CHALLENGE_EVIDENCE = 1000


@attrs.define(eq=False)
class ProbeLog:
    """One probe's (or one token fetch's) steps so far and its time budget."""

    steps: list[ProbeStep] = attrs.Factory(list)
    deadline: float = 0.0
    """``time.monotonic()`` by which the probe must end."""
    own_tokens: set[object] = attrs.Factory(set)
    """Token cache keys this probe fetched itself before taking its registry slot (their
    tokens are not "(cached)" in its reason)."""

    def remaining(self) -> float:
        """Seconds left of the budget."""
        return self.deadline - time.monotonic()

    def add(self, steps: Iterable[ProbeStep]) -> None:
        """Append ``steps`` (a token fetch's, another probe's first failure)."""
        self.steps.extend(steps)

    def answered(
        self,
        step: str,
        method: str,
        url: str,
        status: int,
        elapsed_ms: float,
        *,
        error_codes: tuple[str, ...],
        attempt: int,
        challenge: str | None,
    ) -> None:
        """An exchange that got an answer."""
        self.steps.append(
            ProbeStep(
                step=step,
                method=method,
                url=url,
                status=status,
                elapsed_ms=elapsed_ms,
                error_codes=error_codes,
                attempt=attempt,
                challenge=challenge,
            )
        )

    def failed(
        self,
        step: str,
        method: str,
        url: str,
        elapsed_ms: float,
        error: str,
        attempt: int = 1,
        cause: ProbeCause | None = None,
    ) -> None:
        """An exchange that got no answer (``error`` says why; ``cause`` when the user can act
        on it, e.g. a server speaking plain HTTP), or one we refused to send."""
        self.steps.append(
            ProbeStep(
                step=step,
                method=method,
                url=url,
                status=None,
                elapsed_ms=elapsed_ms,
                error=error,
                attempt=attempt,
                cause=cause,
            )
        )


def result(ref: ImageRef, log: ProbeLog, started: float, cause: Cause, reason: str) -> ProbeResult:
    """The probe's result: the verdict ``cause`` implies, with ``log``'s steps as evidence."""
    elapsed = (time.monotonic() - started) * 1000.0
    probed_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    evidence = Evidence(
        reason=reason,
        steps=tuple(log.steps),
        elapsed_ms=elapsed,
        probed_at=probed_at,
        cause=cause,
    )
    return ProbeResult(image=ref, verdict=cause.verdict, evidence=evidence)


def describe(exc: BaseException) -> str:
    """``ExceptionType: message`` (at most 300 characters) for evidence."""
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"[:300]


def reason_codes(error_codes: Iterable[str], extra: str | None = None) -> str:
    """`` CODE/CODE`` (with a leading space) for a reason, or the empty string."""
    bits = list(error_codes)
    if extra and extra not in bits:
        bits.append(extra)
    return f" {'/'.join(bits)}" if bits else ""
