"""Relocation into the customer's own registry (pure: no I/O but reading a credentials file).

``rewrite --registry HOST[:PORT][/NAMESPACE]`` renames *every* image (private, public, on the
Replicated registry, already proxied) into one registry and writes a copy plan beside the
midstream saying, for each image, where to pull it from and the digest it must have.

Names (see :func:`relocated_name`):

* ``nested`` (default): ``HOST/NAMESPACE/<source registry>/<source repository>``, e.g.
  ``reg.example.com/acme/quay.io/a/api``; Docker Hub's ``nginx`` becomes
  ``.../docker.io/library/nginx``. Collision free by construction. A source registry with a
  port (``127.0.0.1:5000``) cannot be a path component as written (``:`` is not allowed in a
  path), so it becomes ``127.0.0.1_5000``; ``_`` never occurs in a host name, so this stays
  collision free.
* ``flat``: ``HOST/NAMESPACE/<last path component>``; where two source repositories share a
  last component, each of them gets ``-<first 6 hex of sha256(normalized source repository)>``.

The plan is built from the ordinary proxy plan (:func:`relocate_plan`): its decisions say where
each image is pulled from today (the proxy path for private images, the original for public
ones, the Replicated registry for its images), which is where the copy pulls from. The pull
secret holds the customer registry's credentials (:class:`RegistryCredentials`), keyed by the
registry host exactly as images name it, so a later pull check can find them in the
midstream's own ``.dockerconfigjson``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import os
import re
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ._errors import InputError
from ._kustomize_images import RenameEntry, finish_renames, spellings
from ._model import Inventory
from ._plan import (
    Action,
    ImageDecision,
    Plan,
    _patches,
    _secrets,
    field_specs_for,
)
from ._reference import ImageRef

__all__ = [
    "COPY_PLAN_FILE",
    "CopyEntry",
    "CopyPlan",
    "Layout",
    "RegistryCredentials",
    "RelocationOptions",
    "RelocationPlan",
    "build_copy_plan",
    "default_auth_file",
    "docker_config_entry",
    "read_registry_auth",
    "relocate_plan",
    "relocated_name",
]

#: The copy plan's file name inside the midstream directory.
COPY_PLAN_FILE = "copy-plan.json"
_COPY_PLAN_KIND = "kotsrewrite-copy-plan"
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?"
)
_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")
_SUFFIX_HEX = 6


class Layout(enum.StrEnum):
    """How relocated images are named."""

    NESTED = "nested"
    """``HOST/NS/<source registry>/<source repository>``: collision free by construction."""
    FLAT = "flat"
    """``HOST/NS/<last component>``, with a short stable suffix only where two collide."""


@attrs.frozen
class RegistryCredentials:
    """The customer registry's credentials, for the pull secret. Never in a repr."""

    host: str
    """The ``auths`` key written in the secret (the registry host as images name it)."""
    username: str = attrs.field(repr=False)
    password: str = attrs.field(repr=False)


def _check_registry(_: object, __: object, value: str) -> None:
    host, _sep, namespace = value.partition("/")
    ok = bool(_DOMAIN.fullmatch(host)) and (
        "." in host.split(":")[0] or ":" in host or host == "localhost"
    )
    if ok and namespace:
        ok = all(_COMPONENT.fullmatch(c) for c in namespace.split("/"))
    if not ok:
        raise InputError(
            f"invalid registry {value!r}",
            file="--registry",
            hint="give HOST[:PORT][/NAMESPACE] with a lowercase namespace, e.g."
            " registry.example.com/acme or 10.0.0.5:5000/apps",
        )


@attrs.frozen
class RelocationOptions:
    """Where to relocate images and how to name them."""

    registry: str = attrs.field(validator=_check_registry)
    """``HOST[:PORT][/NAMESPACE]``."""
    layout: Layout = attrs.field(default=Layout.NESTED, converter=Layout)
    credentials: RegistryCredentials | None = attrs.field(default=None, repr=False)
    """For the pull secret; ``None`` gives a secret with no ``auths`` (anonymous pulls)."""
    resolve: bool = False
    """Look up each tag's current digest and pin it in the copy plan."""

    @property
    def host(self) -> str:
        """The registry host (``HOST[:PORT]``)."""
        return self.registry.partition("/")[0]

    @property
    def namespace(self) -> str:
        """The namespace path under the host (``""`` for none)."""
        return self.registry.partition("/")[2]


# --------------------------------------------------------------------------------------------
# Credentials


def default_auth_file(env: Mapping[str, str] | None = None) -> Path | None:
    """The Docker config file skopeo would read: ``REGISTRY_AUTH_FILE``, else
    ``$DOCKER_CONFIG/config.json``, else ``$XDG_RUNTIME_DIR/containers/auth.json``, else
    ``~/.docker/config.json``; the first that exists, or ``None``."""
    env = os.environ if env is None else env
    candidates: list[Path] = []
    if env.get("REGISTRY_AUTH_FILE"):
        candidates.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("DOCKER_CONFIG"):
        candidates.append(Path(env["DOCKER_CONFIG"]) / "config.json")
    if env.get("XDG_RUNTIME_DIR"):
        candidates.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    home = env.get("HOME")
    if home:
        candidates.append(Path(home) / ".docker" / "config.json")
    for path in candidates:
        if path.is_file():
            return path
    return None


def _host_of_key(key: str) -> str:
    """``https://HOST/v1/`` -> ``HOST`` (lowercase), as Docker normalizes ``auths`` keys."""
    text = key.strip()
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
    return text.split("/", 1)[0].lower()


def docker_config_entry(config: Mapping[str, Any], host: str) -> Mapping[str, Any] | None:
    """The ``auths`` entry of a Docker config for ``host`` (keys compared the way Docker does:
    scheme and path ignored, case-insensitive; Docker Hub under any of its names)."""
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    wanted = {host.lower()}
    if host.lower() in _HUB_KEYS:
        wanted = {_host_of_key(k) for k in _HUB_KEYS}
    for key in sorted(auths):
        if isinstance(key, str) and _host_of_key(key) in wanted and isinstance(auths[key], dict):
            entry: Mapping[str, Any] = auths[key]
            return entry
    return None


def read_registry_auth(path: str | os.PathLike[str], host: str) -> RegistryCredentials:
    """Read the credentials for ``host`` from a Docker config file (``auths[HOST].auth``, or
    ``username``/``password``). Errors name the file and never show a credential."""
    name = os.fspath(path)
    hint_login = (
        f"log in with 'skopeo login --authfile {name} {host}' (or docker login), or give"
        " --registry-auth FILE holding auths for that host"
    )
    try:
        config = json.loads(Path(name).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(
            f"cannot read the registry credentials: {exc.strerror}",
            file=name,
            hint="give --registry-auth FILE, a Docker config.json",
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(
            "not a Docker config file: not JSON",
            file=name,
            hint="give a Docker config.json with an auths mapping",
        ) from None
    if not isinstance(config, dict):
        raise InputError("not a Docker config file: not a JSON object", file=name, hint=hint_login)
    entry = docker_config_entry(config, host)
    if entry is None:
        helper = ""
        if config.get("credsStore") or config.get("credHelpers"):
            helper = " (credentials kept by a credential helper cannot be read)"
        raise InputError(f"no credentials for {host} in auths{helper}", file=name, hint=hint_login)
    user, password = entry.get("username"), entry.get("password")
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise InputError(
                f"auths entry for {host}: auth is not base64 of USER:PASSWORD",
                file=name,
                hint=hint_login,
            )
    if not isinstance(user, str) or not isinstance(password, str) or not user:
        raise InputError(
            f"auths entry for {host} has neither auth nor username and password",
            file=name,
            hint=hint_login,
        )
    key = "https://index.docker.io/v1/" if host.lower() in _HUB_KEYS else host
    return RegistryCredentials(host=key, username=user, password=password)


# --------------------------------------------------------------------------------------------
# Names


def _source_component(ref: ImageRef) -> str:
    """The source registry as one path component: lowercase, ``HOST:PORT`` -> ``HOST_PORT``."""
    return ref.registry.lower().replace(":", "_")


def _nested_name(ref: ImageRef, target: RelocationOptions) -> str:
    prefix = target.registry
    return f"{prefix}/{_source_component(ref)}/{ref.repository}"


def _stable_suffix(ref: ImageRef, length: int = _SUFFIX_HEX) -> str:
    return hashlib.sha256(ref.normalized_name.encode()).hexdigest()[:length]


def relocated_name(
    refs: list[ImageRef] | tuple[ImageRef, ...], target: RelocationOptions
) -> dict[str, str]:
    """The destination repository (no tag, no digest) of each source repository, keyed by
    its normalized name (``docker.io/library/nginx``).

    ``flat`` adds ``-<6 hex>`` to the last component of every repository sharing it with
    another one (12 hex should 6 still collide). Each name is checked with the reference
    grammar; raises :class:`~kotsrewrite.InputError` when one is invalid (e.g. too long).
    """
    by_repo: dict[str, ImageRef] = {}
    for ref in refs:
        by_repo.setdefault(ref.normalized_name, ref)
    out: dict[str, str] = {}
    if target.layout is Layout.NESTED:
        out = {repo: _nested_name(ref, target) for repo, ref in by_repo.items()}
    else:
        prefix = target.registry
        groups: dict[str, list[ImageRef]] = defaultdict(list)
        for ref in by_repo.values():
            groups[ref.repository.rsplit("/", 1)[-1]].append(ref)
        plain = {last for last, group in groups.items() if len(group) == 1}
        for last, group in groups.items():
            for ref in group:
                if last in plain:
                    out[ref.normalized_name] = f"{prefix}/{last}"
                    continue
                name = f"{prefix}/{last}-{_stable_suffix(ref)}"
                if name.rsplit("/", 1)[-1] in plain:  # a suffixed name equal to a plain one
                    name = f"{prefix}/{last}-{_stable_suffix(ref, 12)}"
                out[ref.normalized_name] = name
        if len(set(out.values())) != len(out):  # pragma: no cover - sha256 prefix collision
            raise InputError(
                "two source repositories get the same flat name",
                file="--registry-layout",
                hint="use --registry-layout nested",
            )
    for repo, name in out.items():
        try:
            ImageRef.parse(name)
        except InputError as exc:
            raise InputError(
                f"{by_repo[repo].original}: relocated name {name!r} is not a valid reference:"
                f" {exc.message}",
                file="--registry",
                hint="use a shorter namespace, or --registry-layout flat",
            ) from None
    return out


# --------------------------------------------------------------------------------------------
# The relocated plan


@attrs.frozen
class RelocationPlan(Plan):
    """A :class:`~kotsrewrite.Plan` renaming every image into the customer's registry.

    ``decisions`` carry :attr:`~kotsrewrite.Action.RELOCATE` and the destination as
    ``new_name``; :attr:`pull_from` keeps where each reference is pulled from for the copy
    (what the proxy plan would have pulled). The pull secret holds the registry credentials.
    """

    relocation: RelocationOptions | None = None
    pull_from: Mapping[str, str] = attrs.field(factory=dict)
    """Reference as written -> the image to pull (tag and digest as written)."""

    def docker_config_json(self) -> str:
        """``.dockerconfigjson`` with the customer registry's credentials (compact, sorted)."""
        creds = None if self.relocation is None else self.relocation.credentials
        auths: dict[str, Any] = {}
        if creds is not None:
            raw = f"{creds.username}:{creds.password}".encode()
            auths[creds.host] = {
                "auth": base64.b64encode(raw).decode("ascii"),
                "password": creds.password,
                "username": creds.username,
            }
        return json.dumps({"auths": auths}, sort_keys=True, separators=(",", ":"))


def relocate_plan(
    plan: Plan, inventory: Inventory, relocation: RelocationOptions
) -> RelocationPlan:
    """Turn a proxy plan into one relocating every image to ``relocation.registry``.

    Every image is renamed (name-only kustomize ``images`` entries: tags and digests kept
    exactly), every workload using one gets the pull secret, and the secret holds
    ``relocation.credentials``. Pure.
    """
    options = plan.options
    names = relocated_name([d.image for d in plan.decisions], relocation)
    decisions: dict[ImageRef, ImageDecision] = {}
    pull_from: dict[str, str] = {}
    for d in plan.decisions:
        pull_from[d.image.original] = d.new_image
        decisions[d.image] = attrs.evolve(
            d,
            action=Action.RELOCATE,
            new_name=names[d.image.normalized_name],
            note=f"relocated to {relocation.registry}; copied from {d.new_image}",
        )
    # One name-only entry per spelling of each repository (all its tags go to one name).
    by_repo: dict[str, list[ImageDecision]] = defaultdict(list)
    for d in decisions.values():
        by_repo[d.image.normalized_name].append(d)
    entries: list[RenameEntry] = []
    for repo in sorted(by_repo):
        group = by_repo[repo]
        intended = frozenset(d.image.original for d in group)
        entries.extend((s, names[repo], intended) for s in spellings(d.image for d in group))
    renames, wrong = finish_renames(
        entries, {ref.original: d.new_image for ref, d in decisions.items()}
    )
    if wrong:  # pragma: no cover - every image is renamed: nothing can be renamed wrongly
        raise AssertionError(f"renamed wrongly: {wrong}")
    warnings = list(plan.warnings)
    patches, namespaces, unplaced, unchecked = _patches(
        inventory, set(decisions), options, warnings
    )
    secrets = _secrets(inventory, namespaces, options, warnings)
    field_specs = field_specs_for(inventory.uses)  # every image is renamed
    final = tuple(dict.fromkeys(warnings))
    known = {str(d.get("message")): d for d in plan.warning_details}
    return RelocationPlan(
        options=options,
        decisions=tuple(decisions[ref] for ref in sorted(decisions)),
        renames=renames,
        patches=tuple(patches),
        secrets=tuple(secrets),
        field_specs=tuple(field_specs),
        unmanaged=plan.unmanaged,
        warnings=final,
        warning_details=tuple(
            known.get(w, {"code": "other", "message": w}) for w in final
        ),  # one structured entry per warning, as the proxy plan's
        unplaced=tuple(unplaced),
        unchecked=tuple(unchecked),
        relocation=relocation,
        pull_from=pull_from,
    )


# --------------------------------------------------------------------------------------------
# The copy plan


@attrs.frozen(order=True)
class CopyEntry:
    """One image to copy."""

    destination: str
    """The image as the built midstream names it, tag and digest as written."""
    source: str
    """The reference as written in the manifests (the first spelling, sorted)."""
    pull_from: str
    """The image to pull (proxy path for private images, original for public ones), with
    the tag and digest as written."""
    pull_auth: str
    """``license`` (the proxy or the Replicated registry: the license ID) or ``default``
    (the copier's own credentials, if any)."""
    digest: str | None
    """The manifest digest the copy must have (from the reference, or resolved)."""
    digest_from: str | None
    """``reference``, ``resolved``, or ``None`` (the tag's digest at copy time)."""
    sources: tuple[str, ...] = ()
    """Every reference as written that builds to :attr:`destination`."""

    @property
    def tag(self) -> str | None:
        """The tag of the destination, if any."""
        return ImageRef.parse(self.destination).tag

    def source_image(self) -> str:
        """What the copier pulls: ``pull_from`` by digest when known, else by tag (or
        ``latest``); never tag and digest together (skopeo refuses that)."""
        ref = ImageRef.parse(self.pull_from)
        if self.digest is not None:
            return f"{ref.name}@{self.digest}"
        return f"{ref.name}:{ref.tag or 'latest'}"

    def destination_image(self) -> str:
        """Where the copier pushes: the destination by tag (or ``latest``), by digest when
        the reference has a digest and no tag."""
        ref = ImageRef.parse(self.destination)
        if ref.tag is not None:
            return f"{ref.name}:{ref.tag}"
        if ref.digest is not None:
            return f"{ref.name}@{ref.digest}"
        return f"{ref.name}:latest"

    def to_json(self) -> dict[str, Any]:
        """The entry in ``copy-plan.json``."""
        return {
            "source": self.source,
            "sources": list(self.sources),
            "pullFrom": self.pull_from,
            "pullAuth": self.pull_auth,
            "destination": self.destination,
            "digest": self.digest,
            "digestFrom": self.digest_from,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> CopyEntry:
        """Read one entry back (``where`` names it in errors)."""
        try:
            for key in ("source", "pullFrom", "pullAuth", "destination"):
                if not isinstance(data[key], str):
                    raise TypeError(key)
            digest = data.get("digest")
            if digest is not None and not re.fullmatch(r"sha256:[a-f0-9]{64}", str(digest)):
                raise TypeError("digest")
            ImageRef.parse(data["destination"])
            ImageRef.parse(data["pullFrom"])
            return cls(
                destination=data["destination"],
                source=data["source"],
                pull_from=data["pullFrom"],
                pull_auth=data["pullAuth"],
                digest=digest,
                digest_from=data.get("digestFrom"),
                sources=tuple(data.get("sources") or (data["source"],)),
            )
        except (KeyError, TypeError, InputError) as exc:
            raise InputError(
                f"bad copy plan entry {where}: {exc}",
                hint="give the copy-plan.json written by kotsrewrite rewrite --registry",
            ) from None


@attrs.frozen
class CopyPlan:
    """``copy-plan.json``: every image to copy, sorted by destination (deterministic)."""

    registry: str
    layout: Layout
    license_hosts: tuple[str, ...]
    """Hosts pulled from with the license (the proxy and the Replicated registry)."""
    images: tuple[CopyEntry, ...]
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON document."""
        return {
            "schemaVersion": 1,
            "kind": _COPY_PLAN_KIND,
            "registry": self.registry,
            "registryHost": self.registry.partition("/")[0],
            "layout": str(self.layout),
            "licenseHosts": list(self.license_hosts),
            "images": [e.to_json() for e in self.images],
            "warnings": list(self.warnings),
        }

    def dumps(self) -> str:
        """``copy-plan.json``'s text (indented, stable key order, final newline)."""
        return json.dumps(self.to_json(), indent=2) + "\n"

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CopyPlan:
        """Read ``copy-plan.json`` (or a midstream directory holding one)."""
        name = Path(path)
        if name.is_dir():
            name = name / COPY_PLAN_FILE
        try:
            data = json.loads(name.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(
                f"cannot read the copy plan: {exc.strerror}",
                file=str(name),
                hint="give the copy-plan.json written by kotsrewrite rewrite --registry",
            ) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(
                f"the copy plan is not JSON: {exc}",
                file=str(name),
                hint="give the copy-plan.json written by kotsrewrite rewrite --registry",
            ) from None
        if not isinstance(data, dict) or data.get("kind") != _COPY_PLAN_KIND:
            raise InputError(
                f"not a kotsrewrite copy plan (kind is not {_COPY_PLAN_KIND})",
                file=str(name),
                hint="give the copy-plan.json written by kotsrewrite rewrite --registry",
            )
        images = data.get("images")
        if not isinstance(images, list):
            raise InputError("copy plan without an images list", file=str(name))
        try:
            entries = tuple(
                CopyEntry.from_json(item, f"images[{i}]") for i, item in enumerate(images)
            )
        except InputError as exc:
            raise InputError(exc.message, file=str(name), hint=exc.hint) from None
        try:
            return cls(
                registry=str(data["registry"]),
                layout=Layout(data.get("layout", "nested")),
                license_hosts=tuple(str(h) for h in data.get("licenseHosts", ())),
                images=entries,
            )
        except (KeyError, ValueError) as exc:
            raise InputError(f"bad copy plan: {exc}", file=str(name)) from None


def build_copy_plan(plan: RelocationPlan, digests: Mapping[str, str] | None = None) -> CopyPlan:
    """The copy plan of a relocated plan. ``digests`` maps an entry's :attr:`CopyEntry.pull_from`
    to a digest resolved for its tag (``--resolve``); pure and deterministic."""
    assert plan.relocation is not None
    resolved = dict(digests or {})
    license_hosts = sorted(
        {plan.options.proxy_host.lower(), plan.options.replicated_registry.lower()}
    )
    grouped: dict[str, list[ImageDecision]] = defaultdict(list)
    for d in plan.decisions:
        grouped[d.new_image].append(d)
    entries: list[CopyEntry] = []
    warnings: list[str] = []
    for destination, group in grouped.items():
        first = sorted(group, key=lambda d: d.image.original)[0]
        pull_from = ImageRef.parse(plan.pull_from[first.image.original]).normalized
        domain = ImageRef.parse(pull_from).domain.lower()
        digest, digest_from = first.image.digest, "reference" if first.image.digest else None
        if digest is None and pull_from in resolved:
            digest, digest_from = resolved[pull_from], "resolved"
        entries.append(
            CopyEntry(
                destination=destination,
                source=first.image.original,
                pull_from=pull_from,
                pull_auth="license" if domain in license_hosts else "default",
                digest=digest,
                digest_from=digest_from,
                sources=tuple(sorted(d.image.original for d in group)),
            )
        )
    by_tag: dict[str, set[str | None]] = defaultdict(set)
    for e in entries:
        by_tag[e.destination_image()].add(e.digest)
    for image, found in sorted(by_tag.items()):
        if len(found) > 1:
            warnings.append(
                f"{image}: several digests for one destination tag; the last copied wins the"
                " tag (each stays pullable by its digest)"
            )
    return CopyPlan(
        registry=plan.relocation.registry,
        layout=plan.relocation.layout,
        license_hosts=tuple(license_hosts),
        images=tuple(sorted(entries)),
        warnings=tuple(warnings),
    )
