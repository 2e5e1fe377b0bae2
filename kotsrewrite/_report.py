"""The JSON report of a rewrite, and reading known images (the verdict cache).

The report (``schemaVersion`` :data:`SCHEMA_VERSION`) lists every image with its verdict,
evidence, action, new name and locations, the namespaces given a secret, the patches, the
warnings (``warnings``: the lines printed on stderr; ``warningDetails``: the same, one
structured entry each, see :attr:`Plan.warning_details`) and the timings. It never contains
the license ID.

It doubles as a cache: :func:`load_known_images` reads it back (verdicts ``public`` and
``private`` only; entries older than the TTL by their ``probedAt`` are dropped), or a KOTS
``Installation`` (``spec.knownImages: [{image, isPrivate}]``, never expiring).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._errors import InputError
from ._kots import find_kots_object
from ._model import Evidence, ProbeResult, ProbeStep, Verdict
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


def _from_report(
    data: dict[str, Any], name: str, ttl: float | None, now: dt.datetime
) -> list[ProbeResult]:
    images = data.get("images")
    if not isinstance(images, list):
        raise InputError("report has no images list", file=name, hint="give a kotsrewrite report")
    out = []
    for entry in images:
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            continue
        try:
            verdict = Verdict(str(entry.get("verdict")))
            ref = ImageRef.parse(entry["image"])
        except (ValueError, InputError):
            continue
        if not verdict.is_known:
            continue  # not proof of anything: probe again
        ev = entry.get("evidence") if isinstance(entry.get("evidence"), dict) else {}
        assert isinstance(ev, dict)
        probed_at = _parse_time(ev.get("probedAt"))
        if ttl is not None and (probed_at is None or (now - probed_at).total_seconds() > ttl):
            continue
        evidence = Evidence(
            reason=f"{ev.get('reason', verdict)} (cached in {name})",
            steps=_steps(ev.get("steps")),
            elapsed_ms=float(ev.get("elapsedMs") or 0.0),
            source="known-images",
            probed_at=ev.get("probedAt") if isinstance(ev.get("probedAt"), str) else None,
        )
        out.append(ProbeResult(ref, verdict, evidence))
    return out


def _from_installation(doc: dict[str, Any], name: str) -> list[ProbeResult]:
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    known = spec.get("knownImages") or []
    if not isinstance(known, list):
        raise InputError("Installation spec.knownImages is not a list", file=name)
    out = []
    for entry in known:
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            raise InputError(
                "Installation spec.knownImages entries need an image string",
                file=name,
                hint="entries look like {image: quay.io/org/api:1.0, isPrivate: true}",
            )
        ref = ImageRef.parse(entry["image"])
        private = entry.get("isPrivate") is True
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

    From a report only ``public``/``private`` verdicts are kept, and with ``ttl`` (seconds)
    only those probed within it. Installation entries never expire.
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
        return _from_report(data, name, ttl, now)
    doc = find_kots_object(path, "Installation", "--known-images")
    if doc is None:
        raise InputError(
            "neither a KOTS Installation nor a kotsrewrite report",
            file=name,
            hint="give a KOTS Installation YAML (spec.knownImages) or a kotsrewrite JSON report",
        )
    return _from_installation(doc, name)
