"""Does a midstream still match the base it was made from?

Input that is not a kustomization (a plain directory, a single file) is snapshotted into
``<midstream>/base/`` when the midstream is written; a kustomization is named by its path.
:func:`snapshot_problems` compares that with the base as it is now: a file added, changed or
removed since the midstream was written (the midstream then no longer describes the base), or
a midstream that names another base.
"""

from __future__ import annotations

import os
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ._manifests import KUSTOMIZATION_FILES, _manifest_files
from ._render import BASE_DIR, KUSTOMIZATION_FILE

__all__ = ["snapshot_problems"]

_AGAIN = "run kotsrewrite rewrite again on the base"


def _resources(directory: Path) -> list[str]:
    try:
        data = YAML(typ="safe", pure=True).load(
            (directory / KUSTOMIZATION_FILE).read_text(encoding="utf-8")
        )
    except (OSError, UnicodeDecodeError, YAMLError):
        return []
    resources = data.get("resources") if isinstance(data, dict) else None
    return [str(r) for r in resources] if isinstance(resources, list) else []


def snapshot_problems(midstream: str | os.PathLike[str], base: str | os.PathLike[str]) -> list[str]:
    """One line per difference between ``base`` (a directory, kustomization or file) and what
    the midstream in ``midstream`` was made from; empty when they match."""
    mid = Path(midstream)
    src = Path(base)
    if not src.exists():
        return [f"--base {base}: no such file or directory"]
    entries = [e for e in _resources(mid) if (mid / e).is_dir()]
    if src.is_dir() and any((src / name).is_file() for name in KUSTOMIZATION_FILES):
        if any((mid / e).resolve() == src.resolve() for e in entries):
            return []
        named = ", ".join(entries) or "no base directory"
        return [
            f"the midstream builds {named}, not the kustomization {base}: it was not made"
            f" from this base; {_AGAIN}"
        ]
    snapshot = mid / BASE_DIR
    if BASE_DIR not in entries:
        return [
            f"the midstream has no snapshot of a base ({BASE_DIR}/ is not among its resources):"
            f" it was not made from {base}; {_AGAIN}"
        ]
    listed = [r for r in _resources(snapshot) if (snapshot / r).is_file()]
    kept = {r: (snapshot / r).read_bytes() for r in listed}
    if src.is_dir():
        now = {p.relative_to(src).as_posix(): p for p in _manifest_files(src)}
    else:
        now = {src.name: src}
    problems: list[str] = []
    for rel in sorted(set(now) | set(kept)):
        shown = f"{base}/{rel}" if src.is_dir() else str(base)
        if rel not in kept:
            problems.append(f"{shown}: in the base but not in the midstream's snapshot; {_AGAIN}")
        elif rel not in now:
            problems.append(
                f"{shown}: in the midstream's snapshot but no longer in the base; {_AGAIN}"
            )
        elif now[rel].read_bytes() != kept[rel]:
            problems.append(f"{shown}: changed since the midstream's snapshot; {_AGAIN}")
    return problems
