"""The JSON report of a rewrite, and reading known images (the verdict cache).

The report (``schemaVersion`` :data:`SCHEMA_VERSION`) lists every image with its verdict,
evidence, action, new name and locations, the namespaces given a secret, the patches, the
warnings (``warnings``: the lines printed on stderr; ``warningDetails``: the same, one
structured entry each, see :attr:`Plan.warning_details`) and the timings. It never contains
the license ID.

It doubles as a cache: :func:`load_known_images` reads it back (verdicts ``public`` and
``private`` only; entries older than the TTL by their ``probedAt`` come back marked
``expired``, counting for nothing), or a KOTS ``Installation`` (``spec.knownImages:
[{image, isPrivate}]``, never expiring). Both are validated entry by entry.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._errors import InputError
from ._kots import find_kots_object
from ._model import EXPIRED, Evidence, ProbeResult, ProbeStep, Verdict
from ._plan import Plan
from ._reference import ImageRef

__all__ = ["SCHEMA_VERSION", "build_report", "dump_report", "load_known_images"]

#: Version of the report's JSON layout.
SCHEMA_VERSION = 1


def build_report(
    plan: Plan,
    *,
    output: str | None,
    files: list[str],
    timings: Mapping[str, float],
    source: str,
    dry_run: bool = False,
) -> dict[str, Any]:
    """The report as JSON data. ``files`` are the paths written (relative to ``output``)."""
    images = []
    for d in plan.decisions:
        images.append(
            {
                "image": d.image.original,
                "normalized": d.image.normalized,
                "verdict": None if d.verdict is None else str(d.verdict),
                "unknown": d.unknown,
                "action": str(d.action),
                "newName": d.new_name,
                "newImage": d.new_image,
                "note": d.note,
                "evidence": d.evidence.to_json(),
                "locations": [loc.to_json() for loc in d.locations],
            }
        )
    unmanaged = [
        {"image": use.ref.original, "location": use.location.to_json()} for use in plan.unmanaged
    ]
    return {
        "schemaVersion": SCHEMA_VERSION,
        "tool": "kotsrewrite",
        "source": source,
        "output": output,
        "dryRun": dry_run,
        "appSlug": plan.options.app_slug,
        "namespace": plan.options.namespace,
        "proxyHost": plan.options.proxy_host,
        "replicatedRegistry": plan.options.replicated_registry,
        "onUnknown": str(plan.options.on_unknown),
        "proxyAll": plan.options.proxy_all,
        "summary": plan.counts(),
        "images": images,
        "unmanaged": unmanaged,
        "secret": plan.secret_name,
        "secretNamespaces": list(plan.secret_namespaces),
        "renames": [r.to_json() for r in plan.renames],
        "patches": [p.to_json() for p in plan.patches],
        "fieldSpecs": [f.to_json() for f in plan.field_specs],
        "files": files,
        "warnings": list(plan.warnings),
        "onUnplaced": str(plan.options.on_unplaced),
        "unplaced": [u.to_json() for u in plan.unplaced],
        "unchecked": [u.to_json() for u in plan.unchecked],
        "warningDetails": [dict(w) for w in plan.warning_details],
        "timingsMs": {k: round(v * 1000, 1) for k, v in timings.items()},
    }


def dump_report(report: Mapping[str, Any]) -> str:
    """The report as JSON text (two-space indent, trailing newline)."""
    return json.dumps(report, indent=2) + "\n"


def _parse_time(text: object) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _steps(data: object) -> tuple[ProbeStep, ...]:
    if not isinstance(data, list):
        return ()
    out = []
    for s in data:
        if isinstance(s, dict):
            out.append(
                ProbeStep(
                    step=str(s.get("step", "")),
                    method=str(s.get("method", "")),
                    url=str(s.get("url", "")),
                    status=s.get("status") if isinstance(s.get("status"), int) else None,
                    elapsed_ms=float(s.get("elapsedMs") or 0.0),
                    error_codes=tuple(str(c) for c in s.get("errorCodes") or ()),
                    error=s.get("error") if isinstance(s.get("error"), str) else None,
                    attempt=int(s.get("attempt") or 1),
                    challenge=s.get("challenge") if isinstance(s.get("challenge"), str) else None,
                )
            )
    return tuple(out)


#: Keys of an ``images`` entry of a report (what :func:`build_report` writes).
_REPORT_ENTRY_KEYS = (
    "image",
    "normalized",
    "verdict",
    "unknown",
    "action",
    "newName",
    "newImage",
    "note",
    "evidence",
    "locations",
)
#: Keys of an Installation ``spec.knownImages`` entry (KOTS's ``KnownImage``).
_INSTALLATION_ENTRY_KEYS = ("image", "isPrivate")


def _unknown_key(key: object, known: tuple[str, ...], what: str) -> tuple[str, str]:
    """(message, hint) for an unknown key, the hint suggesting the nearest known key."""
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.5)
    if close:
        hint = f"did you mean {close[0]}?"
    else:
        hint = f"{what} entries have only the keys {', '.join(known)}"
    return f"unknown key {str(key)!r} in a {what} entry", hint


def _json_line(text: str, value: object, start: int = 0) -> int | None:
    """The line of the first ``value`` (as JSON) in ``text`` at or after ``start``."""
    try:
        needle = json.dumps(value)
    except (TypeError, ValueError):
        return None
    at = text.find(needle, start)
    return None if at < 0 else text.count("\n", 0, at) + 1


def _age(seconds: float) -> str:
    """``3d 4h``, ``2h 5m``, ``40s``: an age for people."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _from_report(
    data: dict[str, Any], name: str, text: str, ttl: float | None, now: dt.datetime
) -> list[ProbeResult]:
    images = data.get("images")
    if not isinstance(images, list):
        raise InputError(
            "report has no images list",
            file=name,
            line=_json_line(text, "images"),
            hint="give a kotsrewrite report",
        )
    out = []
    start = text.find('"images"')
    for entry in images:
        image = entry.get("image") if isinstance(entry, dict) else None
        line = _json_line(text, image, max(start, 0)) if isinstance(image, str) else None
        if line is None:
            line = _json_line(text, "images")

        def fail(message: str, hint: str, line: int | None = line) -> InputError:
            return InputError(message, file=name, line=line, hint=hint)

        if not isinstance(entry, dict):
            raise fail("an images entry is not an object", "entries look like {image, verdict}")
        for key in entry:
            if key not in _REPORT_ENTRY_KEYS:
                raise fail(*_unknown_key(key, _REPORT_ENTRY_KEYS, "report images"))
        if not isinstance(image, str):
            raise fail(
                "an images entry has no image string",
                'give each entry an "image": "REFERENCE"',
            )
        try:
            ref = ImageRef.parse(image)
        except InputError as exc:
            raise fail(
                exc.message,
                exc.hint or "fix the reference, or remove the entry",
            ) from None
        raw = entry.get("verdict")
        if raw is None:
            continue  # an image on a Replicated host: never probed, nothing to cache
        if raw not in {str(v) for v in Verdict}:
            raise fail(
                f"{image}: verdict {raw!r} is not one of {', '.join(str(v) for v in Verdict)}",
                'write "verdict": "private" or "public", or remove the entry',
            )
        verdict = Verdict(raw)
        if not verdict.is_known:
            continue  # not proof of anything: probe again
        ev = entry.get("evidence") if isinstance(entry.get("evidence"), dict) else {}
        assert isinstance(ev, dict)
        probed_at = _parse_time(ev.get("probedAt"))
        stamp = ev.get("probedAt") if isinstance(ev.get("probedAt"), str) else None
        if ttl is not None and (probed_at is None or (now - probed_at).total_seconds() > ttl):
            age = (
                "it has no probedAt time"
                if probed_at is None
                else f"probed {_age((now - probed_at).total_seconds())} ago, at {stamp}"
            )
            reason = (
                f"its known-images entry in {name} expired: {age}; --cache-ttl is {ttl:g} s"
                f" ({_age(ttl)})"
            )
            evidence = Evidence(reason=reason, source=EXPIRED, probed_at=stamp)
            out.append(ProbeResult(ref, verdict, evidence))
            continue
        evidence = Evidence(
            reason=f"{ev.get('reason', verdict)} (cached in {name})",
            steps=_steps(ev.get("steps")),
            elapsed_ms=float(ev.get("elapsedMs") or 0.0),
            source="known-images",
            probed_at=stamp,
        )
        out.append(ProbeResult(ref, verdict, evidence))
    return out


def _line(node: object, key: object = None) -> int | None:
    """1-based line of a round-trip mapping (or of its ``key``), or of a sequence."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if key is not None:
            return int(lc.key(key)[0]) + 1
        return int(lc.line) + 1
    except (KeyError, TypeError, AttributeError):
        return None


def _from_installation(doc: dict[str, Any], name: str) -> list[ProbeResult]:
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    known = spec.get("knownImages") or []
    if not isinstance(known, list):
        raise InputError(
            "Installation spec.knownImages is not a list",
            file=name,
            line=_line(spec, "knownImages"),
            hint="write knownImages as a list of {image: REFERENCE, isPrivate: true|false}",
        )
    out = []
    for index, entry in enumerate(known):
        line = None
        with contextlib.suppress(KeyError, TypeError, AttributeError):
            line = int(known.lc.item(index)[0]) + 1  # type: ignore[attr-defined]

        def fail(message: str, hint: str, line: int | None = line) -> InputError:
            return InputError(message, file=name, line=line, hint=hint)

        if not isinstance(entry, dict):
            raise fail(
                "Installation spec.knownImages entry is not a mapping",
                "entries look like {image: quay.io/org/api:1.0, isPrivate: true}",
            )
        for key in entry:
            if key not in _INSTALLATION_ENTRY_KEYS:
                message, hint = _unknown_key(key, _INSTALLATION_ENTRY_KEYS, "knownImages")
                raise fail(message, hint, _line(entry, key) or line)
        image = entry.get("image")
        if not isinstance(image, str):
            raise fail(
                "Installation spec.knownImages entry has no image string",
                "entries look like {image: quay.io/org/api:1.0, isPrivate: true}",
                _line(entry, "image") or line,
            )
        try:
            ref = ImageRef.parse(image)
        except InputError as exc:
            raise fail(
                exc.message,
                exc.hint or "fix the reference, or remove the entry",
                _line(entry, "image") or line,
            ) from None
        if "isPrivate" not in entry:
            raise fail(
                f"{image}: knownImages entry has no isPrivate",
                "add isPrivate: true (pulled through the proxy) or isPrivate: false",
            )
        private = entry["isPrivate"]
        if not isinstance(private, bool):
            shown = f"the string {private!r}" if isinstance(private, str) else repr(private)
            raise fail(
                f"{image}: isPrivate must be true or false, not {shown}",
                "write isPrivate: true or isPrivate: false, without quotes",
                _line(entry, "isPrivate") or line,
            )
        verdict = Verdict.PRIVATE if private else Verdict.PUBLIC
        evidence = Evidence(
            reason=f"Installation knownImages isPrivate: {str(private).lower()} ({name})",
            source="known-images",
        )
        out.append(ProbeResult(ref, verdict, evidence))
    return out


def load_known_images(
    path: str | os.PathLike[str],
    *,
    ttl: float | None = None,
    now: dt.datetime | None = None,
) -> list[ProbeResult]:
    """Verdicts from a KOTS Installation YAML or a kotsrewrite JSON report.

    From a report only ``public``/``private`` verdicts are kept; with ``ttl`` (seconds) those
    probed longer ago (or at no recorded time) come back with evidence source
    ``"expired"`` and a reason giving their age: :func:`~kotsrewrite.rewrite`
    probes them again and :func:`~kotsrewrite.build_plan` takes them as no verdict, naming
    the expiry. Installation entries never expire.

    Entries are validated: an unknown key (``private`` for ``isPrivate``), a wrong type
    (``isPrivate: "true"``), a missing ``isPrivate`` or an invalid reference is an
    :class:`~kotsrewrite.InputError` naming the file and line, with a hint.
    """
    name = str(path)
    now = now or dt.datetime.now(dt.UTC)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"cannot read known images: {getattr(exc, 'strerror', None) or exc}",
            file=name,
            hint="give a KOTS Installation YAML or a kotsrewrite report to --known-images",
        ) from None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"invalid JSON: {exc.msg}", file=name, line=exc.lineno, hint="fix the report"
            ) from None
        if not isinstance(data, dict) or "schemaVersion" not in data:
            raise InputError("not a kotsrewrite report (no schemaVersion)", file=name)
        return _from_report(data, name, text, ttl, now)
    doc = find_kots_object(path, "Installation", "--known-images", lines=True)
    if doc is None:
        raise InputError(
            "neither a KOTS Installation nor a kotsrewrite report",
            file=name,
            hint="give a KOTS Installation YAML (spec.knownImages) or a kotsrewrite JSON report",
        )
    return _from_installation(doc, name)
