"""Why a probe stopped before the registry proved more: a failure hierarchy.

Every failure carries a :class:`~kotsrewrite._model.Cause` (which implies the verdict) and a
free-text reason for people (the report's ``evidence.reason``). The class says how the prober
treats it; the cause says what it means. Messages never name CLI flags (the CLI adds them).
"""

from __future__ import annotations

from .._model import Cause, Verdict

__all__ = [
    "ProbeFailure",
    "RefusedFailure",
    "StatusFailure",
    "TokenFailure",
    "TransportFailure",
]


class ProbeFailure(Exception):
    """A probe (or one of its token fetches) ended here: ``cause`` and ``reason``."""

    def __init__(self, cause: Cause, reason: str) -> None:
        super().__init__(reason)
        self.cause = cause
        self.reason = reason

    @property
    def verdict(self) -> Verdict:
        """The verdict :attr:`cause` implies."""
        return self.cause.verdict


class TransportFailure(ProbeFailure):
    """No answer: DNS, connect, TLS, reads (after bounded retries). When it is the first
    thing a registry ever did in this run, the registry is taken as down."""


class RefusedFailure(ProbeFailure):
    """We refused to send a request: a forbidden address, a redirect or realm we refuse."""


class StatusFailure(ProbeFailure):
    """Answers that prove nothing, after bounded retries: 5xx, 429, too many redirects."""


class TokenFailure(ProbeFailure):
    """The token endpoint gave no usable token (refused, failed, answered nonsense)."""
