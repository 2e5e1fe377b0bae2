"""The credentialed pull check: can a pull secret's owner pull each image?

The anonymous prober (:mod:`._prober`) has no way to receive a credential: no parameter, no
attribute, and its :class:`._send.Sender` refuses to send an ``Authorization`` header given by
its caller. This module is the separate, explicit path that does send credentials, built on the
same client (:class:`._send.Sender`: redirects, body caps, retries, evidence; the
:class:`._schedule.Scheduler`'s global and per-registry slots; the same options).

Where credentials go (as Docker does):

* ``Authorization: Basic`` only to the registry whose ``auths`` entry holds them, in the first
  request to it and never on a redirect (every redirect drops ``Authorization``);
* to a Bearer challenge's token realm, only when the realm passes the anonymous prober's realm
  rules (no link-local or metadata address, also after DNS; no credentials in the URL) and is
  https, or plain http on a ``host[:port]`` the caller opted into plain HTTP
  (``insecure_registries``) itself: a registry reached over plain HTTP does not make an http
  realm on another host acceptable for a password;
* the token fetched with them only to the origin that challenged.

The first request to a registry carries no credential: its challenge says which scheme it
wants (and is cached per registry, so later images skip that round trip). Passwords appear in
no result, evidence, reason, exception or ``repr``.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx

from .._auth import (
    ChallengeParseError,
    RealmRefusedError,
    TokenResponseError,
    check_realm,
    is_forbidden_address,
    parse_token_response,
    parse_www_authenticate,
)
from .._errors import InputError
from .._model import Cause, Evidence
from .._reference import ImageRef
from ._evidence import ProbeLog, describe, reason_codes
from ._failures import ProbeFailure, RefusedFailure
from ._network import run_sync
from ._options import ProbeOptions, insecure_matches
from ._pools import PerOriginTransport, client_limits, client_on, ssl_context
from ._prober import MANIFEST_ACCEPT
from ._schedule import Scheduler
from ._send import RegistryResponse, Sender, origin_of
from ._tokens import BearerChallenge
from ._verdict import bearer_challenge

__all__ = [
    "Login",
    "PullCredentials",
    "PullResult",
    "PullStatus",
    "pull_check",
    "pull_check_sync",
    "registry_key",
]

_ACCEPT = ", ".join(MANIFEST_ACCEPT)
_HUB_KEYS = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)


def registry_key(host: str) -> str:
    """The ``auths`` key of ``host`` as Docker matches it: scheme and path dropped
    (``https://index.docker.io/v1/`` -> ``docker.io``), lower case, Docker Hub's spellings
    as ``docker.io``."""
    text = host.strip()
    if "://" in text:
        text = urlsplit(text).netloc or text.split("://", 1)[1]
    text = text.split("/", 1)[0].lower()
    return "docker.io" if text in _HUB_KEYS else text


@attrs.frozen
class Login:
    """A user name and password for one registry (the password is in no ``repr``)."""

    username: str
    password: str = attrs.field(repr=False)

    def basic(self) -> str:
        """The ``Authorization`` value for Basic auth."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@attrs.frozen
class PullCredentials:
    """Logins per registry host (``host[:port]``, as :func:`registry_key` spells it)."""

    logins: Mapping[str, Login] = attrs.field(factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"PullCredentials(hosts={sorted(self.logins)!r})"

    @classmethod
    def from_docker_config(cls, config: object) -> PullCredentials:
        """Logins from a ``.dockerconfigjson`` document (its ``auths``: ``username`` and
        ``password``, or ``auth``, the base64 of ``user:password``). Entries without a usable
        login are skipped. Raises :class:`~kotsrewrite.InputError` when there is no ``auths``
        mapping (naming no secret value)."""
        auths = config.get("auths") if isinstance(config, dict) else None
        if not isinstance(auths, dict):
            raise InputError(
                "the pull secret's .dockerconfigjson has no auths mapping",
                hint="give a kubernetes.io/dockerconfigjson pull secret",
            )
        logins: dict[str, Login] = {}
        for host, entry in auths.items():
            if not isinstance(entry, dict):
                continue
            user, password = entry.get("username"), entry.get("password")
            if not (isinstance(user, str) and isinstance(password, str) and user and password):
                try:
                    raw = base64.b64decode(str(entry.get("auth") or ""), validate=True)
                    user, _, password = raw.decode("utf-8").partition(":")
                except (ValueError, UnicodeDecodeError):
                    continue
            if user and password:
                logins.setdefault(registry_key(str(host)), Login(user, password))
        return cls(logins)

    @classmethod
    def for_license(cls, license_id: str, hosts: Iterable[str]) -> PullCredentials:
        """The proxy's and the Replicated registry's login: ``LICENSE_ID`` and the license."""
        return cls({registry_key(h): Login("LICENSE_ID", license_id) for h in hosts})

    def merged(self, other: PullCredentials) -> PullCredentials:
        """These logins, with ``other``'s for hosts these have not."""
        return PullCredentials({**other.logins, **self.logins})

    def login_for(self, ref: ImageRef) -> Login | None:
        """The login for ``ref``'s registry, if any."""
        return self.logins.get(registry_key(ref.registry))

    def secrets(self) -> tuple[str, ...]:
        """Every password, and every Basic value holding one (to scrub from text that must
        never show one), longest first."""
        found = {login.password for login in self.logins.values()}
        found |= {login.basic().partition(" ")[2] for login in self.logins.values()}
        return tuple(sorted(found, key=len, reverse=True))


class PullStatus(enum.StrEnum):
    """What the pull check proved for one image."""

    PULLABLE = "pullable"
    """The registry served the manifest to these credentials."""
    DENIED = "denied"
    """401/403 with the credentials (the registry is not linked to the proxy, or the license
    has no access), or no credentials for the host."""
    NOT_FOUND = "not_found"
    """404: no such image (or one hidden behind 404)."""
    RATE_LIMITED = "rate_limited"
    """429 after bounded retries."""
    UNREACHABLE = "unreachable"
    """No answer that proves anything (transport, TLS, 5xx, a refused realm or redirect)."""


_PULLABLE = {Cause.ANONYMOUS_PULL, Cause.ANONYMOUS_TOKEN_PULL, Cause.CREDENTIALED_PULL}
_DENIED = {
    Cause.MANIFEST_DENIED,
    Cause.CREDENTIALS_REQUIRED,
    Cause.CREDENTIALS_DENIED,
    Cause.NO_CREDENTIALS,
    Cause.NO_CHALLENGE,
    Cause.MALFORMED_CHALLENGE,
    Cause.TOKEN_REFUSED,
}


def pull_status(cause: Cause) -> PullStatus:
    """The status a cause implies for a pull check."""
    if cause in _PULLABLE:
        return PullStatus.PULLABLE
    if cause in _DENIED:
        return PullStatus.DENIED
    if cause is Cause.MANIFEST_NOT_FOUND:
        return PullStatus.NOT_FOUND
    if cause in (Cause.RATE_LIMITED, Cause.RETRY_AFTER_TOO_LONG):
        return PullStatus.RATE_LIMITED
    return PullStatus.UNREACHABLE


@attrs.frozen
class PullResult:
    """The pull check's answer for one image, with its evidence (``evidence.cause`` says why,
    typed; ``evidence.reason`` says it for people). No password is in it."""

    image: ImageRef
    status: PullStatus
    evidence: Evidence

    @property
    def pullable(self) -> bool:
        """True when the registry served the manifest."""
        return self.status is PullStatus.PULLABLE

    def to_json(self) -> dict[str, object]:
        """JSON form (the report's evidence fields, plus the typed cause)."""
        cause = self.evidence.cause
        return {
            "image": self.image.original,
            "status": str(self.status),
            "cause": str(cause) if cause is not None else None,
            "evidence": self.evidence.to_json(),
        }


class _Decided(Exception):
    def __init__(self, cause: Cause, reason: str) -> None:
        super().__init__(reason)
        self.cause = cause
        self.reason = reason


@attrs.define(eq=False)
class _Scheme:
    """What a registry asked for: Basic, or Bearer at a realm (cached per registry)."""

    basic: bool
    bearer: BearerChallenge | None = None


class PullChecker:
    """One pull-check run: one client, slots, challenge and token caches. The credentials are
    given per call (:meth:`check`), never kept beyond the run."""

    def __init__(
        self,
        options: ProbeOptions | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.options = (options or ProbeOptions()).checked()
        verify = ssl_context(self.options)
        own: PerOriginTransport | None = None
        if transport is None:
            own = transport = PerOriginTransport(verify, client_limits(self.options))
        self._client = client_on(self.options, verify, transport)
        self._sender = Sender(self.options, self._client, own, credentialed=True)
        self._scheduler = Scheduler(self.options)
        self._schemes: dict[str, _Scheme] = {}
        self._tokens: dict[tuple[str, str | None, str, Login], asyncio.Future[str]] = {}
        """(realm, service, repository, login) -> its token (a login, not a user name: two
        licenses share the user name ``LICENSE_ID``)."""
        self._running: set[asyncio.Future[PullResult]] = set()

    async def __aenter__(self) -> PullChecker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        futures: list[asyncio.Future[Any]] = [*self._running, *self._tokens.values()]
        pending = [f for f in futures if not f.done()]
        for fut in pending:
            fut.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await self._client.aclose()

    @property
    def requests(self) -> int:
        """HTTP requests sent so far."""
        return self._sender.requests

    def _base(self, ref: ImageRef) -> str:
        host = ref.api_host
        scheme = "http" if insecure_matches(host, self.options.insecure_registries) else "https"
        return origin_of(httpx.URL(f"{scheme}://{host}"))

    async def check(
        self,
        images: Iterable[ImageRef],
        credentials: PullCredentials,
        *,
        on_result: Callable[[PullResult], None] | None = None,
    ) -> list[PullResult]:
        """One result per input, in input order (duplicates share one check)."""
        refs = list(images)
        scrub = credentials.secrets()
        futures = []
        inflight: dict[tuple[str, str, str], asyncio.Future[PullResult]] = {}
        for ref in refs:
            key = (self._base(ref), ref.repository, ref.manifest_reference)
            fut = inflight.get(key)
            if fut is None:
                login = credentials.login_for(ref)
                fut = inflight[key] = asyncio.ensure_future(self._run(key, ref, login, scrub))
                self._running.add(fut)
                fut.add_done_callback(self._running.discard)
            futures.append(fut)
        out = []
        for ref, fut in zip(refs, futures, strict=True):
            res = attrs.evolve(await fut, image=ref)
            if on_result is not None:
                on_result(res)
            out.append(res)
        return out

    async def _run(
        self,
        key: tuple[str, str, str],
        ref: ImageRef,
        login: Login | None,
        scrub: tuple[str, ...],
    ) -> PullResult:
        base = key[0]
        log = ProbeLog()
        started = time.monotonic()
        async with self._scheduler.slot(base):
            log.deadline = time.monotonic() + self.options.timeout
            try:
                async with asyncio.timeout(self.options.timeout):
                    cause, reason = await self._decide(log, key, login)
            except (_Decided, ProbeFailure) as stop:
                cause, reason = stop.cause, stop.reason
            except TimeoutError:
                cause = Cause.TIMEOUT
                reason = f"pull check timed out after {self.options.timeout:g} s"
            except Exception as exc:  # never raise for a registry's behaviour
                cause, reason = Cause.INTERNAL_ERROR, f"unexpected error: {describe(exc)}"
        evidence = Evidence(
            reason=_scrubbed(reason, scrub),
            steps=tuple(
                attrs.evolve(
                    s,
                    error=_scrubbed(s.error, scrub) if s.error else s.error,
                    challenge=_scrubbed(s.challenge, scrub) if s.challenge else s.challenge,
                )
                for s in log.steps
            ),
            elapsed_ms=(time.monotonic() - started) * 1000.0,
            source="pull-check",
            cause=cause,
        )
        return PullResult(image=ref, status=pull_status(cause), evidence=evidence)

    async def _decide(
        self, log: ProbeLog, key: tuple[str, str, str], login: Login | None
    ) -> tuple[Cause, str]:
        base, repo, reference = key
        why = is_forbidden_address(httpx.URL(base).host)
        if why:
            raise RefusedFailure(Cause.ADDRESS_REFUSED, f"registry address refused: {why}")
        if login is None:
            raise _Decided(Cause.NO_CREDENTIALS, f"no credentials for {base.split('://', 1)[1]}")
        url = httpx.URL(f"{base}/v2/{repo}/manifests/{reference}")
        scheme = self._schemes.get(base)
        headers = {"Accept": _ACCEPT}
        tokens: dict[str, str] = {}
        sent = "without credentials"
        tried: set[str] = set()
        """Schemes already answered in this check (each is tried once)."""
        if scheme is not None and scheme.basic:
            headers["Authorization"] = login.basic()
            sent = "with Basic credentials"
            tried.add("basic")
        elif scheme is not None and scheme.bearer is not None:
            tokens[base] = await self._token(log, scheme.bearer, repo, login, base)
            sent = "with a token fetched with the credentials"
            tried.add("bearer")
        method = "HEAD"
        while True:
            resp = await self._sender.exchange(
                log,
                "manifest",
                method,
                url,
                headers,
                read_body=method == "GET",
                tokens=tokens,
            )
            status = resp.status
            what = f"manifest {method} {status}{reason_codes(resp.error_codes)} {sent}"
            if 200 <= status < 300:
                if resp.headers.get("content-type", "").lower().startswith("text/html"):
                    raise _Decided(Cause.NOT_A_REGISTRY, f"{what}: text/html, not a manifest")
                if sent == "without credentials":
                    return Cause.ANONYMOUS_PULL, what
                return Cause.CREDENTIALED_PULL, what
            if status == 405 and method == "HEAD":
                method = "GET"
                continue
            if status == 401 and resp.origin == base:
                nxt = self._next_scheme(resp, tried)
                if nxt is not None:
                    self._schemes[base] = nxt
                    tokens.clear()
                    headers.pop("Authorization", None)
                    if nxt.basic:
                        headers["Authorization"] = login.basic()
                        sent = "with Basic credentials"
                        tried.add("basic")
                    else:
                        assert nxt.bearer is not None
                        tried.add("bearer")
                        tokens[base] = await self._token(log, nxt.bearer, repo, login, base)
                        sent = "with a token fetched with the credentials"
                    continue
            if status in (401, 403) or (
                status in (400, 404)
                and any(c in ("DENIED", "UNAUTHORIZED") for c in resp.error_codes)
            ):
                if sent == "without credentials":
                    raise _Decided(Cause.CREDENTIALS_REQUIRED, what)
                raise _Decided(Cause.CREDENTIALS_DENIED, f"{what}: the credentials may not pull it")
            if status == 404:
                return Cause.MANIFEST_NOT_FOUND, what
            raise _Decided(Cause.UNEXPECTED_STATUS, f"{what}: unexpected status")

    def _next_scheme(self, resp: RegistryResponse, tried: set[str]) -> _Scheme | None:
        """The scheme a 401 asks for, unless already tried in this check."""
        headers = resp.headers.get_list("www-authenticate")
        try:
            bearer = bearer_challenge(headers)
            schemes = {c.scheme for c in parse_www_authenticate(headers)}
        except ChallengeParseError:
            return None
        if bearer is not None and "bearer" not in tried:
            return _Scheme(basic=False, bearer=bearer)
        if "basic" in schemes and "basic" not in tried:
            return _Scheme(basic=True)
        return None

    async def _token(
        self, log: ProbeLog, challenge: BearerChallenge, repo: str, login: Login, base: str
    ) -> str:
        """A token for ``repo`` from ``challenge``'s realm, asked with ``login`` (single
        flight and cached per realm, service, scope and user for this run)."""
        key = (challenge.realm, challenge.service, repo, login)
        fut = self._tokens.get(key)
        if fut is None or (fut.done() and (fut.cancelled() or fut.exception() is not None)):
            fut = self._tokens[key] = asyncio.ensure_future(
                self._fetch_token(log, challenge, repo, login)
            )
        return await asyncio.shield(fut)

    async def _fetch_token(
        self, log: ProbeLog, challenge: BearerChallenge, repo: str, login: Login
    ) -> str:
        realm = challenge.realm
        try:
            url = httpx.URL(realm)
            hostport = f"{url.host}:{url.port}" if url.port is not None else url.host
            plain_ok = insecure_matches(hostport, self.options.insecure_registries)
            check_realm(realm, allow_http=plain_ok)
            await self._sender.check_resolved(url.host)
        except (RealmRefusedError, httpx.InvalidURL, ValueError) as exc:
            log.failed("token", "GET", realm[:500], 0.0, f"refused: {exc}")
            raise _Decided(
                Cause.REALM_REFUSED, f"token realm refused, no credentials sent: {exc}"
            ) from None
        params: dict[str, str | list[str]] = {"scope": list(challenge.scopes_for(repo))}
        if challenge.service is not None:
            params = {"service": challenge.service, **params}
        url = url.copy_merge_params(params)
        resp = await self._sender.exchange(
            log,
            "token",
            "GET",
            url,
            {"Accept": "application/json", "Authorization": login.basic()},
            read_body=True,
        )
        what = f"token GET {resp.status}{reason_codes(resp.error_codes)}"
        if resp.status in (401, 403):
            raise _Decided(Cause.CREDENTIALS_DENIED, f"{what}: the token service refused them")
        if not 200 <= resp.status < 300:
            raise _Decided(Cause.UNEXPECTED_STATUS, f"{what}: unexpected status")
        if resp.truncated:
            raise _Decided(Cause.BAD_TOKEN_RESPONSE, f"{what}: token response too large")
        try:
            return parse_token_response(resp.body).token
        except TokenResponseError as exc:
            raise _Decided(Cause.BAD_TOKEN_RESPONSE, f"{what}: no usable token: {exc}") from None


def _scrubbed(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<credentials>")
            b64 = base64.b64encode(secret.encode()).decode("ascii")
            text = text.replace(b64, "<credentials>")
    return text


async def pull_check(
    images: Iterable[ImageRef],
    credentials: PullCredentials,
    options: ProbeOptions | None = None,
    *,
    on_result: Callable[[PullResult], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[PullResult]:
    """Ask each image's registry for its manifest with ``credentials`` (see the module doc);
    one :class:`PullResult` per input, in input order. Never raises for a registry's
    behaviour."""
    async with PullChecker(options, transport=transport) as checker:
        return await checker.check(images, credentials, on_result=on_result)


def pull_check_sync(
    images: Iterable[ImageRef],
    credentials: PullCredentials,
    options: ProbeOptions | None = None,
) -> list[PullResult]:
    """Synchronous wrapper of :func:`pull_check` (in a worker thread when called from a
    running event loop)."""
    refs = list(images)
    return run_sync(lambda: pull_check(refs, credentials, options))
