"""Planning the midstream from image uses and verdicts (pure: no I/O, no clock).

:func:`build_plan` turns an :class:`~kotsrewrite.Inventory`, the verdicts for its images and
the :class:`RewriteOptions` into a :class:`Plan`: what happens to each image (proxy, keep,
secret-only), the kustomize ``images`` renames, the JSON6902 patches adding the pull secret,
the namespaces that get a secret and the ``configurations`` field specs. A :class:`Plan` is
everything a renderer (kustomize files) or a Helm post-renderer (applied directly) needs:

* :meth:`Plan.rename_image` applies the renames exactly as kustomize v5 matches them;
* each :class:`Patch` holds RFC 6902 operations for one object (:meth:`Patch.operations`);
* :meth:`Plan.secret_objects` gives the pull secrets as plain data.
"""

from __future__ import annotations

import base64
import enum
import functools
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, cast

import attrs
import jsonpatch
from jsonpointer import JsonPointer, JsonPointerException

from ._errors import InputError, PolicyError
from ._kustomize_images import (
    ANY,
    Rename,
    RenameEntry,
    apply_renames,
    finish_renames,
    quote_meta,
    simple_pattern,
    spellings,
    tag_qualified,
)
from ._kustomize_images import name_matches as kustomize_image_matches  # the former name
from ._model import (
    EXPIRED,
    Document,
    Evidence,
    ImageField,
    ImageUse,
    Inventory,
    Location,
    OnUnknown,
    ProbeResult,
    Resource,
    Slot,
    Verdict,
)
from ._placement import (
    OnUnplaced,
    Placement,
    PlacementNote,
    Placer,
    SecretPlacement,
    list_ops,
)
from ._policy import describe_unknown, is_unknown, raise_for_unknown, treat_as_private
from ._reference import ImageRef

__all__ = [
    "DEFAULT_PROXY_HOST",
    "DEFAULT_REGISTRY_HOST",
    "Action",
    "FieldSpec",
    "ImageDecision",
    "Patch",
    "PatchOp",
    "PatchTarget",
    "Plan",
    "PullSecret",
    "Rename",
    "RewriteOptions",
    "build_plan",
    "field_specs_for",
    "is_replicated",
    "kustomize_image_matches",
]

#: Replicated's default pull-through proxy host.
DEFAULT_PROXY_HOST = "proxy.replicated.com"
#: Replicated's default registry host.
DEFAULT_REGISTRY_HOST = "registry.replicated.com"

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]+)?")
_INDEX = re.compile(r"\[[0-9]+\]")


class Action(enum.StrEnum):
    """What the midstream does with one image reference."""

    PROXY = "proxy"
    """Renamed to the proxy (or to the custom Replicated domain); its workloads get the secret."""
    KEEP = "keep"
    """Left alone (public)."""
    SECRET_ONLY = "secret-only"
    """Already on the proxy or the Replicated registry: not renamed, workloads get the secret."""
    RELOCATE = "relocate"
    """Renamed into the customer's own registry (``rewrite --registry``); workloads get the
    secret."""


def _check_slug(_: object, __: object, value: str) -> None:
    if len(value) > 53 or not _DNS_LABEL.fullmatch(value):
        raise InputError(
            f"invalid app slug {value!r}: must be a lowercase DNS label of at most 53 characters",
            file="--app-slug",
            hint="use the app slug from the vendor portal, e.g. my-app",
        )


def _check_license(_: object, __: object, value: str) -> None:
    if not value or any(ch.isspace() or not ch.isprintable() for ch in value):
        # Never echo the value: it is a secret.
        raise InputError(
            "invalid license ID: empty or contains whitespace",
            file="--license-id",
            hint="give the license ID from the License file (spec.licenseID), or --license FILE",
        )


def _check_namespace(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    names = [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    for name in names:
        if name == "*" and attribute.name == "additional_namespaces":
            continue
        if not isinstance(name, str) or len(name) > 63 or not _DNS_LABEL.fullmatch(name):
            flag = "--namespace" if attribute.name == "namespace" else "--additional-namespace"
            raise InputError(
                f"invalid namespace {name!r}: must be a lowercase DNS label",
                file=flag,
                hint="namespaces look like my-namespace; '*' means every namespace seen",
            )


def _check_host(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not _HOST.fullmatch(value) or ("." not in value.split(":")[0] and value != "localhost"):
        flag = "--proxy-host" if attribute.name == "proxy_host" else "--replicated-registry"
        raise InputError(
            f"invalid host {value!r}", file=flag, hint="give a host name such as proxy.example.com"
        )


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _field_tuple(value: Iterable[ImageField]) -> tuple[ImageField, ...]:
    return tuple(value)


@attrs.frozen
class RewriteOptions:
    """What the user chose for a rewrite. The license ID never appears in the repr."""

    app_slug: str = attrs.field(validator=_check_slug)
    license_id: str = attrs.field(repr=False, validator=_check_license)
    namespace: str = attrs.field(default="default", validator=_check_namespace)
    """The app namespace: its pull secret carries no ``metadata.namespace``."""
    additional_namespaces: tuple[str, ...] = attrs.field(
        default=(), converter=_str_tuple, validator=_check_namespace
    )
    """Namespaces that always get a secret; ``*`` means every namespace in the manifests."""
    proxy_host: str = attrs.field(default=DEFAULT_PROXY_HOST, validator=_check_host)
    replicated_registry: str = attrs.field(default=DEFAULT_REGISTRY_HOST, validator=_check_host)
    proxy_all: bool = False
    """Proxy every image not on a Replicated host, whatever its verdict (no probing)."""
    on_unknown: OnUnknown = attrs.field(default=OnUnknown.PRIVATE, converter=OnUnknown)
    image_fields: tuple[ImageField, ...] = attrs.field(default=(), converter=_field_tuple)
    """Custom image fields to manage (``--image-field KIND:PATH``)."""
    on_unplaced: OnUnplaced = attrs.field(default=OnUnplaced.WARN, converter=OnUnplaced)
    """A custom resource's PodSpec with no place its CRD keeps for the secret: warn, or fail
    (:class:`~kotsrewrite.PolicyError`)."""

    @property
    def secret_name(self) -> str:
        """Name of the pull secret: ``<slug>-registry``."""
        return f"{self.app_slug}-registry"

    @property
    def replicated_hosts(self) -> frozenset[str]:
        """Hosts whose images are pulled with the secret and never probed (lowercase: host
        names compare case-insensitively)."""
        return frozenset({self.proxy_host.lower(), self.replicated_registry.lower()})


# --------------------------------------------------------------------------------------------
# Plan value objects


@attrs.frozen
class ImageDecision:
    """The decision for one image reference (as written) and why."""

    image: ImageRef
    verdict: Verdict | None
    """The verdict used (probe or known images); ``None`` when there was none."""
    evidence: Evidence
    action: Action
    new_name: str | None
    """kustomize ``newName`` (repository without tag or digest) when renamed."""
    locations: tuple[Location, ...]
    unknown: bool = False
    """True when the verdict proved nothing and ``--on-unknown`` decided."""
    note: str | None = None
    """Why the action differs from what the verdict alone says, if it does."""

    @property
    def new_image(self) -> str:
        """The reference after the rewrite, tag and digest kept as written."""
        if self.new_name is None:
            return self.image.original
        out = self.new_name
        if self.image.tag is not None:
            out += f":{self.image.tag}"
        if self.image.digest is not None:
            out += f"@{self.image.digest}"
        return out


@attrs.frozen
class PatchTarget:
    """The exact kustomize patch target of one object."""

    group: str
    version: str
    kind: str
    name: str
    namespace: str | None

    def to_json(self) -> dict[str, str]:
        """The kustomization ``target`` mapping (empty group and absent namespace left out)."""
        out = {"group": self.group} if self.group else {}
        out |= {"version": self.version, "kind": self.kind, "name": self.name}
        if self.namespace is not None:
            out["namespace"] = self.namespace
        return out


@attrs.frozen
class PatchOp:
    """One RFC 6902 ``add`` operation."""

    path: str
    value: Any
    op: str = "add"

    def to_json(self) -> dict[str, Any]:
        """The operation as JSON data."""
        return {"op": self.op, "path": self.path, "value": self.value}


@attrs.frozen
class Patch:
    """A JSON6902 patch adding the pull secret to every PodSpec of one object that needs it."""

    target: PatchTarget
    ops: tuple[PatchOp, ...]
    file: str
    """Where the object came from (for the report)."""
    line: int
    resource: int
    """Index into :attr:`Inventory.resources`; ``-1`` for a ServiceAccount's patch."""
    placements: tuple[SecretPlacement, ...] = ()
    """Which rule placed the secret, per PodSpec served (see :class:`Placement`)."""

    @property
    def placement(self) -> Placement | None:
        """The rule of this patch's placements when they all agree (``None`` otherwise)."""
        rules = {p.placement for p in self.placements}
        return rules.pop() if len(rules) == 1 else None

    def operations(self) -> list[dict[str, Any]]:
        """The operations as JSON data (what ``jsonpatch.apply_patch`` takes)."""
        return [op.to_json() for op in self.ops]

    def to_json(self) -> dict[str, Any]:
        """JSON form for the report."""
        return {
            "target": self.target.to_json(),
            "operations": self.operations(),
            "file": self.file,
            "line": self.line,
            "placements": [p.to_json() for p in self.placements],
        }


@attrs.frozen(order=True)
class FieldSpec:
    """A kustomize ``images`` fieldSpec for a ``configurations`` file."""

    kind: str
    path: str
    """Slash separated, lists as ``[]``: ``spec/ephemeralContainers[]/image``."""

    def to_json(self) -> dict[str, str]:
        """The fieldSpec mapping."""
        return {"path": self.path, "kind": self.kind}


@attrs.frozen(order=True)
class PullSecret:
    """One pull secret to create; ``namespace`` ``None`` is the app namespace (no
    ``metadata.namespace``, so it follows ``kubectl apply -n``)."""

    namespace: str | None


@attrs.frozen
class Plan:
    """Everything the midstream does, computed purely from uses, verdicts and options."""

    options: RewriteOptions
    decisions: tuple[ImageDecision, ...]
    """One per distinct managed reference, sorted by the reference as written."""
    renames: tuple[Rename, ...]
    patches: tuple[Patch, ...]
    secrets: tuple[PullSecret, ...]
    field_specs: tuple[FieldSpec, ...]
    """kustomize ``images`` fieldSpecs for uses kustomize does not rewrite by default."""
    unmanaged: tuple[ImageUse, ...] = ()
    warnings: tuple[str, ...] = ()
    unplaced: tuple[PlacementNote, ...] = ()
    """PodSpecs of custom resources needing the secret where their CRD keeps none."""
    unchecked: tuple[PlacementNote, ...] = ()
    """PodSpecs of custom resources whose CRD is not in the base: secret beside the PodSpec,
    unchecked."""
    warning_details: tuple[Mapping[str, Any], ...] = attrs.field(default=(), eq=False)
    """One JSON-ready entry per warning, in the same order (for the report): ``code``
    (``unknown-verdict``: an image neither proved public nor private, with ``image``,
    ``verdict``, ``onUnknown``, ``action``, ``reason`` and ``causes``; ``unmanaged-field``:
    an image field not rewritten, with ``image``, ``location`` and ``imageField``;
    ``unplaced``: a custom resource's PodSpec with no place for the secret, with the fields of
    :class:`PlacementNote`; ``other``),
    ``message`` (the warning itself) and the facts of that code."""

    @property
    def secret_name(self) -> str:
        """Name of the pull secret."""
        return self.options.secret_name

    @property
    def secret_namespaces(self) -> tuple[str, ...]:
        """The namespaces given a secret, the app namespace first."""
        return tuple(s.namespace or self.options.namespace for s in self.secrets)

    def decision(self, image: ImageRef | str) -> ImageDecision:
        """The decision for a reference as written."""
        text = image.original if isinstance(image, ImageRef) else image
        for decision in self.decisions:
            if decision.image.original == text:
                return decision
        raise KeyError(text)

    def rename_image(self, image: str) -> str:
        """Apply the ``images`` entries to one image string, in order, as kustomize does."""
        return apply_renames(image, self.renames)

    def docker_config_json(self) -> str:
        """The ``.dockerconfigjson`` of the pull secret (compact JSON, sorted keys)."""
        lid = self.options.license_id
        auth = base64.b64encode(f"LICENSE_ID:{lid}".encode()).decode("ascii")
        entry = {"auth": auth, "password": lid, "username": "LICENSE_ID"}
        hosts = sorted({self.options.proxy_host, self.options.replicated_registry})
        return json.dumps(
            {"auths": {host: entry for host in hosts}}, sort_keys=True, separators=(",", ":")
        )

    def secret_object(self, secret: PullSecret) -> dict[str, Any]:
        """One pull secret as plain data (``data`` base64 encoded, as KOTS writes it)."""
        metadata: dict[str, Any] = {"name": self.secret_name}
        if secret.namespace is not None:
            metadata["namespace"] = secret.namespace
        encoded = base64.b64encode(self.docker_config_json().encode()).decode("ascii")
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": encoded},
        }

    def secret_objects(self) -> list[dict[str, Any]]:
        """Every pull secret as plain data, in :attr:`secrets` order."""
        return [self.secret_object(s) for s in self.secrets]

    def counts(self) -> dict[str, int]:
        """Images by verdict class: ``private``, ``public``, ``unknown`` (and ``replicated``)."""
        out = {"images": len(self.decisions), "private": 0, "public": 0, "unknown": 0}
        out["replicated"] = 0
        for d in self.decisions:
            if d.action is Action.SECRET_ONLY or d.evidence.source == "replicated":
                out["replicated"] += 1
            elif d.unknown:
                out["unknown"] += 1
            elif d.verdict is Verdict.PUBLIC:
                out["public"] += 1
            else:
                out["private"] += 1
        return out


# --------------------------------------------------------------------------------------------
# Building the plan


def _node_data(node: Any) -> Any:
    """Plain Python data of a composed ruamel node (fallback for the loader's converter)."""
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

    if isinstance(node, MappingNode):
        return {_node_data(k): _node_data(v) for k, v in node.value}
    if isinstance(node, SequenceNode):
        return [_node_data(v) for v in node.value]
    if isinstance(node, ScalarNode):
        if node.tag == "tag:yaml.org,2002:null":
            return None
        return node.value
    return node


def _object_data(resource: Resource) -> Any:
    return _node_data_of(resource.document)


def _node_data_of(doc: Document) -> Any:
    from . import _manifests

    convert = getattr(_manifests, "node_to_data", None)
    node = doc.node
    if convert is not None:
        try:
            return convert(node)
        except Exception:  # pragma: no cover - fall back on our own reading
            pass
    return _node_data(node)


def field_specs_for(uses: Iterable[ImageUse]) -> list[FieldSpec]:
    """The ``configurations`` field specs kustomize needs to rename ``uses`` (those in fields
    it does not rewrite by default), sorted."""
    return sorted(
        {
            FieldSpec(kind=use.location.kind, path=_field_spec_path(use.location.field))
            for use in uses
            if not use.slot.rewritten_by_default
        }
    )


def _field_spec_path(field: str) -> str:
    return _INDEX.sub("[]", field).replace(".", "/")


def _replicated_new_name(ref: ImageRef, options: RewriteOptions) -> tuple[Action, str | None]:
    """Action for an image on a Replicated host (or on a default host replaced by a custom
    domain), or raise KeyError when the image is not on one."""
    domain = ref.domain.lower()
    if domain in options.replicated_hosts:
        return Action.SECRET_ONLY, None
    if domain == DEFAULT_PROXY_HOST and options.proxy_host != DEFAULT_PROXY_HOST:
        return Action.PROXY, f"{options.proxy_host}/{ref.path}"
    if domain == DEFAULT_REGISTRY_HOST and options.replicated_registry != DEFAULT_REGISTRY_HOST:
        return Action.PROXY, f"{options.replicated_registry}/{ref.path}"
    raise KeyError(domain)


def is_replicated(ref: ImageRef, options: RewriteOptions) -> bool:
    """Whether ``ref`` is on the proxy or the Replicated registry (custom or default
    domain): such images are never probed and never need a verdict."""
    domain = ref.domain.lower()
    return domain in options.replicated_hosts or domain in (
        DEFAULT_PROXY_HOST,
        DEFAULT_REGISTRY_HOST,
    )


def _proxy_name(ref: ImageRef, options: RewriteOptions) -> str:
    return f"{options.proxy_host}/proxy/{options.app_slug}/{ref.normalized_name}"


def _renames_for(
    decisions: Mapping[ImageRef, ImageDecision], options: RewriteOptions
) -> tuple[list[RenameEntry], list[str]]:
    """Candidate entries (see :data:`RenameEntry`), plus refs that must be proxied
    because kustomize cannot tell them apart from a proxied tag of their repository."""
    by_repo: dict[str, list[ImageDecision]] = defaultdict(list)
    for d in decisions.values():
        if d.action is not Action.SECRET_ONLY:
            by_repo[d.image.normalized_name].append(d)
    entries: list[RenameEntry] = []
    escalate: list[str] = []
    for repo in sorted(by_repo):
        group = by_repo[repo]
        proxied = [d for d in group if d.action is Action.PROXY]
        if not proxied:
            continue
        new_names = {d.new_name for d in proxied}
        uniform = len(proxied) == len(group) and len(new_names) == 1
        if not uniform and any(d.image.tag is None and d.image.digest is None for d in proxied):
            # `repo` alone matches every tag: the public tags must be proxied too.
            escalate.extend(d.image.original for d in group if d.action is not Action.PROXY)
            uniform = True
        if uniform:
            names = spellings(d.image for d in group)
            intended = frozenset(d.image.original for d in group)
            new_name = proxied[0].new_name
            assert new_name is not None
            entries.extend((s, new_name, intended) for s in names)
        else:
            for d in proxied:
                assert d.new_name is not None
                entries.append((tag_qualified(d.image), d.new_name, frozenset({d.image.original})))
    return entries, escalate


def _finish_renames(
    entries: list[RenameEntry],
    decisions: Mapping[ImageRef, ImageDecision],
) -> tuple[tuple[Rename, ...], list[str]]:
    """Escape names that would match other images; return the renames and the references
    that still get renamed although kept (to be proxied)."""
    renames, wrong = finish_renames(
        entries, {ref.original: d.new_image for ref, d in decisions.items()}
    )
    proxied = {ref.original for ref, d in decisions.items() if d.action is Action.PROXY}
    for image in wrong:
        if image in proxied:  # pragma: no cover - a planner bug, never input
            raise AssertionError(f"{image} renamed wrongly, not to its decision")
    return renames, wrong


def _verdict_map(results: Iterable[ProbeResult]) -> dict[str, ProbeResult]:
    """Results by reference as written and normalized: the first wins, an expired one only
    where no other result exists."""
    out: dict[str, ProbeResult] = {}
    expired: list[ProbeResult] = []
    for result in results:
        if result.evidence.source == EXPIRED:
            expired.append(result)
            continue
        out.setdefault(result.image.original, result)
        out.setdefault(result.image.normalized, result)
    for result in expired:
        out.setdefault(result.image.original, result)
        out.setdefault(result.image.normalized, result)
    return out


def build_plan(
    inventory: Inventory,
    results: Iterable[ProbeResult] | Mapping[ImageRef, ProbeResult],
    options: RewriteOptions,
) -> Plan:
    """Decide every image and compute the renames, patches, secrets and field specs.

    ``results`` holds the verdicts (from probing or known images), matched by the reference
    as written, else by the normalized reference; an image with none has no verdict and the
    ``on_unknown`` policy decides (as do ``not_found``, ``rate_limited``, ``unreachable``).
    Images on the proxy or the Replicated registry host need no verdict; with ``proxy_all``
    every other image is proxied.

    Raises :class:`~kotsrewrite.PolicyError` under ``--on-unknown fail`` when any image is
    unknown, and :class:`~kotsrewrite.InputError` when a pull-secret patch cannot apply to its
    object (e.g. ``imagePullSecrets`` is not a list).
    """
    try:
        return _build_plan(inventory, results, options)
    except InputError as exc:
        raise exc.within(inventory.base_dir) from None


def _build_plan(
    inventory: Inventory,
    results: Iterable[ProbeResult] | Mapping[ImageRef, ProbeResult],
    options: RewriteOptions,
) -> Plan:
    verdicts = _verdict_map(results.values() if isinstance(results, Mapping) else results)
    locations: dict[ImageRef, list[Location]] = defaultdict(list)
    for use in inventory.uses:
        locations[use.ref].append(use.location)
    warnings: list[str] = list(inventory.warnings)
    details: dict[str, dict[str, Any]] = {}
    unknown: list[tuple[ImageRef, Verdict | None]] = []
    decisions: dict[ImageRef, ImageDecision] = {}
    for ref in sorted(locations):
        locs = tuple(sorted(locations[ref]))
        if is_replicated(ref, options):
            action, new_name = _replicated_new_name(ref, options)
            evidence = Evidence(
                reason="on the Replicated proxy or registry: pulled with the license secret",
                source="replicated",
            )
            decisions[ref] = ImageDecision(ref, None, evidence, action, new_name, locs)
            continue
        result = verdicts.get(ref.original) or verdicts.get(ref.normalized)
        verdict = result.verdict if result is not None else None
        why = None
        if result is not None and result.evidence.source == EXPIRED:
            verdict, why = None, result.evidence.reason  # too old to count
        if options.proxy_all:
            evidence = Evidence(reason="proxy-all: every image is proxied", source="skipped")
            if result is not None:
                evidence = result.evidence
            decisions[ref] = ImageDecision(
                ref, verdict, evidence, Action.PROXY, _proxy_name(ref, options), locs
            )
            continue
        evidence = (
            result.evidence
            if result is not None
            else Evidence(
                reason="no verdict: not probed (offline) and not in the known images",
                source="skipped",
            )
        )
        is_unk = is_unknown(verdict)
        private = treat_as_private(verdict, options.on_unknown)
        if is_unk:
            unknown.append((ref, verdict))
            message = describe_unknown(ref, verdict, options.on_unknown, why=why)
            warnings.append(message)
            details[message] = {
                "code": "unknown-verdict",
                "image": ref.original,
                "verdict": None if verdict is None else str(verdict),
                "onUnknown": str(options.on_unknown),
                "action": str(Action.PROXY if private else Action.KEEP),
                "reason": evidence.reason,
                "causes": [{"cause": str(c), "host": h} for c, h in evidence.causes()],
            }
        decisions[ref] = ImageDecision(
            ref,
            verdict,
            evidence,
            Action.PROXY if private else Action.KEEP,
            _proxy_name(ref, options) if private else None,
            locs,
            unknown=is_unk,
        )
    raise_for_unknown(unknown, options.on_unknown)

    # Renames: escalate kept references kustomize cannot separate from proxied ones.
    renames: tuple[Rename, ...] = ()
    for _ in range(len(decisions) + 1):
        entries, escalate = _renames_for(decisions, options)
        renames, wrong = _finish_renames(entries, decisions)
        escalate = sorted(set(escalate) | set(wrong))
        if not escalate:
            break
        for ref, d in list(decisions.items()):
            if ref.original in escalate:
                note = (
                    "proxied although not private: kustomize cannot rename the other tags of"
                    " its repository without renaming this one"
                )
                warnings.append(f"{ref.original}: {note}")
                decisions[ref] = attrs.evolve(
                    d, action=Action.PROXY, new_name=_proxy_name(ref, options), note=note
                )

    _refuse_invalid_names(decisions)
    needs_secret = {ref for ref, d in decisions.items() if d.action is not Action.KEEP}
    patches, namespaces, unplaced, unchecked = _patches(inventory, needs_secret, options, warnings)
    if unplaced and options.on_unplaced is OnUnplaced.FAIL:
        raise PolicyError(
            f"{len(unplaced)} PodSpec(s) of custom resources have no place for the pull secret"
            " that the API server keeps: "
            + "; ".join(
                f"{inventory.shown(u.file)}:{u.line}: {u.kind} {u.name} {u.pod_spec}"
                for u in unplaced
            ),
            hint="name a ServiceAccount of the base in their serviceAccountName, or add the"
            " secret to the ServiceAccount their pods run as; --on-unplaced warn goes on",
        )
    field_specs = field_specs_for(
        use for use in inventory.uses if decisions[use.ref].new_name is not None
    )
    secrets = _secrets(inventory, namespaces, options, warnings)
    for use in inventory.unmanaged:
        image_field = f"{use.location.kind}:{_field_spec_path(use.location.field)}"
        message = (
            f"{inventory.shown(use.location.file)}:{use.location.line}: {use.ref.original} in"
            f" {use.location.kind} {use.location.name} field {use.location.field} is not"
            f" rewritten; manage it with --image-field {image_field}"
        )
        warnings.append(message)
        details[message] = {
            "code": "unmanaged-field",
            "image": use.ref.original,
            "location": use.location.to_json(),
            "imageField": image_field,
        }
    for item in unplaced:
        message = (
            f"{inventory.shown(item.file)}:{item.line}: {item.kind} {item.name} {item.pod_spec}:"
            f" no place for the pull secret {options.secret_name} that the API server keeps"
            f" ({item.reason}); name a ServiceAccount of the base in its serviceAccountName, or"
            f" add imagePullSecrets: [{{name: {options.secret_name}}}] to the ServiceAccount its"
            " pods run as"
        )
        warnings.append(message)
        details[message] = {"code": "unplaced", **item.to_json()}
    final = tuple(dict.fromkeys(warnings))
    return Plan(
        options=options,
        decisions=tuple(decisions[ref] for ref in sorted(decisions)),
        renames=renames,
        patches=tuple(patches),
        secrets=tuple(secrets),
        field_specs=tuple(field_specs),
        unmanaged=tuple(inventory.unmanaged),
        warnings=final,
        warning_details=tuple(
            {"code": details.get(w, {}).get("code", "other"), "message": w, **details.get(w, {})}
            for w in final
        ),
        unplaced=tuple(unplaced),
        unchecked=tuple(unchecked),
    )


def _refuse_invalid_names(decisions: Mapping[ImageRef, ImageDecision]) -> None:
    """Raise :class:`InputError` (``FILE:LINE`` of the first use) when an image to rename
    would get a name the distribution reference grammar rejects: kubelet refuses it. The
    usual cause is a source registry with a port: ``registry.example.com:5000/team/app``
    becomes ``<proxy>/proxy/<slug>/registry.example.com:5000/team/app``, a ``:`` inside a path
    component. (Images kept as they are, with a port or not, are not concerned.)"""
    bad: list[tuple[ImageDecision, str]] = []
    for ref in sorted(decisions):
        d = decisions[ref]
        if d.new_name is None:
            continue
        try:
            ImageRef.parse(d.new_image)
        except InputError as exc:
            bad.append((d, exc.message))
    if not bad:
        return
    d, why = bad[0]
    more = f" (and {len(bad) - 1} more image(s) like it)" if len(bad) > 1 else ""
    where = d.locations[0] if d.locations else None
    if ":" in d.image.domain:
        message = (
            f"{d.image.original}: cannot be pulled through the proxy: its registry has a port,"
            f" and {d.new_image} is not a valid image reference (':' in a path component){more}"
        )
        hint = (
            "serve the image from a registry on the default HTTPS port, or, if customers"
            " can pull it as it is, record it as public (--known-images, isPrivate: false)"
        )
    else:
        message = (
            f"{d.image.original}: its proxied name {d.new_image} is not a valid image"
            f" reference: {why}{more}"
        )
        hint = (
            "rename the image (lowercase repository, shorter name) or, if customers can pull"
            " it as it is, record it as public (--known-images, isPrivate: false)"
        )
    raise InputError(
        message,
        file=where.file if where is not None else None,
        line=where.line if where is not None else None,
        hint=hint,
    )


def _patches(
    inventory: Inventory,
    needs_secret: set[ImageRef],
    options: RewriteOptions,
    warnings: list[str],
) -> tuple[list[Patch], set[str], list[PlacementNote], list[PlacementNote]]:
    """One patch per object with a PodSpec using an image that needs the secret (custom
    resources: where their CRD keeps it, see :mod:`kotsrewrite._placement`), one per
    ServiceAccount given the secret; and the unplaced and unchecked PodSpecs."""
    secret = options.secret_name
    pointers: dict[int, set[str]] = defaultdict(set)
    namespaces: set[str] = set()
    placer = Placer(inventory, options.namespace, options.image_fields)
    field_docs = {(d.file, d.index, d.item): d for d in inventory.field_objects}
    fields: dict[int, tuple[Document, dict[str, int]]] = {}
    for use in inventory.uses:
        if use.ref not in needs_secret:
            continue
        if use.resource is not None and use.pod_spec is not None:
            pointers[use.resource].add(use.pod_spec)
        elif use.slot is Slot.FIELD and use.pod_spec is None:
            loc = use.location
            owner = field_docs.get((loc.file, loc.document, loc.item))
            if owner is not None and placer.is_custom(owner):
                fields.setdefault(id(owner), (owner, {}))[1].setdefault(use.ref.original, loc.line)
        if use.location.namespace is not None:
            namespaces.add(use.location.namespace)
    # Work: (resource index or -1, object, PodSpec pointers, custom image fields' images).
    work: list[tuple[int, Resource, list[str], dict[str, int]]] = [
        (i, inventory.resources[i], sorted(pointers[i]), {}) for i in sorted(pointers)
    ]
    by_doc = {id(inventory.resources[i].document): i for i in range(len(inventory.resources))}
    for owner, images in fields.values():
        i = by_doc.get(id(owner))
        merged = next((w for w in work if w[0] == i), None) if i is not None else None
        if merged is not None:
            merged[3].update(images)
        elif i is not None:
            work.append((i, inventory.resources[i], [], images))
        else:
            work.append((-1, Resource(document=owner, pod_specs=()), [], images))
    patches: list[Patch] = []
    targets = _TargetIndex(inventory)
    unplaced: list[PlacementNote] = []
    unchecked: list[PlacementNote] = []
    accounts: dict[int, tuple[Document, list[SecretPlacement]]] = {}
    for index, resource, pod_pointers, field_images in work:
        doc = resource.document
        if doc.name is None:
            warnings.append(
                f"{inventory.shown(doc.file)}:{doc.line}: {doc.kind} has no metadata.name, so no"
                " patch can"
                f" target it; add imagePullSecrets: [{{name: {secret}}}] yourself"
            )
            continue
        ops: list[PatchOp] = []
        placements: list[SecretPlacement] = []
        parents: list[str] = []
        if placer.is_custom(doc):
            placed = placer.place(resource, pod_pointers, secret, field_images)
            unplaced += placed.unplaced
            unchecked += placed.unchecked
            for account, ptr in placed.service_accounts:
                entry = accounts.setdefault(id(account), (account, []))
                entry[1].append(
                    SecretPlacement(
                        Placement.SERVICE_ACCOUNT,
                        ptr,
                        "/imagePullSecrets",
                        doc.kind,
                        doc.namespace,
                        doc.name,
                    )
                )
            data = placed.data if placed.data is not None else _object_data(resource)
            for parent, (rule, served) in sorted(placed.lists.items()):
                new = [PatchOp(path, value) for path, value in list_ops(data, parent, secret)]
                if not new:
                    continue
                ops += new
                parents.append(parent)
                placements += [
                    SecretPlacement(
                        rule,
                        ptr,
                        f"{parent}/imagePullSecrets",
                        doc.kind,
                        doc.namespace,
                        doc.name,
                    )
                    for ptr in served
                ]
        else:
            sites = {site.pointer: site for site in resource.pod_specs}
            for pointer in pod_pointers:
                site = sites.get(pointer)
                existing = site.pull_secrets if site is not None else None
                if existing is None:
                    ops.append(PatchOp(f"{pointer}/imagePullSecrets", [{"name": secret}]))
                elif secret not in existing:
                    ops.append(PatchOp(f"{pointer}/imagePullSecrets/-", {"name": secret}))
                else:
                    continue
                parents.append(pointer)
                placements.append(
                    SecretPlacement(
                        Placement.BESIDE_PODSPEC,
                        pointer,
                        f"{pointer}/imagePullSecrets",
                        doc.kind,
                        doc.namespace,
                        doc.name,
                    )
                )
        if not ops:
            continue
        patch = Patch(
            target=PatchTarget(doc.group, doc.version, doc.kind, doc.name, doc.namespace),
            ops=tuple(ops),
            file=doc.file,
            line=doc.line,
            resource=index,
            placements=tuple(placements),
        )
        _check_patch(patch, resource, parents, secret)
        patches.append(_exact_target(patch, targets, warnings, inventory))
    for account, serving in accounts.values():
        account_patch = _account_patch(account, serving, inventory, secret)
        if account_patch is not None:
            patches.append(account_patch)
    return patches, namespaces, unplaced, unchecked


def _account_patch(
    account: Document, served: list[SecretPlacement], inventory: Inventory, secret: str
) -> Patch | None:
    """The patch adding the secret to a ServiceAccount (``None`` when it already has it)."""
    data = _node_data_of(account)
    ops = [PatchOp(path, value) for path, value in list_ops(data, "", secret)]
    if not ops:
        return None
    assert account.name is not None
    namespace = account.namespace
    if namespace is None and any(
        other.name == account.name and other is not account for other in inventory.service_accounts
    ):
        namespace = "default"  # kustomize's namespace of an object that names none
    patch = Patch(
        target=PatchTarget(account.group, account.version, account.kind, account.name, namespace),
        ops=tuple(ops),
        file=account.file,
        line=account.line,
        resource=-1,
        placements=tuple(served),
    )
    _check_patch(patch, Resource(document=account, pod_specs=()), [""], secret)
    return patch


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    """``pattern`` compiled (``None`` when it is not a valid regular expression)."""
    try:
        return re.compile(pattern)
    except re.error:  # pragma: no cover - targets are names or escaped names
        return None


def _field_selects(pattern: str, value: str) -> bool:
    if not pattern:
        return True
    compiled = _compiled(pattern)
    if compiled is None:  # pragma: no cover - targets are names or escaped names
        return pattern == value
    return compiled.fullmatch(value) is not None


def _selects(target: PatchTarget, doc: Any) -> bool:
    """Whether kustomize v5 selects ``doc`` with ``target``: every field is an anchored regular
    expression, an empty one matches anything, and an object without a namespace is in
    ``default`` (so target namespace ``default`` selects it, and an absent one selects every
    namespace)."""
    return (
        _field_selects(target.name, doc.name or "")
        and _field_selects(target.kind, doc.kind)
        and _field_selects(target.namespace or "", doc.namespace or "default")
        and _field_selects(target.version, doc.version)
        and _field_selects(target.group, doc.group)
    )


class _TargetIndex:
    """The named objects of an inventory indexed by name (and namespace), so that finding
    what a patch target selects looks at a few candidates instead of every object. The index
    only narrows: each candidate is still checked with :func:`_selects`."""

    def __init__(self, inventory: Inventory) -> None:
        self._docs: list[tuple[int, Any]] = [
            (i, r.document)
            for i, r in enumerate(inventory.resources)
            if r.document.name is not None
        ]
        self._by_name: dict[str, list[int]] = defaultdict(list)
        self._by_name_ns: dict[tuple[str, str], list[int]] = defaultdict(list)
        self._by_length: dict[int, list[int]] = defaultdict(list)
        for pos, (_, doc) in enumerate(self._docs):
            name: str = doc.name
            self._by_name[name].append(pos)
            self._by_name_ns[(name, doc.namespace or "default")].append(pos)
            self._by_length[len(name)].append(pos)

    def _candidates(self, target: PatchTarget) -> Iterable[int]:
        tokens = simple_pattern(target.name)
        if tokens is None:
            return range(len(self._docs))
        if ANY not in tokens:
            name = "".join(cast(list[str], tokens))
            namespace = simple_pattern(target.namespace or "")
            if namespace is not None and ANY not in namespace:
                return self._by_name_ns.get((name, "".join(cast(list[str], namespace))), ())
            return self._by_name.get(name, ())
        prefix = "".join(cast(list[str], tokens[: tokens.index(ANY)]))
        return (
            pos
            for pos in self._by_length.get(len(tokens), ())
            if self._docs[pos][1].name.startswith(prefix)
        )

    def first_other(self, target: PatchTarget, own: int) -> Any | None:
        """The first object (in inventory order) other than resource ``own`` that ``target``
        selects, or ``None``."""
        for pos in self._candidates(target):
            index, doc = self._docs[pos]
            if index != own and _selects(target, doc):
                return doc
        return None


def _exact_target(
    patch: Patch, index: _TargetIndex, warnings: list[str], inventory: Inventory
) -> Patch:
    """Narrow ``patch.target`` until it selects only its own object.

    A target without a namespace selects that name in every namespace: for an object without
    a namespace it names ``default`` (where kustomize puts such objects). Names and groups are
    regular expressions to kustomize (``my.app`` selects ``my-app``): they are escaped. Should a
    target still select another object, a warning says so.
    """
    target = patch.target
    if index.first_other(target, patch.resource) is None:
        return patch
    if target.namespace is None:
        target = attrs.evolve(target, namespace="default")
    if index.first_other(target, patch.resource) is not None:
        target = attrs.evolve(target, group=quote_meta(target.group), name=quote_meta(target.name))
    other = index.first_other(target, patch.resource)
    if other is not None:
        warnings.append(
            f"{inventory.shown(patch.file)}:{patch.line}: the patch for {target.kind}"
            f" {patch.target.name} also selects {other.kind} {other.name}"
            f" ({inventory.shown(other.file)}:{other.line}): the pull secret"
            " may be added to both"
        )
    return attrs.evolve(patch, target=target)


def _check_patch(patch: Patch, resource: Resource, pointers: list[str], secret: str) -> None:
    """Apply the patch to the object's data with jsonpatch; the secret must then be in each
    PodSpec's imagePullSecrets exactly once."""
    doc = resource.document
    where = f"{doc.kind} {doc.name}"
    try:
        # The object data is built afresh here: patch it in place (no deep copy).
        patched = jsonpatch.JsonPatch(cast(Any, patch.operations())).apply(
            _object_data(resource), in_place=True
        )
        for pointer in pointers:
            spec = JsonPointer(pointer).resolve(patched)
            names = [s.get("name") for s in spec["imagePullSecrets"] if isinstance(s, dict)]
            if names.count(secret) != 1:
                raise ValueError(f"{secret} appears {names.count(secret)} times")
    except (jsonpatch.JsonPatchException, JsonPointerException, ValueError) as exc:
        raise InputError(
            f"cannot add the pull secret to {where}: {exc}",
            file=doc.file,
            line=doc.line,
            hint="imagePullSecrets must be a list of {name: ...} mappings",
        ) from None
    except (KeyError, TypeError) as exc:
        raise InputError(
            f"cannot add the pull secret to {where}: unexpected structure ({exc})",
            file=doc.file,
            line=doc.line,
            hint="imagePullSecrets must be a list of {name: ...} mappings",
        ) from None


def _secrets(
    inventory: Inventory, workload_ns: set[str], options: RewriteOptions, warnings: list[str]
) -> list[PullSecret]:
    """The app namespace secret (no namespace) plus one per other namespace needed.

    kustomize treats an object without a namespace as being in ``default``, so a secret
    without a namespace and one in ``default`` collide. When ``default`` needs a secret but is
    not the app namespace, the app namespace's secret names its namespace explicitly.
    """
    wanted = set(workload_ns)
    for ns in options.additional_namespaces:
        wanted |= set(inventory.namespaces) if ns == "*" else {ns}
    wanted.discard(options.namespace)
    app = PullSecret(namespace=None)
    if "default" in wanted:
        app = PullSecret(namespace=options.namespace)
        warnings.append(
            f"the pull secret for the app namespace names it ({options.namespace}) because"
            " namespace default needs its own; apply with -n"
            f" {options.namespace}"
        )
    return [app, *(PullSecret(namespace=ns) for ns in sorted(wanted))]
