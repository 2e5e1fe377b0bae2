"""The token service: anonymous Bearer tokens, cached, fetched once, in batches, from realms
we agree to contact.

* Cache: tokens per ``(realm, service, scopes, plain-HTTP realm allowed)`` until 5 s before
  they expire (a token fetched from an http realm for a registry the user opted into plain
  HTTP is never handed to an https registry sharing that realm).
* Single flight: concurrent requests for the same token share one fetch.
* Batching: fetches made ahead of a registry slot for one realm and service are sent several
  repositories to a request (:class:`Batcher`); a repository the token does not grant gets a
  request of its own.
* Realm checks: https unless the registry that challenged was reached over opted-in plain
  HTTP, no link-local or metadata address (also after DNS), no credentials in the URL
  (:func:`kotsrewrite._auth.check_realm`).
* Scopes: the repository's pull scope merged with the scopes the challenge named, as
  containerd asks them (the server that asked decides what it needs); a registry's scopes
  not about a repository (ECR Public's ``aws``) are kept for its next repositories.

A failed fetch is a :class:`FailedToken` (a cause, a reason, its steps), shared like a token.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import time
from typing import Any

import attrs
import httpx

from .._auth import (
    RealmRefusedError,
    TokenResponseError,
    check_realm,
    granted_pulls,
    parse_token_response,
)
from .._model import Cause, ProbeStep
from ._evidence import ProbeLog, describe, reason_codes
from ._failures import ProbeFailure, TokenFailure
from ._options import ProbeOptions
from ._schedule import PrioritySlots, Scheduler
from ._send import Sender, origin_of

__all__ = [
    "BearerChallenge",
    "FailedToken",
    "Token",
    "TokenService",
    "pull_scope",
]

#: Longest list of extra scopes taken from a challenge (the rest are ignored).
_MAX_CHALLENGE_SCOPES = 8


def pull_scope(repo: str) -> str:
    """``repository:<repo>:pull``."""
    return f"repository:{repo}:pull"


@attrs.frozen
class BearerChallenge:
    """What a Bearer challenge asks for: its realm, service, and scopes (if it named any)."""

    realm: str
    service: str | None
    scopes: tuple[str, ...] = ()

    def scopes_for(self, repo: str) -> tuple[str, ...]:
        """``repo``'s pull scope, then the challenge's own scopes not already in it."""
        out = [pull_scope(repo)]
        for scope in self.scopes[:_MAX_CHALLENGE_SCOPES]:
            if scope not in out:
                out.append(scope)
        return tuple(out)

    @property
    def endpoint(self) -> BearerChallenge:
        """What is cached per registry for its next repositories: realm, service and the
        scopes not about a repository (ECR Public names ``aws``); a ``repository:`` scope is
        the asking repository's own (the next one asks for its own, or is challenged again)."""
        kept = tuple(s for s in self.scopes if not s.startswith("repository:"))
        return self if kept == self.scopes else BearerChallenge(self.realm, self.service, kept)


@attrs.define
class Token:
    """An anonymous token and the steps that fetched it."""

    token: str = attrs.field(repr=False)
    expires_at: float
    steps: tuple[ProbeStep, ...]


@attrs.define
class FailedToken:
    """A token fetch that gave no usable token."""

    cause: Cause
    reason: str
    steps: tuple[ProbeStep, ...]


TokenKey = tuple[str, str | None, tuple[str, ...], bool]
"""(realm, service, scopes, plain-HTTP realm allowed)."""
_Fetch = asyncio.Future[Token | FailedToken]


@attrs.define(eq=False)
class Batcher:
    """Token fetches made ahead of a registry slot for one ``realm`` and ``service``, sent
    several repositories to a request (:meth:`TokenService._batch_loop`)."""

    realm: str
    service: str | None
    allow_http: bool
    slots: PrioritySlots
    pending: collections.OrderedDict[str, _Fetch] = attrs.Factory(collections.OrderedDict)
    alone: set[str] = attrs.Factory(set)
    """Repositories a batch did not grant: fetched one each, as without batching."""
    prior: dict[str, tuple[ProbeStep, ...]] = attrs.Factory(dict)
    """The steps of the batch that did not grant a repository (kept as its evidence)."""
    grants: bool | None = None
    """Whether batches help with this service (None: not known yet). Learnt from the first
    wave's own token (fetched alone, inside a registry slot): ``False`` when it is opaque
    (not a JWT naming what it grants), ``True`` when it grants its repository; else from
    the first batch, sent alone: ``False`` if it granted nothing (a service that refuses
    anonymous tokens or grants nothing here), and the rest go one each."""
    singles: set[_Fetch] = attrs.Factory(set)
    """Fetches of one repository in flight while :attr:`grants` is unknown."""
    first: asyncio.Event | None = None
    loop: asyncio.Future[None] | None = None


def _learn_batching(b: Batcher, repo: str, fut: _Fetch) -> None:
    """What a token fetched alone says of batching at its service (:attr:`Batcher.grants`)."""
    b.singles.discard(fut)
    if b.grants is not None or fut.cancelled():
        return
    out = fut.result()
    if isinstance(out, Token):
        granted = granted_pulls(out.token)
        if granted is None:
            b.grants = False
        elif repo in granted:
            b.grants = True


class TokenService:
    """Anonymous tokens for one prober run (see the module's docstring)."""

    def __init__(self, options: ProbeOptions, sender: Sender, scheduler: Scheduler) -> None:
        self._options = options
        self._sender = sender
        self._scheduler = scheduler
        self._tokens: dict[TokenKey, Token] = {}
        self._tasks: dict[TokenKey, _Fetch] = {}
        self._batchers: dict[tuple[str, str | None, bool], Batcher] = {}
        """(realm, service, plain HTTP allowed) -> its batcher (an http realm is allowed only
        for a registry reached over opted-in plain HTTP: batches never mix the two)."""
        self._batch_tasks: set[asyncio.Future[None]] = set()
        self._urls: dict[str, httpx.URL] = {}

    def in_flight(self) -> list[asyncio.Future[Any]]:
        """Fetches and batch loops still running (cancelled when the prober closes)."""
        futures: list[asyncio.Future[Any]] = [*self._tasks.values()]
        return [*futures, *self._batch_tasks]

    def url(self, url: str) -> httpx.URL:
        """``httpx.URL(url)``, parsed once per run (realms and base URLs are few)."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) > 1000:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    def slots_for(self, realm: str, base: str) -> PrioritySlots | None:
        """The limit on token requests to ``realm``'s host: ``None`` when that host is the
        registry's own (whose slot the caller holds); else per token service host (Docker
        Hub's auth.docker.io), ``per_registry`` at once like any registry."""
        try:
            realm_origin = origin_of(self.url(realm))
        except (httpx.InvalidURL, ValueError):
            return None  # refused by the fetch itself, with the reason in the evidence
        if realm_origin == base:
            return None
        return self._scheduler.token_service(realm_origin)

    def forget(self, challenge: BearerChallenge, repo: str, allow_http: bool) -> None:
        """Drop ``repo``'s cached token for ``challenge`` (expired, revoked, or not enough)."""
        key = (challenge.realm, challenge.service, challenge.scopes_for(repo), allow_http)
        self._tokens.pop(key, None)

    def key(self, challenge: BearerChallenge, repo: str, allow_http: bool) -> TokenKey:
        """The cache key of ``repo``'s token for ``challenge``."""
        return (challenge.realm, challenge.service, challenge.scopes_for(repo), allow_http)

    async def token(
        self,
        log: ProbeLog,
        challenge: BearerChallenge,
        repo: str,
        allow_http: bool,
        base: str,
        *,
        urgent: bool = True,
    ) -> tuple[Token, str]:
        """``repo``'s token for ``challenge`` (cached, shared with a fetch in flight, or
        fetched), and a note for the reason (`` (cached)``). Raises :class:`TokenFailure`.

        ``urgent``: the caller holds a registry slot, so its fetch goes ahead of the fetches
        made while waiting for one."""
        tkey = self.key(challenge, repo, allow_http)
        tok = self._tokens.get(tkey)
        if tok is not None and tok.expires_at - 5.0 > time.monotonic():
            return tok, "" if tkey in log.own_tokens else " (cached)"
        fut = self._tasks.get(tkey)
        shared = fut is not None
        if fut is None:
            realm, service, scopes = challenge.realm, challenge.service, tkey[2]
            slots = self.slots_for(realm, base)
            b = None
            if slots is not None and self._options.token_batch > 1 and len(scopes) == 1:
                bkey = (realm, service, allow_http)
                b = self._batchers.get(bkey)
                if b is None:
                    b = self._batchers[bkey] = Batcher(realm, service, allow_http, slots)
            if b is not None and not urgent:
                fut = self._batched(b, repo)
            else:
                fut = asyncio.ensure_future(
                    self._fetch(realm, service, scopes, "token", allow_http, slots, urgent)
                )
                if b is not None and b.grants is None:
                    b.singles.add(fut)
                    fut.add_done_callback(functools.partial(_learn_batching, b, repo))
            self._tasks[tkey] = fut
            fut.add_done_callback(functools.partial(self._done, tkey))
        outcome = await asyncio.shield(fut)
        if shared:
            log.add(attrs.evolve(s, step="token (shared)") for s in outcome.steps)
        else:
            log.add(outcome.steps)
        if isinstance(outcome, FailedToken):
            raise TokenFailure(outcome.cause, outcome.reason)
        return outcome, ""

    def _done(self, tkey: TokenKey, fut: _Fetch) -> None:
        """A token fetch ended: cache its token in the same step as the fetch stops being
        in flight, so no probe in between finds neither and asks again."""
        self._tasks.pop(tkey, None)
        if not fut.cancelled():
            out = fut.result()
            if isinstance(out, Token):
                self._tokens[tkey] = out

    # -- batches -----------------------------------------------------------------------------

    def _batched(self, b: Batcher, repo: str) -> _Fetch:
        """``repo``'s token, fetched with those of other repositories waiting for the same
        token service (see :class:`Batcher`)."""
        fut: _Fetch = asyncio.get_running_loop().create_future()
        b.pending[repo] = fut
        self._batch_running(b)
        return fut

    def _batch_running(self, b: Batcher) -> None:
        if b.loop is None and b.pending:
            b.loop = asyncio.ensure_future(self._batch_loop(b))
            self._batch_tasks.add(b.loop)
            b.loop.add_done_callback(self._batch_tasks.discard)

    async def _batch_loop(self, b: Batcher) -> None:
        """Send ``b``'s waiting fetches as token slots free up: up to ``token_batch``
        repositories a request, or one (a repository a batch did not grant, or a service
        whose first batch granted nothing)."""
        try:
            while b.pending:
                if b.first is not None:
                    await b.first.wait()  # the first batch tells whether batches help here
                    continue
                if b.grants is None and b.singles:
                    # so may the first wave's own tokens, already on their way
                    await asyncio.wait(list(b.singles), return_when=asyncio.FIRST_COMPLETED)
                    continue
                await b.slots.acquire(False)
                if not b.pending:
                    b.slots.release()
                    break
                repo = next(iter(b.pending))
                repos = [repo]
                if repo not in b.alone and b.grants is not False:
                    for other in b.pending:
                        if len(repos) == self._options.token_batch:
                            break
                        if other != repo and other not in b.alone:
                            repos.append(other)
                futs = [b.pending.pop(r) for r in repos]
                if len(repos) > 1 and b.grants is None:
                    b.first = asyncio.Event()
                task = asyncio.ensure_future(self._send_batch(b, repos, futs))
                self._batch_tasks.add(task)
                task.add_done_callback(self._batch_tasks.discard)
        finally:
            b.loop = None

    async def _send_batch(self, b: Batcher, repos: list[str], futs: list[_Fetch]) -> None:
        """One token request for ``repos`` (holding a slot of ``b``); each repository the
        token grants gets it, the others go back to the front of the queue, alone."""
        try:
            scopes = tuple(pull_scope(r) for r in repos)
            step = "token" if len(repos) == 1 else f"token (batch of {len(repos)})"
            out = await self._fetch(b.realm, b.service, scopes, step, b.allow_http, None, False)
            if len(repos) == 1:
                prior = b.prior.pop(repos[0], ())
                if prior:
                    out.steps = prior + out.steps
                if not futs[0].done():  # (cancelled: the prober is closing)
                    futs[0].set_result(out)
                return
            granted: frozenset[str] = (
                granted_pulls(out.token) if isinstance(out, Token) else None
            ) or frozenset()
            if b.grants is None:
                b.grants = bool(granted & set(repos))
            for repo, fut in reversed(list(zip(repos, futs, strict=True))):
                if fut.done():
                    continue
                if repo in granted:
                    fut.set_result(out)
                else:
                    b.alone.add(repo)
                    b.prior[repo] = out.steps
                    b.pending[repo] = fut
                    b.pending.move_to_end(repo, last=False)
        except BaseException:
            for fut in futs:
                fut.cancel()
            raise
        finally:
            b.slots.release()
            if len(repos) > 1 and b.first is not None:
                b.first.set()
                b.first = None
            self._batch_running(b)

    # -- one fetch ---------------------------------------------------------------------------

    async def _fetch(
        self,
        realm: str,
        service: str | None,
        scopes: tuple[str, ...],
        step: str,
        allow_http: bool,
        slots: PrioritySlots | None,
        urgent: bool,
    ) -> Token | FailedToken:
        if slots is not None:
            await slots.acquire(urgent)
            try:
                return await self._fetch(realm, service, scopes, step, allow_http, None, urgent)
            finally:
                slots.release()
        log = ProbeLog(deadline=time.monotonic() + self._options.timeout)
        out: Token | FailedToken
        try:
            async with asyncio.timeout(self._options.timeout):
                out = await self._fetch_steps(log, realm, service, scopes, step, allow_http)
        except TimeoutError:
            out = FailedToken(
                Cause.TIMEOUT,
                f"token endpoint: timed out after {self._options.timeout:g} s",
                (),
            )
        except Exception as exc:  # never raise for a registry's behaviour: a verdict
            out = FailedToken(Cause.INTERNAL_ERROR, f"token endpoint: {describe(exc)}", ())
        out.steps = tuple(log.steps)
        return out

    async def _fetch_steps(
        self,
        log: ProbeLog,
        realm: str,
        service: str | None,
        scopes: tuple[str, ...],
        step: str,
        allow_http: bool,
    ) -> Token | FailedToken:
        try:
            check_realm(realm, allow_http=allow_http)
            url = self.url(realm)
            await self._sender.check_resolved(url.host)
        except (RealmRefusedError, httpx.InvalidURL) as exc:
            log.failed("token", "GET", realm[:500], 0.0, f"refused: {exc}")
            return FailedToken(Cause.REALM_REFUSED, f"token realm refused: {exc}", ())
        scope: str | list[str] = scopes[0] if len(scopes) == 1 else list(scopes)
        params: dict[str, str | list[str]] = {"scope": scope}
        if service is not None:
            params = {"service": service, **params}
        if url.query or url.fragment:
            url = url.copy_merge_params(params)
        else:
            url = httpx.URL(f"{url}?{httpx.QueryParams(params)}")
        try:
            resp = await self._sender.exchange(
                log, step, "GET", url, {"Accept": "application/json"}, read_body=True
            )
        except ProbeFailure as failure:
            return FailedToken(failure.cause, f"token endpoint: {failure.reason}", ())
        what = f"token GET {resp.status}"
        if resp.status in (401, 403):
            return FailedToken(
                Cause.TOKEN_REFUSED,
                f"{what}{reason_codes(resp.error_codes)}: token endpoint refused an anonymous"
                " token",
                (),
            )
        if not 200 <= resp.status < 300:
            return FailedToken(
                Cause.UNEXPECTED_STATUS,
                f"{what}: unexpected status{reason_codes(resp.error_codes)}",
                (),
            )
        if resp.truncated:
            return FailedToken(
                Cause.BAD_TOKEN_RESPONSE,
                f"{what}: token response larger than {self._options.max_body} bytes",
                (),
            )
        try:
            parsed = parse_token_response(resp.body)
        except TokenResponseError as exc:
            return FailedToken(Cause.BAD_TOKEN_RESPONSE, f"{what}: no usable token: {exc}", ())
        return Token(parsed.token, time.monotonic() + parsed.expires_in, ())
