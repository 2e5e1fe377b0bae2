"""Registry authentication pieces used by the anonymous prober.

* :func:`parse_www_authenticate`: a small, strict RFC 7235 parser for ``WWW-Authenticate``
  (several challenges, quoted strings with escapes and commas, ``token68``); it raises only
  :class:`ChallengeParseError`.
* :func:`parse_token_response`: reads a token endpoint's JSON (``token`` or ``access_token``,
  ``expires_in`` defaulting to 60 s, as the Docker token spec says); raises only
  :class:`TokenResponseError`.
* :func:`check_realm`: the safety rules for a Bearer realm (https unless the registry itself was
  reached over opted-in plain HTTP; no link-local or cloud metadata addresses; no credentials in
  the URL); raises only :class:`RealmRefusedError`.

Nothing here does I/O or reads credentials from anywhere.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import socket
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import attrs

__all__ = [
    "DEFAULT_TOKEN_LIFETIME",
    "Challenge",
    "ChallengeParseError",
    "RealmRefusedError",
    "TokenResponse",
    "TokenResponseError",
    "check_realm",
    "granted_pulls",
    "is_forbidden_address",
    "parse_token_response",
    "parse_www_authenticate",
]

#: Lifetime assumed when a token response has no (or a too small) ``expires_in``.
DEFAULT_TOKEN_LIFETIME = 60.0
_MAX_HEADER = 16 * 1024
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68 = frozenset("-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WS = " \t"


class ChallengeParseError(ValueError):
    """A ``WWW-Authenticate`` value that does not follow RFC 7235."""


class TokenResponseError(ValueError):
    """A token endpoint answer that carries no usable token."""


class RealmRefusedError(ValueError):
    """A Bearer realm we refuse to contact (SSRF protection)."""


@attrs.frozen
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header."""

    scheme: str
    """The auth scheme, lowercased (``bearer``, ``basic``)."""
    params: Mapping[str, str] = attrs.field(factory=dict)
    """Auth parameters; names lowercased, values unquoted."""
    token68: str | None = None

    @property
    def realm(self) -> str | None:
        """The ``realm`` parameter, if any."""
        return self.params.get("realm")


def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in _WS:
        i += 1
    return i


def _read_token(s: str, i: int) -> tuple[str, int]:
    j = i
    while j < len(s) and s[j] in _TCHAR:
        j += 1
    return s[i:j], j


def _read_quoted(s: str, i: int) -> tuple[str, int]:
    # s[i] == '"'
    out: list[str] = []
    j = i + 1
    while j < len(s):
        c = s[j]
        if c == '"':
            return "".join(out), j + 1
        if c == "\\":
            if j + 1 >= len(s):
                break
            out.append(s[j + 1])
            j += 2
            continue
        if c in "\r\n\x00":
            raise ChallengeParseError(f"control character in quoted string at {j}")
        out.append(c)
        j += 1
    raise ChallengeParseError("unterminated quoted string")


def _try_param(s: str, i: int) -> tuple[str, str, int] | None:
    """Parse ``name BWS = BWS (token / quoted-string)`` at ``i``, or return None."""
    name, j = _read_token(s, i)
    if not name:
        return None
    j = _skip_ws(s, j)
    if j >= len(s) or s[j] != "=":
        return None
    j = _skip_ws(s, j + 1)
    if j < len(s) and s[j] == '"':
        value, j = _read_quoted(s, j)
    else:
        value, j = _read_token(s, j)
        if not value:
            return None
    k = _skip_ws(s, j)
    if k < len(s) and s[k] != ",":
        return None
    return name.lower(), value, k


def _try_token68(s: str, i: int) -> tuple[str, int] | None:
    j = i
    while j < len(s) and s[j] in _TOKEN68:
        j += 1
    if j == i:
        return None
    while j < len(s) and s[j] == "=":
        j += 1
    k = _skip_ws(s, j)
    if k < len(s) and s[k] != ",":
        return None
    return s[i:j], k


def _skip_list_sep(s: str, i: int) -> int:
    while True:
        i = _skip_ws(s, i)
        if i < len(s) and s[i] == ",":
            i += 1
            continue
        return i


def parse_www_authenticate(headers: str | Iterable[str]) -> tuple[Challenge, ...]:
    """Parse one or several ``WWW-Authenticate`` header values into challenges.

    Raises :class:`ChallengeParseError` (and nothing else) for anything malformed: a missing
    scheme, an unterminated quoted string, a duplicate parameter, garbage between parameters.
    """
    values = [headers] if isinstance(headers, str) else list(headers)
    out: list[Challenge] = []
    for value in values:
        if not isinstance(value, str):
            raise ChallengeParseError("header value is not text")
        if len(value) > _MAX_HEADER:
            raise ChallengeParseError("header too long")
        out.extend(_parse_one(value))
    if not out:
        raise ChallengeParseError("no challenge")
    return tuple(out)


def _parse_one(s: str) -> list[Challenge]:
    out: list[Challenge] = []
    i = _skip_list_sep(s, 0)
    while i < len(s):
        scheme, j = _read_token(s, i)
        if not scheme:
            raise ChallengeParseError(f"expected an auth scheme at {i}")
        params: dict[str, str] = {}
        token68: str | None = None
        if j < len(s) and s[j] not in _WS + ",":
            raise ChallengeParseError(f"unexpected {s[j]!r} after scheme at {j}")
        k = _skip_ws(s, j)
        if k < len(s) and s[k] != "," and k > j:
            # Parameters or token68 follow the scheme.
            first = _try_param(s, k)
            if first is None:
                t68 = _try_token68(s, k)
                if t68 is None:
                    raise ChallengeParseError(f"malformed challenge parameters at {k}")
                token68, k = t68
            else:
                name, value, k = first
                params[name] = value
                while True:
                    # k is at "," or end; see whether another parameter follows.
                    if k >= len(s):
                        break
                    nxt = _skip_list_sep(s, k)
                    if nxt >= len(s):
                        k = nxt
                        break
                    param = _try_param(s, nxt)
                    if param is None:
                        k = nxt
                        break  # a new challenge starts here
                    name, value, k = param
                    if name in params:
                        raise ChallengeParseError(f"duplicate parameter {name!r}")
                    params[name] = value
        out.append(Challenge(scheme=scheme.lower(), params=params, token68=token68))
        i = _skip_list_sep(s, k)
    return out


# --------------------------------------------------------------------------------------------
# Token responses


@attrs.frozen
class TokenResponse:
    """A usable anonymous token."""

    token: str = attrs.field(repr=False)
    expires_in: float


def parse_token_response(body: bytes) -> TokenResponse:
    """Read a token endpoint's JSON body.

    ``token`` wins over ``access_token`` (Docker token spec); ``expires_in`` below 60 s or
    absent means 60 s. Raises :class:`TokenResponseError` only.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise TokenResponseError(f"token response is not JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise TokenResponseError("token response is not a JSON object")
    token = data.get("token")
    if not isinstance(token, str) or not token:
        token = data.get("access_token")
    if not isinstance(token, str) or not token:
        raise TokenResponseError("token response has no token or access_token")
    if len(token) > 32 * 1024 or not token.isascii() or not token.isprintable() or " " in token:
        raise TokenResponseError("token is not a printable ASCII string")
    expires = data.get("expires_in")
    lifetime = DEFAULT_TOKEN_LIFETIME
    if (
        isinstance(expires, int | float)
        and not isinstance(expires, bool)
        and expires == expires  # not NaN
        and expires > DEFAULT_TOKEN_LIFETIME
    ):
        lifetime = min(float(expires), 24 * 3600.0)
    return TokenResponse(token=token, expires_in=lifetime)


# --------------------------------------------------------------------------------------------
# Realm safety

_FORBIDDEN_NETS = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS IMDS over IPv6
    ipaddress.ip_network("0.0.0.0/32"),
    ipaddress.ip_network("::/128"),
)
_INET_ATON_CHARS = frozenset("0123456789abcdefx.")
_FORBIDDEN_NAMES = frozenset(
    {"metadata.google.internal", "metadata", "metadata.goog", "instance-data", "instance-data.ec2"}
)


def is_forbidden_address(host: str) -> str | None:
    """Why ``host`` (a name or an IP literal) must never be contacted, or ``None``."""
    name = host.strip("[]").rstrip(".").lower()
    if name in _FORBIDDEN_NAMES:
        return f"{name} is a cloud metadata host"
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address
    try:
        addr = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        # Legacy IPv4 spellings the resolver accepts (2852039166, 0xa9fea9fe, 0251.0376.0.1,
        # 169.254.43518): inet_aton reads them as getaddrinfo would, without any lookup.
        if not name or not set(name) <= _INET_ATON_CHARS:
            return None
        try:
            addr = ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    for net in _FORBIDDEN_NETS:
        if addr in net:
            return f"{addr} is a link-local or metadata address ({net})"
    return None


def check_realm(realm: str, *, allow_http: bool) -> str:
    """Validate a Bearer realm and return it.

    ``allow_http`` is true only when the registry that challenged was reached over plain
    HTTP, which the prober only does for registries the user opted into it (and hosts they
    redirect to: https to http is refused). Raises :class:`RealmRefusedError` with the reason.
    """
    try:
        parts = urlsplit(realm)
        host = parts.hostname
        _ = parts.port
    except ValueError as exc:
        raise RealmRefusedError(f"realm is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise RealmRefusedError(f"realm scheme {scheme or '(none)'!r} is not https")
    if scheme == "http" and not allow_http:
        raise RealmRefusedError(
            "realm is plain http but the registry was reached over https"
            " (a token over http could be read or forged on the way)"
        )
    if not host:
        raise RealmRefusedError("realm has no host")
    if parts.username is not None or parts.password is not None:
        raise RealmRefusedError("realm URL carries credentials")
    why = is_forbidden_address(host)
    if why:
        raise RealmRefusedError(why)
    return realm


def granted_pulls(token: str) -> frozenset[str] | None:
    """Repositories a Docker-style JWT's ``access`` claim grants ``pull`` on; ``None`` when
    the token is not such a JWT (the token spec calls tokens opaque: this is only a hint).

    The prober asks one token for several repositories at once and uses it for those it
    names here; any other repository gets a token of its own, as if never batched, so a
    server that grants only part of a request, or ignores extra scopes, changes nothing.
    """
    parts = token.split(".")
    if len(parts) != 3 or len(parts[1]) > 64 * 1024:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        return None
    access = claims.get("access") if isinstance(claims, dict) else None
    if not isinstance(access, list):
        return None
    names = set()
    for entry in access:
        if (
            isinstance(entry, dict)
            and entry.get("type") == "repository"
            and isinstance(entry.get("name"), str)
            and isinstance(entry.get("actions"), list)
            and ("pull" in entry["actions"] or "*" in entry["actions"])
        ):
            names.add(entry["name"])
    return frozenset(names)
