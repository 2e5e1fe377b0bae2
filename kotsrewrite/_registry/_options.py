"""The knobs of a probing run."""

from __future__ import annotations

import ipaddress

import attrs

from .._errors import InputError

__all__ = ["ProbeOptions", "insecure_matches"]


@attrs.frozen
class ProbeOptions:
    """Transport and concurrency options for probing."""

    concurrency: int = 64
    """Probes in flight at once, over all registries (64: eight registries at their
    ``per_registry`` limit; with 32, five registries shared 32 slots and none got its 8)."""
    per_registry: int = 8
    """Probes in flight at once against one registry (its politeness limit)."""
    token_batch: int = 8
    """Repositories asked for in one token request, when probes waiting for a registry slot
    fetch their tokens ahead from a token service on a host of its own (Docker Hub's
    ``auth.docker.io``). A repository the token does not grant ``pull`` on gets a token of
    its own, so this only saves requests; 1 asks one token per repository."""
    timeout: float = 10.0
    """Total time budget of one probe (all its requests, retries and waits), in seconds."""
    insecure_registries: frozenset[str] = frozenset()
    """Registries reached over plain HTTP, as Docker's ``insecure-registries``: ``host:port``
    matches that port only; a bare ``host`` matches that host on the default ports (its
    references without a port), not every port of it."""
    ca_file: str | None = None
    """PEM file of extra CA certificates trusted for registries and token realms."""
    connect_timeout: float = 5.0
    read_timeout: float = 5.0
    """Per-request connect and read timeouts (each also bounded by :attr:`timeout`)."""
    max_attempts: int = 3
    """Attempts per request on transport errors, 5xx and 429."""
    backoff: float = 0.2
    """First retry delay in seconds; doubles per attempt, with jitter."""
    max_retry_after: float = 5.0
    """Longest ``Retry-After`` honoured; a longer one gives ``rate_limited`` at once."""
    max_body: int = 64 * 1024
    """Bytes read at most from any response body."""
    max_redirects: int = 5

    def checked(self) -> ProbeOptions:
        """These options, or :class:`~kotsrewrite.InputError` when a concurrency limit is
        below 1 (what the prober and the pull check take)."""
        if self.concurrency < 1 or self.per_registry < 1:
            raise InputError(
                "concurrency limits (concurrency, per_registry) must be at least 1",
                hint="give positive numbers",
            )
        return self


def insecure_matches(host: str, insecure: frozenset[str]) -> bool:
    """Whether ``host`` (a reference's ``host[:port]``) is one of ``insecure``, matched as
    Docker matches ``insecure-registries`` entries: the exact ``host[:port]``, so ``HOST``
    covers ``HOST`` only (not ``HOST:5000``, nor ``HOST:443``) and ``HOST:5000`` covers that
    port only (host names compare case-insensitively); a CIDR entry (``10.0.0.0/8``) covers
    every port of an IP address inside it (Docker also resolves names for CIDRs; we do not)."""
    if not insecure:
        return False
    low = host.lower()
    if any(low == entry.lower() for entry in insecure):
        return True
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(hostname.strip("[]"))
    except ValueError:
        return False
    for entry in insecure:
        if "/" not in entry:
            continue
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False
