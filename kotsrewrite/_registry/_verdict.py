"""What a manifest answer proves: a pure function, no I/O (:func:`judge_manifest`).

Verdicts (SPEC 5) and the decisions taken where the spec leaves room:

* ``public``: the manifest answered 2xx anonymously (with no token, or with an anonymous
  token). Nothing else proves public (a 2xx ``text/html`` page, e.g. a captive portal, is
  ``unreachable``).
* ``private``: 401/403 on the manifest after anonymous auth; a Basic (or any non-Bearer)
  challenge; ``DENIED``/``UNAUTHORIZED`` error codes in a 400/404 body; a 401 whose challenge
  cannot be parsed or has no realm (the registry demands credentials and offers no
  anonymous path; docker would fail the same way).
* ``not_found``: 404 on the manifest (some registries hide private repositories behind 404).
* ``unreachable``: any other status (400, 3xx without Location...): it proves nothing.

The answer may also ask for more: the same request as ``GET`` (a 405 to ``HEAD``), or a token
(a Bearer challenge, or a fresh token when ours expired, the realm moved, or the challenge
names a scope our token was not asked for; once per origin and probe).
"""

from __future__ import annotations

import attrs

from .._auth import ChallengeParseError, parse_www_authenticate
from .._model import Cause
from ._evidence import reason_codes
from ._send import RegistryResponse
from ._tokens import BearerChallenge

__all__ = ["Decided", "NeedToken", "RetryWithGet", "bearer_challenge", "judge_manifest"]


@attrs.frozen
class Decided:
    """The answer proves this: the cause (which implies the verdict) and a reason."""

    cause: Cause
    reason: str


@attrs.frozen
class RetryWithGet:
    """``HEAD`` answered 405: send the same request as ``GET``."""


@attrs.frozen
class NeedToken:
    """Fetch a token for ``challenge`` (``refresh``: drop the cached one first) and retry."""

    challenge: BearerChallenge
    refresh: bool


def bearer_challenge(headers: list[str]) -> BearerChallenge | None:
    """The first Bearer challenge with a realm in ``WWW-Authenticate`` headers (raises
    :class:`ChallengeParseError` when they do not parse)."""
    for c in parse_www_authenticate(headers):
        if c.scheme == "bearer" and c.params.get("realm"):
            scope = c.params.get("scope")
            return BearerChallenge(
                c.params["realm"], c.params.get("service"), tuple(scope.split()) if scope else ()
            )
    return None


def judge_manifest(
    resp: RegistryResponse,
    method: str,
    *,
    token_note: str | None,
    known: BearerChallenge | None,
    asked_scopes: tuple[str, ...],
    refreshed: bool,
) -> Decided | RetryWithGet | NeedToken:
    """What ``resp`` (to a manifest ``method``) proves, or what to do next.

    ``token_note``: ``None`` when no token went to ``resp``'s origin, else the note for the
    reason (`` (cached)`` or empty); ``known``: the challenge cached for that origin;
    ``asked_scopes``: the scopes the token sent was asked for; ``refreshed``: a token was
    already refreshed for that origin in this probe."""
    status = resp.status
    auth_note = f" with anonymous token{token_note}" if token_note is not None else " anonymously"
    what = f"manifest {method} {status}"
    codes = reason_codes(resp.error_codes)
    if 200 <= status < 300:
        ctype = resp.headers.get("content-type", "").lower()
        if ctype.startswith("text/html"):
            # A captive portal or a web page, not a registry's manifest.
            return Decided(Cause.NOT_A_REGISTRY, f"{what} with text/html: not a registry answer")
        cause = Cause.ANONYMOUS_PULL if token_note is None else Cause.ANONYMOUS_TOKEN_PULL
        return Decided(cause, f"{what}{auth_note}")
    if status == 405 and method == "HEAD":
        return RetryWithGet()
    if status in (400, 404) and any(c in ("DENIED", "UNAUTHORIZED") for c in resp.error_codes):
        return Decided(Cause.MANIFEST_DENIED, f"{what}{codes}{auth_note}")
    if status == 401:
        return _judge_401(resp, what, codes, auth_note, token_note, known, asked_scopes, refreshed)
    if status == 403:
        return Decided(Cause.MANIFEST_DENIED, f"{what}{codes}{auth_note}")
    if status == 404:
        return Decided(Cause.MANIFEST_NOT_FOUND, f"{what}{codes}{auth_note}")
    return Decided(Cause.UNEXPECTED_STATUS, f"{what}: unexpected status{codes}")


def _judge_401(
    resp: RegistryResponse,
    what: str,
    codes: str,
    auth_note: str,
    token_note: str | None,
    known: BearerChallenge | None,
    asked_scopes: tuple[str, ...],
    refreshed: bool,
) -> Decided | NeedToken:
    if resp.challenge is None:
        return Decided(Cause.NO_CHALLENGE, f"{what}{codes} with no challenge")
    headers = resp.headers.get_list("www-authenticate")
    try:
        challenges = parse_www_authenticate(headers)
        found = bearer_challenge(headers)
    except ChallengeParseError as exc:
        return Decided(
            Cause.MALFORMED_CHALLENGE,
            f"{what} with a malformed challenge ({exc}): no anonymous access offered",
        )
    if token_note is None:
        if found is not None:
            return NeedToken(found, refresh=False)
        if any(c.scheme == "bearer" for c in challenges):
            return Decided(
                Cause.MALFORMED_CHALLENGE,
                f"{what} with a malformed challenge (Bearer without a realm):"
                " no anonymous access offered",
            )
        schemes = ", ".join(sorted({c.scheme.capitalize() for c in challenges}))
        return Decided(
            Cause.CREDENTIALS_REQUIRED,
            f"{what}{codes}: {schemes} challenge, registry requires credentials",
        )
    bearer = next((c for c in challenges if c.scheme == "bearer" and c.params.get("realm")), None)
    err = bearer.params.get("error") if bearer is not None else None
    if (
        found is not None
        and not refreshed
        and (
            err == "invalid_token"
            or found.endpoint != known
            or not set(found.scopes) <= set(asked_scopes)
        )
    ):
        # Expired/revoked token, a moved realm, or a scope we did not ask for: a fresh
        # token, once.
        return NeedToken(found, refresh=True)
    return Decided(Cause.MANIFEST_DENIED, f"{what}{reason_codes(resp.error_codes, err)}{auth_note}")
