"""The prober: one run's client, caches and slots, and the probe of one manifest.

For each distinct ``(registry, repository, reference)`` it sends
``HEAD <scheme>://<api-host>/v2/<repository>/manifests/<digest|tag|latest>`` with the four
manifest media types in ``Accept`` (GET only when HEAD answers 405). A ``401`` with a Bearer
challenge leads to an anonymous token (:mod:`._tokens`) and one retry with
``Authorization: Bearer``. Challenges are cached per registry and origin (the next repository
on the same registry costs two round trips, token and manifest, not three). What each answer
proves is decided by :func:`._verdict.judge_manifest`; failures on the way are
:class:`._failures.ProbeFailure`; the evidence is built by :mod:`._evidence`.

Tokens per origin: the registry's, and that of any host it redirects to that challenges too
(``registry.k8s.io`` -> Artifact Registry), each sent to its origin only and asked with the
scopes that origin's challenge named. An http realm is allowed for an origin reached over
plain HTTP, which only happens from a registry the user opted into plain HTTP (redirects from
https to http are refused).

Unreachable registries: when a probe of a registry that has not answered once in this run
fails at the transport level (or times out), the later probes of that registry get
``unreachable`` at once, citing it, instead of each waiting for its own timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import httpx

from .._auth import is_forbidden_address
from .._model import Cause, ProbeResult, ProbeStep
from .._reference import ImageRef
from ._evidence import ProbeLog, describe, result
from ._failures import ProbeFailure, RefusedFailure, TransportFailure
from ._options import ProbeOptions, insecure_matches
from ._pools import PerOriginTransport, client_limits, client_on, ssl_context
from ._schedule import Scheduler
from ._send import Sender, origin_of
from ._tokens import BearerChallenge, Token, TokenService
from ._verdict import Decided, NeedToken, RetryWithGet, judge_manifest

__all__ = ["MANIFEST_ACCEPT", "ProbeKey", "Prober"]

#: Media types sent in ``Accept`` on every manifest request.
MANIFEST_ACCEPT = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_ACCEPT = ", ".join(MANIFEST_ACCEPT)

ProbeKey = tuple[str, str, str]
"""(base URL, repository, digest or tag): what identifies one probe."""


class Prober:
    """One probing run: one HTTP client, shared caches, concurrency limits.

    Use as an async context manager::

        async with Prober(ProbeOptions(per_registry=8)) as prober:
            results = await prober.probe(images)

    ``client`` lets a caller (a test, a benchmark) supply its own ``httpx.AsyncClient``
    (build it with :func:`build_client` to keep the no-credential guarantees); it is not closed
    by the prober. ``transport`` is passed to :func:`build_client` otherwise.
    """

    def __init__(
        self,
        options: ProbeOptions | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.options = (options or ProbeOptions()).checked()
        self._own_client = client is None
        own_network: PerOriginTransport | None = None
        if client is None:
            verify = ssl_context(self.options)
            if transport is None:
                # The prober's own network: requests go to its pools directly (see _send).
                own_network = transport = PerOriginTransport(verify, client_limits(self.options))
            client = client_on(self.options, verify, transport)
        self._client = client
        self._sender = Sender(self.options, client, own_network)
        self._scheduler = Scheduler(self.options)
        self._tokens = TokenService(self.options, self._sender, self._scheduler)
        self._challenges: dict[str, dict[str, BearerChallenge]] = {}
        """registry base URL -> origin -> its Bearer challenge (realm and service)."""
        self._down: dict[str, tuple[str, tuple[ProbeStep, ...]]] = {}
        """registry base URL -> the reason and steps of its first probe's transport failure."""
        self._inflight: dict[ProbeKey, asyncio.Future[ProbeResult]] = {}
        self._bases: dict[tuple[str, str], str] = {}
        """(scheme, api host) -> base URL (parsed once per registry, not once per image)."""
        self._base_refused: dict[str, str | None] = {}
        """registry base URL -> why its address is refused (None: it is not)."""

    @property
    def requests(self) -> int:
        """HTTP requests sent so far (attempts and redirects included)."""
        return self._sender.requests

    async def __aenter__(self) -> Prober:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel probes still in flight and close the HTTP client if the prober made it."""
        futures: list[asyncio.Future[Any]] = [*self._inflight.values()]
        futures += self._tokens.in_flight()
        pending = [f for f in futures if not f.done()]
        for fut in pending:
            fut.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self._own_client:
            await self._client.aclose()

    # -- public ------------------------------------------------------------------------------

    def base_url(self, ref: ImageRef) -> str:
        """``https://host`` or ``http://host`` (for an insecure registry) for ``ref``."""
        host = ref.api_host
        plain = insecure_matches(host, self.options.insecure_registries)
        scheme = "http" if plain else "https"
        base = self._bases.get((scheme, host))
        if base is None:
            base = self._bases[(scheme, host)] = origin_of(httpx.URL(f"{scheme}://{host}"))
        return base

    def key(self, ref: ImageRef) -> ProbeKey:
        """What identifies one probe: (base URL, repository, digest or tag)."""
        return (self.base_url(ref), ref.repository, ref.manifest_reference)

    async def probe(
        self,
        images: Iterable[ImageRef],
        *,
        on_result: Callable[[ProbeResult], None] | None = None,
    ) -> list[ProbeResult]:
        """Probe every image; one result per input, in input order (duplicates share a probe).

        ``on_result`` is called with each input's result as soon as it is known.
        """
        refs = list(images)
        by_key: dict[ProbeKey, list[int]] = {}
        for i, ref in enumerate(refs):
            by_key.setdefault(self.key(ref), []).append(i)
        results: list[ProbeResult | None] = [None] * len(refs)
        futures = {key: self._start(key, refs[idx[0]]) for key, idx in by_key.items()}
        waiters = {asyncio.ensure_future(_keyed(k, f)): k for k, f in futures.items()}
        for done in asyncio.as_completed(list(waiters)):
            key, shared = await done
            for i in by_key[key]:
                res = attrs.evolve(shared, image=refs[i])
                results[i] = res
                if on_result is not None:
                    on_result(res)
        return [r for r in results if r is not None]

    async def probe_one(self, ref: ImageRef) -> ProbeResult:
        """Probe one image (coalesced with any identical probe in flight)."""
        res = await self._start(self.key(ref), ref)
        return attrs.evolve(res, image=ref)

    # -- scheduling --------------------------------------------------------------------------

    def _start(self, key: ProbeKey, ref: ImageRef) -> asyncio.Future[ProbeResult]:
        fut = self._inflight.get(key)
        if fut is None:
            fut = asyncio.ensure_future(self._run(key, ref))
            self._inflight[key] = fut
        return fut

    async def _run(self, key: ProbeKey, ref: ImageRef) -> ProbeResult:
        base = key[0]
        learned = self._scheduler.learned(base)
        first_wave = self._scheduler.join(base)
        log = ProbeLog()
        try:
            if not first_wave:
                # Not in the first wave: fetch this repository's token while waiting for a
                # registry slot (the token endpoint is another service, with its own limit),
                # so that the slot is held for the manifest round trip only.
                await learned.wait()
                try:
                    await self._tokens_ahead(log, key)
                except ProbeFailure as failure:
                    return result(ref, log, time.monotonic(), failure.cause, failure.reason)
            async with self._scheduler.slot(base):
                return await self._probe_key(key, ref, log)
        finally:
            learned.set()

    async def _tokens_ahead(self, log: ProbeLog, key: ProbeKey) -> None:
        """Fetch ``key``'s tokens for the registry's known challenges (not holding a registry
        slot); raises the token endpoint's failure if it already decided the probe."""
        base, repo, _ = key
        if base in self._down:
            return
        for origin, challenge in list(self._challenges.get(base, {}).items()):
            allow_http = _plain_http(origin)
            if self._tokens.slots_for(challenge.realm, base) is None:
                # The realm is on the registry's own host: its fetch takes a registry
                # slot, as in the probe itself (the politeness limit is per host).
                async with self._scheduler.registry_slot(base):
                    await self._tokens.token(log, challenge, repo, allow_http, base)
            else:
                await self._tokens.token(log, challenge, repo, allow_http, base, urgent=False)
            log.own_tokens.add(self._tokens.key(challenge, repo, allow_http))

    async def _probe_key(self, key: ProbeKey, ref: ImageRef, log: ProbeLog) -> ProbeResult:
        started = time.monotonic()
        log.deadline = started + self.options.timeout
        try:
            async with asyncio.timeout(self.options.timeout):
                decided = await self._decide(log, key)
            cause, reason = decided.cause, decided.reason
        except ProbeFailure as failure:
            cause, reason = failure.cause, failure.reason
        except TimeoutError:
            cause, reason = Cause.TIMEOUT, f"probe timed out after {self.options.timeout:g} s"
            self._mark_down_if_first(key[0], reason, log)
        except Exception as exc:  # never raise for a registry's behaviour: a verdict
            cause, reason = Cause.INTERNAL_ERROR, f"unexpected error: {describe(exc)}"
        return result(ref, log, started, cause, reason)

    def _mark_down_if_first(self, base: str, reason: str, log: ProbeLog) -> None:
        """A registry that never answered in this run and just failed at the transport level
        (or timed out) is down: its other probes get ``unreachable`` at once, citing this."""
        if base not in self._sender.answered and base not in self._down:
            self._down[base] = (reason, tuple(log.steps))

    # -- the probe of one manifest -----------------------------------------------------------

    async def _decide(self, log: ProbeLog, key: ProbeKey) -> Decided:
        base, repo, reference = key
        why = self._base_refused.get(base, "")
        if why == "":
            why = self._base_refused[base] = is_forbidden_address(self._tokens.url(base).host)
        if why:
            raise RefusedFailure(Cause.ADDRESS_REFUSED, f"registry address refused: {why}")
        url = httpx.URL(f"{base}/v2/{repo}/manifests/{reference}")
        # No waiting for a first probe to learn the registry's challenge: the probes of the
        # first wave (at most per_registry) each pay their own anonymous HEAD, in parallel,
        # which is faster than queueing behind one; later ones use the cached challenge.
        if base in self._down:
            reason, steps = self._down[base]
            log.add(steps)
            raise TransportFailure(
                Cause.REGISTRY_DOWN, f"registry unreachable (first probe: {reason})"
            )
        known = self._challenges.setdefault(base, {})
        tokens: dict[str, Token] = {}
        asked: dict[str, tuple[str, ...]] = {}
        token_note = ""
        for origin, challenge in list(known.items()):
            tokens[origin], token_note = await self._tokens.token(
                log, challenge, repo, _plain_http(origin), base
            )
            asked[origin] = challenge.scopes_for(repo)
        refreshed: set[str] = set()
        method = "HEAD"
        while True:
            try:
                resp = await self._sender.exchange(
                    log,
                    "manifest",
                    method,
                    url,
                    {"Accept": _ACCEPT},
                    read_body=method == "GET",
                    tokens={origin: tok.token for origin, tok in tokens.items()},
                )
            except TransportFailure as failure:
                self._mark_down_if_first(base, failure.reason, log)
                raise
            origin = resp.origin
            answer = judge_manifest(
                resp,
                method,
                token_note=token_note if origin in tokens else None,
                known=known.get(origin),
                asked_scopes=asked.get(origin, ()),
                refreshed=origin in refreshed,
            )
            if isinstance(answer, Decided):
                return answer
            if isinstance(answer, RetryWithGet):
                method = "GET"
                continue
            self._learn(base, origin, answer, repo)
            if answer.refresh:
                refreshed.add(origin)
            challenge = answer.challenge
            tokens[origin], token_note = await self._tokens.token(
                log, challenge, repo, _plain_http(origin), base
            )
            asked[origin] = challenge.scopes_for(repo)

    def _learn(self, base: str, origin: str, answer: NeedToken, repo: str) -> None:
        """Cache the challenge ``origin`` sent (for the registry's next probes)."""
        self._challenges.setdefault(base, {})[origin] = answer.challenge.endpoint
        if answer.refresh:
            self._tokens.forget(answer.challenge, repo, _plain_http(origin))
        else:
            self._scheduler.learned(base).set()


def _plain_http(origin: str) -> bool:
    """An http realm is allowed for an origin reached over plain HTTP: only ever from a
    registry the user opted into plain HTTP (https to http redirects are refused)."""
    return origin.startswith("http://")


async def _keyed(key: ProbeKey, fut: asyncio.Future[ProbeResult]) -> tuple[ProbeKey, ProbeResult]:
    return key, await fut
