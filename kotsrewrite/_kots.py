"""Readers for KOTS files: License, Application and Installation (known images).

Only the fields kotsrewrite uses are read: License ``spec.licenseID``/``spec.appSlug``,
Application ``spec.additionalNamespaces``/``spec.proxyPublicImages``, Installation
``spec.knownImages: [{image, isPrivate}]``. Errors name the file (and line where known) but
never echo the license ID.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from ._errors import InputError

__all__ = ["KotsApplication", "KotsLicense", "find_kots_object", "read_application", "read_license"]

_MAX_BYTES = 16 * 1024 * 1024


def _load_documents(path: str | os.PathLike[str], flag: str) -> list[Any]:
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(
            f"cannot read: {exc.strerror}", file=name, hint=f"check the {flag} path"
        ) from None
    if len(data) > _MAX_BYTES:
        raise InputError("file too large for a KOTS file", file=name)
    try:
        text = data.decode("utf-8")
        try:
            # libyaml first: a KOTS Installation can list thousands of known images.
            return [doc for doc in YAML(typ="safe", pure=False).load_all(text) if doc is not None]
        except YAMLError:
            pass  # libyaml rejects some YAML the pure parser reads (and reports better)
        yaml = YAML(typ="safe", pure=True)
        return [doc for doc in yaml.load_all(text) if doc is not None]
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise InputError(
            f"YAML error: {exc.problem}", file=name, line=line, hint=f"fix the {flag} file"
        ) from None
    except (YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"YAML error: {exc}", file=name, hint=f"fix the {flag} file") from None


def find_kots_object(path: str | os.PathLike[str], kind: str, flag: str) -> dict[str, Any] | None:
    """The first document of ``kind`` (apiVersion ``kots.io/...``) in a YAML file, or None."""
    for doc in _load_documents(path, flag):
        if (
            isinstance(doc, dict)
            and doc.get("kind") == kind
            and str(doc.get("apiVersion", "")).startswith("kots.io/")
        ):
            return doc
    return None


def _spec(path: str | os.PathLike[str], kind: str, flag: str) -> dict[str, Any]:
    doc = find_kots_object(path, kind, flag)
    if doc is None:
        raise InputError(
            f"no {kind} object (apiVersion kots.io/v1beta1, kind {kind}) in the file",
            file=str(path),
            hint=f"give the KOTS {kind} YAML to {flag}",
        )
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise InputError(f"{kind} has no spec mapping", file=str(path))
    return spec


@attrs.frozen
class KotsLicense:
    """What kotsrewrite reads from a KOTS License."""

    app_slug: str | None
    license_id: str | None = attrs.field(repr=False)


@attrs.frozen
class KotsApplication:
    """What kotsrewrite reads from a KOTS Application."""

    additional_namespaces: tuple[str, ...] = ()
    proxy_public_images: bool = False


def read_license(path: str | os.PathLike[str]) -> KotsLicense:
    """Read ``spec.appSlug`` and ``spec.licenseID`` from a KOTS License file."""
    spec = _spec(path, "License", "--license")
    slug, lid = spec.get("appSlug"), spec.get("licenseID")
    if slug is not None and not isinstance(slug, str):
        raise InputError("License spec.appSlug is not a string", file=str(path))
    if lid is not None and not isinstance(lid, str):
        raise InputError("License spec.licenseID is not a string", file=str(path))
    return KotsLicense(app_slug=slug, license_id=lid)


def read_application(path: str | os.PathLike[str]) -> KotsApplication:
    """Read ``spec.additionalNamespaces`` and ``spec.proxyPublicImages`` from a KOTS
    Application file."""
    spec = _spec(path, "Application", "--application")
    namespaces = spec.get("additionalNamespaces") or []
    if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
        raise InputError(
            "Application spec.additionalNamespaces is not a list of strings", file=str(path)
        )
    proxy = spec.get("proxyPublicImages", False)
    if not isinstance(proxy, bool):
        raise InputError("Application spec.proxyPublicImages is not a boolean", file=str(path))
    return KotsApplication(additional_namespaces=tuple(namespaces), proxy_public_images=proxy)
