"""Readers for KOTS files: License, Application and Installation (known images).

Only the fields kotsrewrite uses are read: License ``spec.licenseID``/``spec.appSlug``,
Application ``spec.additionalNamespaces``/``spec.proxyPublicImages``, Installation
``spec.knownImages: [{image, isPrivate}]``. Errors name the file (and line where known) but
never echo the license ID.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import attrs
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from ._errors import InputError

__all__ = [
    "KotsApplication",
    "KotsLicense",
    "find_kots_object",
    "load_application",
    "load_license",
]

_MAX_BYTES = 16 * 1024 * 1024


def _load_documents(path: str | os.PathLike[str], flag: str, typ: str = "safe") -> list[Any]:
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        what = "a directory, not a file" if isinstance(exc, IsADirectoryError) else None
        raise InputError(
            what or f"cannot read: {exc.strerror}", file=name, hint=f"check the {flag} path"
        ) from None
    if len(data) > _MAX_BYTES:
        raise InputError("file too large for a KOTS file", file=name, hint=f"check the {flag} path")
    try:
        text = data.decode("utf-8")
        if typ == "safe":
            try:
                # libyaml first: a KOTS Installation can list thousands of known images.
                loaded = YAML(typ="safe", pure=False).load_all(text)
                return [doc for doc in loaded if doc is not None]
            except YAMLError:
                pass  # libyaml rejects some YAML the pure parser reads (and reports better)
        yaml = YAML(typ=typ, pure=True)
        return [doc for doc in yaml.load_all(text) if doc is not None]
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise InputError(
            f"YAML error: {exc.problem}", file=name, line=line, hint=f"fix the {flag} file"
        ) from None
    except (YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"YAML error: {exc}", file=name, hint=f"fix the {flag} file") from None


def find_kots_object(
    path: str | os.PathLike[str], kind: str, flag: str, *, lines: bool = False
) -> dict[str, Any] | None:
    """The first document of ``kind`` (apiVersion ``kots.io/...``) in a YAML file, or None.

    With ``lines`` the document is read round-trip: its mappings and sequences carry their
    positions (ruamel's ``.lc``) for error messages."""
    for doc in _load_documents(path, flag, "rt" if lines else "safe"):
        if (
            isinstance(doc, dict)
            and doc.get("kind") == kind
            and str(doc.get("apiVersion", "")).startswith("kots.io/")
        ):
            return doc
    return None


def _line_of(mapping: Any, key: str | None = None) -> int | None:
    """1-based line of ``key`` in a round-trip mapping (of the mapping itself without one)."""
    lc = getattr(mapping, "lc", None)
    if lc is None:
        return None
    try:
        return int(lc.key(key)[0]) + 1 if key is not None else int(lc.line) + 1
    except (KeyError, TypeError, AttributeError):
        return None


def _spec(path: str | os.PathLike[str], kind: str, what: str) -> dict[str, Any]:
    """The ``spec`` of the first KOTS ``kind`` object in the file, with line marks."""
    name = str(path)
    docs = _load_documents(path, what, typ="rt")
    kots = [
        d
        for d in docs
        if isinstance(d, dict) and str(d.get("apiVersion", "")).startswith("kots.io/")
    ]
    doc = next((d for d in kots if d.get("kind") == kind), None)
    if doc is None:
        other = next((d for d in kots if isinstance(d.get("kind"), str)), None)
        if other is not None:
            raise InputError(
                f"a KOTS {other['kind']}, not {'an' if kind[0] in 'AEIOU' else 'a'} {kind}",
                file=name,
                line=_line_of(other, "kind"),
                hint=f"give the KOTS {kind} YAML (kind: {kind}) here",
            )
        raise InputError(
            f"no {kind} object (apiVersion kots.io/v1beta1, kind {kind}) in the file",
            file=name,
            hint=f"give the KOTS {kind} YAML (kind: {kind}) here",
        )
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise InputError(
            f"{kind} has no spec mapping",
            file=name,
            line=_line_of(doc, "spec") if "spec" in doc else _line_of(doc),
            hint=f"a {kind} holds its fields under spec:",
        )
    return cast(dict[str, Any], spec)


def _not_a(spec: dict[str, Any], path: str | os.PathLike[str], field: str, what: str) -> InputError:
    """``field`` of ``spec`` has the wrong type (the value is never echoed: it may be secret)."""
    return InputError(
        f"{field} is not {what}",
        file=str(path),
        line=_line_of(spec, field.rpartition(".")[2]),
        hint=f"make {field} {what}",
    )


@attrs.frozen
class KotsLicense:
    """What kotsrewrite reads from a KOTS License (:func:`~kotsrewrite.load_license`)."""

    app_slug: str | None
    """``spec.appSlug``; ``None`` when absent."""
    license_id: str | None = attrs.field(repr=False)
    """``spec.licenseID``; ``None`` when absent. Never shown in a repr."""


@attrs.frozen
class KotsApplication:
    """What kotsrewrite reads from a KOTS Application (:func:`~kotsrewrite.load_application`)."""

    additional_namespaces: tuple[str, ...] = ()
    """``spec.additionalNamespaces``: each gets the pull secret (``*``: every namespace)."""
    proxy_public_images: bool = False
    """``spec.proxyPublicImages``: proxy every image, public ones too."""


def load_license(path: str | os.PathLike[str]) -> KotsLicense:
    """Read ``spec.appSlug`` and ``spec.licenseID`` from a KOTS License YAML file.

    Raises :class:`~kotsrewrite.InputError` (with the file, the line where known and a hint)
    when the file cannot be read, is not YAML, holds no KOTS ``License``, or a field has the
    wrong type. No error names the license ID.
    """
    spec = _spec(path, "License", "KOTS License")
    slug, lid = spec.get("appSlug"), spec.get("licenseID")
    if slug is not None and not isinstance(slug, str):
        raise _not_a(spec, path, "License spec.appSlug", "a string")
    if lid is not None and not isinstance(lid, str):
        raise _not_a(spec, path, "License spec.licenseID", "a string")
    return KotsLicense(app_slug=slug, license_id=lid)


def load_application(path: str | os.PathLike[str]) -> KotsApplication:
    """Read ``spec.additionalNamespaces`` and ``spec.proxyPublicImages`` from a KOTS
    Application YAML file.

    Raises :class:`~kotsrewrite.InputError` (with the file, the line where known and a hint)
    when the file cannot be read, is not YAML, holds no KOTS ``Application``, or a field has
    the wrong type.
    """
    spec = _spec(path, "Application", "KOTS Application")
    namespaces = spec.get("additionalNamespaces") or []
    if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
        raise _not_a(spec, path, "Application spec.additionalNamespaces", "a list of strings")
    proxy = spec.get("proxyPublicImages", False)
    if not isinstance(proxy, bool):
        raise _not_a(spec, path, "Application spec.proxyPublicImages", "true or false")
    return KotsApplication(additional_namespaces=tuple(namespaces), proxy_public_images=proxy)
