"""One exchange with a registry or token service: the one place requests are sent.

:meth:`Sender.exchange` sends a request and follows redirects by hand (at most
``max_redirects``, never https to http, never to a refused address, the ``Authorization``
header dropped and a token added only for the origin it belongs to), reads bodies through a
stream capped at ``max_body`` (always drained, so connections are reused), and retries
transport errors, 5xx and 429 with backoff (honouring ``Retry-After``). Every attempt is a
step of the probe's evidence. What it cannot turn into an answer it raises as a
:class:`._failures.ProbeFailure`.

Requests go to the origin's httpcore pool directly when the prober owns the network (the
client's per-request machinery, i.e. header merging, cookie jar, auth and redirect flows,
costs about a quarter of the CPU per request and does nothing here), to httpx's transport for
a proxied origin, and through the client when a caller supplied the client or transport.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import logging
import random
import socket
import ssl
import time
from collections.abc import AsyncIterable, Mapping
from datetime import UTC, datetime

import attrs
import httpcore
import httpx

from .._auth import RealmRefusedError, is_forbidden_address
from .._model import Cause, ProbeCause
from ._evidence import MAX_CHALLENGE_EVIDENCE, ProbeLog, describe, reason_codes
from ._failures import RefusedFailure, StatusFailure, TransportFailure
from ._options import ProbeOptions
from ._pools import CORE_ERRORS, USER_AGENT, CoreByteStream, PerOriginTransport, httpx_error_for

__all__ = ["REDIRECT_STATUSES", "RegistryResponse", "Sender", "origin_of", "retry_after"]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Each completed request as a debug record (method, URL, status, elapsed; never a token).
_log = logging.getLogger("kotsrewrite.probe")
_CLIENT_HEADERS: tuple[tuple[str, str], ...] = (
    # What build_client's AsyncClient sends by default, in its order.
    ("Accept", "*/*"),
    ("Accept-Encoding", "identity"),
    ("Connection", "keep-alive"),
    ("User-Agent", USER_AGENT),
)
#: OpenSSL's reasons when a TLS client reads a plain HTTP answer instead of a ServerHello.
_PLAIN_HTTP_TLS_REASONS = ("WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE")


@attrs.define
class RegistryResponse:
    """What one exchange answered, with the body kept only where it is evidence."""

    method: str
    url: str
    status: int
    headers: httpx.Headers
    body: bytes
    truncated: bool
    """The body was larger than ``max_body`` (:attr:`body` holds its start)."""
    error_codes: tuple[str, ...]
    """Registry error codes from a JSON body (``UNAUTHORIZED``, ``DENIED``...)."""
    challenge: str | None
    """The ``WWW-Authenticate`` headers, joined (cut at 1,000 characters), if any."""
    origin: str
    """``scheme://host[:port]`` of :attr:`url`."""


def origin_of(url: httpx.URL) -> str:
    """``scheme://host[:port]`` (IPv6 hosts in brackets)."""
    port = f":{url.port}" if url.port is not None else ""
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}{port}"


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or ``RateLimit-Reset``."""
    value = headers.get("retry-after")
    if value is not None:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    reset = headers.get("ratelimit-reset")
    if reset is not None:
        try:
            seconds = float(reset.strip())
        except ValueError:
            return None
        if seconds > 1e9:  # an epoch time
            seconds -= time.time()
        return max(0.0, seconds)
    return None


def _error_codes(body: bytes) -> tuple[str, ...]:
    if not body:
        return ()
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ()
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return ()
    codes = [
        e["code"] for e in errors[:20] if isinstance(e, dict) and isinstance(e.get("code"), str)
    ]
    return tuple(c[:64] for c in codes)


def _response(
    method: str,
    url: httpx.URL,
    status: int,
    headers: httpx.Headers,
    chunks: list[bytes],
    truncated: bool,
    read_body: bool,
    cap: int,
) -> RegistryResponse:
    body = b"".join(chunks)[:cap] if read_body or status >= 400 else b""
    codes = () if truncated else _error_codes(body)
    challenge = ", ".join(headers.get_list("www-authenticate")) or None
    if challenge is not None and len(challenge) > MAX_CHALLENGE_EVIDENCE:
        challenge = challenge[:MAX_CHALLENGE_EVIDENCE] + "..."
    return RegistryResponse(
        method=method,
        url=str(url),
        status=status,
        headers=headers,
        body=body,
        truncated=truncated,
        error_codes=codes,
        challenge=challenge,
        origin=origin_of(url),
    )


async def _drain(chunks_in: AsyncIterable[bytes], cap: int) -> tuple[list[bytes], bool]:
    """Read a body up to ``cap`` bytes: the chunks, and whether it went over the cap.

    Every response is drained, even for HEAD (no bytes, but the end of the message must be
    read): an undrained response closes its connection, and connection reuse is most of the
    speed. A body over the cap closes the connection instead."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in chunks_in:
        chunks.append(chunk)
        total += len(chunk)
        if total > cap:
            return chunks, True
    return chunks, False


def _with_defaults(headers: dict[str, str]) -> list[tuple[str, str]]:
    """The client's default headers, then ours (ours replace a default of the same name):
    the headers httpx's client would send."""
    hdrs = [*_CLIENT_HEADERS]
    for name, value in headers.items():
        low = name.lower()
        for i, (have, _v) in enumerate(hdrs):
            if have.lower() == low:
                hdrs[i] = (have, value)
                break
        else:
            hdrs.append((name, value))
    return hdrs


def _ssl_errors(exc: BaseException) -> list[ssl.SSLError]:
    found: list[ssl.SSLError] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError):
            found.append(cur)
        for arg in cur.args:
            if isinstance(arg, ssl.SSLError) and id(arg) not in seen:
                found.append(arg)
        cur = cur.__cause__ or cur.__context__
    return found


def transport_cause(exc: BaseException) -> Cause:
    """What a transport error means: a plain HTTP answer to our TLS handshake, another TLS
    failure, or any other transport error."""
    errors = _ssl_errors(exc)
    text = str(exc)
    reasons = [str(getattr(e, "reason", "") or "") for e in errors] + [text]
    if any(r in reason for reason in reasons for r in _PLAIN_HTTP_TLS_REASONS):
        return Cause.PLAIN_HTTP_TO_TLS
    if errors or "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
        return Cause.TLS_ERROR
    return Cause.TRANSPORT_ERROR


class Sender:
    """Sends requests for one prober: one client, its options, shared address checks."""

    def __init__(
        self,
        options: ProbeOptions,
        client: httpx.AsyncClient,
        transport: PerOriginTransport | None,
    ) -> None:
        self.options = options
        self._client = client
        self._transport = transport
        """The prober's own network (``None``: requests go through :attr:`_client`)."""
        self._timeout_ext = httpx.Timeout(
            connect=options.connect_timeout,
            read=options.read_timeout,
            write=options.read_timeout,
            pool=None,
        ).as_dict()
        self._resolved: dict[str, str | None] = {}
        self.answered: set[str] = set()
        """Origins that have answered at least once in this run."""
        self.requests = 0
        """HTTP requests sent so far (attempts and redirects included)."""

    # -- one exchange: redirects, retries ---------------------------------------------------

    async def exchange(
        self,
        log: ProbeLog,
        step: str,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        *,
        read_body: bool,
        tokens: Mapping[str, str] | None = None,
    ) -> RegistryResponse:
        """Send ``method url`` until it answers something other than a redirect, a 5xx or a
        429 (those are retried or followed); steps go to ``log``. ``tokens`` maps an origin
        to the Bearer token sent to it (and to no other)."""
        opts = self.options
        attempt = 0
        while True:
            attempt += 1
            cur_url = url
            cur_method = method
            cur_headers = dict(headers)
            redirects = 0
            while True:
                t0 = time.monotonic()
                hop_headers = cur_headers
                token = tokens.get(origin_of(cur_url)) if tokens else None
                if token is not None:
                    hop_headers = {**cur_headers, "Authorization": f"Bearer {token}"}
                try:
                    resp = await self.send(cur_method, cur_url, hop_headers, read_body)
                except asyncio.CancelledError:
                    # The probe's time budget ran out mid-request (slowloris, a stalled
                    # server): keep the request as evidence of where the time went.
                    log.failed(
                        step,
                        cur_method,
                        str(cur_url),
                        (time.monotonic() - t0) * 1000.0,
                        "no complete answer within the probe's time budget",
                        attempt,
                    )
                    raise
                except httpx.HTTPError as exc:
                    ms = (time.monotonic() - t0) * 1000.0
                    desc = describe(exc)
                    cause = transport_cause(exc)
                    step_cause = None
                    if cause is Cause.PLAIN_HTTP_TO_TLS:
                        # the step records it for the CLI's hint (ProbeStep.cause)
                        desc = f"the server answered plain HTTP, not TLS ({desc})"
                        step_cause = ProbeCause.PLAIN_HTTP
                    log.failed(step, cur_method, str(cur_url), ms, desc, attempt, step_cause)
                    _log.debug("%s %s -> %s (%.0f ms)", cur_method, cur_url, desc, ms)
                    kind = "transport error" if cause is Cause.TRANSPORT_ERROR else "TLS error"
                    if cause is not Cause.TRANSPORT_ERROR or attempt >= opts.max_attempts:
                        raise TransportFailure(
                            cause,
                            f"{step} {cur_method} {kind} after {attempt} attempt"
                            f"{'s' if attempt > 1 else ''}: {desc}",
                        ) from None
                    await self._sleep_backoff(log, attempt)
                    break  # retry from the original URL
                ms = (time.monotonic() - t0) * 1000.0
                self.answered.add(resp.origin)
                log.answered(
                    step,
                    cur_method,
                    str(cur_url),
                    resp.status,
                    ms,
                    error_codes=resp.error_codes,
                    attempt=attempt,
                    challenge=resp.challenge,
                )
                _log.debug("%s %s -> %d (%.0f ms)", cur_method, cur_url, resp.status, ms)
                if resp.status in REDIRECT_STATUSES:
                    cur_url, cur_method, cur_headers = self._redirect(
                        step, resp, cur_url, cur_method, cur_headers, redirects
                    )
                    try:
                        # A name (or a numeric spelling such as 2852039166) that resolves
                        # to a metadata address is refused as the literal would be.
                        await self.check_resolved(cur_url.host)
                    except RealmRefusedError as exc:
                        raise RefusedFailure(
                            Cause.REDIRECT_REFUSED, f"{step}: redirect refused: {exc}"
                        ) from None
                    redirects += 1
                    continue
                if resp.status == 429:
                    wait = retry_after(resp.headers)
                    if attempt >= opts.max_attempts:
                        raise StatusFailure(
                            Cause.RATE_LIMITED,
                            f"{step} {cur_method} 429 after {attempt} attempts",
                        )
                    if wait is not None and (
                        wait > opts.max_retry_after or wait > log.remaining() - 0.05
                    ):
                        raise StatusFailure(
                            Cause.RETRY_AFTER_TOO_LONG,
                            f"{step} {cur_method} 429: Retry-After {wait:.0f} s exceeds the"
                            f" {min(opts.max_retry_after, max(log.remaining(), 0)):.1f} s"
                            " allowed",
                        )
                    if wait is None:
                        await self._sleep_backoff(log, attempt)
                    else:
                        await asyncio.sleep(wait)
                    break
                if resp.status >= 500:
                    if attempt >= opts.max_attempts:
                        raise StatusFailure(
                            Cause.SERVER_ERROR,
                            f"{step} {cur_method} {resp.status}"
                            f"{reason_codes(resp.error_codes)} after {attempt} attempts",
                        )
                    await self._sleep_backoff(log, attempt)
                    break
                return resp

    def _redirect(
        self,
        step: str,
        resp: RegistryResponse,
        cur_url: httpx.URL,
        method: str,
        headers: dict[str, str],
        redirects: int,
    ) -> tuple[httpx.URL, str, dict[str, str]]:
        def refused(reason: str) -> RefusedFailure:
            return RefusedFailure(Cause.REDIRECT_REFUSED, f"{step}: {reason}")

        if redirects >= self.options.max_redirects:
            return_reason = f"more than {self.options.max_redirects} redirects"
            raise refused(return_reason)
        location = resp.headers.get("location")
        if not location:
            raise refused(f"{resp.status} without Location")
        try:
            nxt = cur_url.join(location)
        except (httpx.InvalidURL, ValueError) as exc:
            raise refused(f"bad redirect: {exc}") from None
        if nxt.scheme not in ("http", "https"):
            raise refused(f"redirect to {nxt.scheme!r} refused")
        if cur_url.scheme == "https" and nxt.scheme == "http":
            raise refused(f"redirect from https to http refused ({nxt})")
        if nxt.userinfo:
            raise refused("redirect URL with credentials refused")
        why = is_forbidden_address(nxt.host)
        if why:
            raise refused(f"redirect refused: {why}")
        new_headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        new_method = "GET" if resp.status == 303 and method != "HEAD" else method
        return nxt, new_method, new_headers

    async def _sleep_backoff(self, log: ProbeLog, attempt: int) -> None:
        delay = self.options.backoff * (2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        if delay >= log.remaining():
            delay = max(0.0, log.remaining() - 0.01)
        await asyncio.sleep(delay)

    async def check_resolved(self, host: str) -> None:
        """Refuse a host whose DNS answer is a link-local or metadata address
        (:class:`RealmRefusedError`).

        Only with the prober's own network (an injected client or transport decides itself
        where requests go). A failed or slow (> 2 s) lookup is left to the request (or to a
        proxy). The request resolves again, so this narrows, not closes, DNS rebinding."""
        if self._transport is None:
            return
        try:
            ipaddress.ip_address(host.strip("[]"))
            return  # an IP literal was checked by check_realm already
        except ValueError:
            pass
        if host in self._resolved:
            why = self._resolved[host]
        else:
            why = None
            try:
                infos = await asyncio.wait_for(
                    asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM),
                    2.0,
                )
            except (OSError, TimeoutError):
                infos = []
            for info in infos:
                why = is_forbidden_address(str(info[4][0]))
                if why:
                    why = f"{host} resolves to {info[4][0]}: {why}"
                    break
            self._resolved[host] = why
        if why:
            raise RealmRefusedError(why)

    # -- one request ------------------------------------------------------------------------

    async def send(
        self, method: str, url: httpx.URL, headers: dict[str, str], read_body: bool
    ) -> RegistryResponse:
        """One request, no redirects or retries; raises httpx's transport errors."""
        self.requests += 1
        if self._transport is not None:
            pool = self._transport.route(url)
            if isinstance(pool, httpcore.AsyncConnectionPool):
                return await self._send_core(pool, method, url, headers, read_body)
            return await self._send_transport(pool, method, url, headers, read_body)
        cap = self.options.max_body
        async with self._client.stream(method, url, headers=headers) as r:
            chunks, truncated = await _drain(r.aiter_bytes(), cap)
            return _response(
                method, url, r.status_code, r.headers, chunks, truncated, read_body, cap
            )

    async def _send_core(
        self,
        pool: httpcore.AsyncConnectionPool,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        read_body: bool,
    ) -> RegistryResponse:
        """The request httpx's transport would hand its httpcore pool (``Host`` first, then
        the client's default headers, then ours), sent to that pool directly; httpcore's
        errors become the httpx errors the transport raises."""
        hdrs = _with_defaults(headers)
        raw = [(b"Host", url.netloc)]
        raw += [(k.encode("ascii"), v.encode("ascii")) for k, v in hdrs]
        request = httpcore.Request(
            method.encode("ascii"),
            httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=raw,
            extensions={"timeout": self._timeout_ext},
        )
        cap = self.options.max_body
        try:
            r = await pool.handle_async_request(request)
            try:
                rh = httpx.Headers(r.headers)
                # Raw bytes unless the server encoded them anyway (then decoded, as the client
                # would).
                stream = r.stream
                assert isinstance(stream, AsyncIterable)
                it: AsyncIterable[bytes] = stream
                if "content-encoding" in rh:
                    decoded = httpx.Response(r.status, headers=rh, stream=CoreByteStream(stream))
                    it = decoded.aiter_bytes()
                chunks, truncated = await _drain(it, cap)
            finally:
                await r.aclose()
        except CORE_ERRORS as exc:
            raise httpx_error_for(exc) from exc
        return _response(method, url, r.status, rh, chunks, truncated, read_body, cap)

    async def _send_transport(
        self,
        transport: httpx.AsyncBaseTransport,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        read_body: bool,
    ) -> RegistryResponse:
        """The request the client would build (its default headers, then ours; ``Host`` added
        by ``httpx.Request``), sent to httpx's transport for a proxied origin."""
        hdrs = _with_defaults(headers)
        request = httpx.Request(
            method, url, headers=hdrs, extensions={"timeout": self._timeout_ext}
        )
        r = await transport.handle_async_request(request)
        cap = self.options.max_body
        try:
            # Raw bytes unless the server encoded them anyway (then decoded, as the client
            # would).
            stream = r.stream
            assert isinstance(stream, httpx.AsyncByteStream)
            it = (
                httpx.Response(r.status_code, headers=r.headers, stream=stream).aiter_bytes()
                if "content-encoding" in r.headers
                else stream
            )
            chunks, truncated = await _drain(it, cap)
        finally:
            await r.aclose()
        return _response(method, url, r.status_code, r.headers, chunks, truncated, read_body, cap)
