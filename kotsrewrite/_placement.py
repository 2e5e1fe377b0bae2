"""Where the pull secret goes on a custom resource so that the API server keeps it (pure).

kotsrewrite finds PodSpecs at any depth of custom resources. The API server prunes every field
the resource's structural schema does not specify (see :mod:`kotsrewrite._schema`), so an
``imagePullSecrets`` added beside such a PodSpec may silently vanish. When the base holds the
CustomResourceDefinition, the secret is placed, in order of preference:

1. ``beside-podspec``: ``imagePullSecrets`` beside the PodSpec, when the schema keeps it there;
2. ``ancestor``: the nearest enclosing object whose schema declares an ``imagePullSecrets``
   array of ``{name}`` objects (Argo Workflows' ``spec.imagePullSecrets``). An enclosing
   object also offers the ``imagePullSecrets`` of its *pod template*: a property named
   ``podTemplate`` (any case, e.g. ``taskPodTemplate``) of that object, or of one of its
   object properties (Tekton: ``spec.podTemplate`` of a TaskRun, ``spec.taskRunTemplate.
   podTemplate`` of a v1 PipelineRun, which is a sibling of the ancestor ``spec.pipelineSpec``,
   not an ancestor). At each enclosing object, its own field comes first, then pod templates
   one level down, then two levels down; missing objects on the way are created by the patch;
3. ``service-account``: the ServiceAccount the PodSpec names (``serviceAccountName`` of the
   PodSpec, else the nearest enclosing object's ``serviceAccountName``, a field the schema
   must keep), when that ServiceAccount is in the base in the resource's namespace (pods of a
   custom resource run in its namespace): its ``imagePullSecrets`` gets the secret, and the
   kubelet gives it to every pod that runs as it;
4. nowhere: the PodSpec is *unplaced*, reported with a reason.

A managed custom image field (``--image-field``) of a custom resource is served the same way
from the object holding it, by rules 2 to 4 (that object has no ``imagePullSecrets``).

Built-in kinds (Deployment, Pod, ...) are not custom resources: their secret goes beside the
PodSpec as always. A custom resource whose CRD is not in the base keeps that placement too
(``legacy-unchecked``) and is listed as *unchecked*.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs
from ruamel.yaml.nodes import MappingNode, ScalarNode

from ._manifests import node_to_data
from ._model import Document, ImageField, Inventory, Resource
from ._schema import Pruner, Schema, pruner_for, schema_at

__all__ = [
    "BUILTIN_GROUPS",
    "OnUnplaced",
    "Placement",
    "PlacementNote",
    "Placer",
    "SecretPlacement",
    "covering_placement",
    "pointer_path",
]

#: API groups of Kubernetes' own kinds: objects of these groups are never custom resources.
BUILTIN_GROUPS = frozenset(
    {
        "",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "apps",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "autoscaling",
        "batch",
        "certificates.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "extensions",
        "flowcontrol.apiserver.k8s.io",
        "internal.apiserver.k8s.io",
        "networking.k8s.io",
        "node.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "resource.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
        "storagemigration.k8s.io",
    }
)
_CRD = "CustomResourceDefinition"
_SA = "ServiceAccount"
_PathT = list[str | int]


class Placement(enum.StrEnum):
    """Which rule placed the pull secret of a PodSpec."""

    BESIDE_PODSPEC = "beside-podspec"
    """``imagePullSecrets`` of the PodSpec itself (built-in kinds; custom resources whose
    schema keeps it)."""
    ANCESTOR = "ancestor"
    """An enclosing object's ``imagePullSecrets`` (or its pod template's) that the schema
    declares."""
    SERVICE_ACCOUNT = "service-account"
    """The ``imagePullSecrets`` of the ServiceAccount the PodSpec runs as."""
    LEGACY_UNCHECKED = "legacy-unchecked"
    """Beside the PodSpec of a custom resource whose CRD is not in the base (not checked)."""


class OnUnplaced(enum.StrEnum):
    """What to do when a PodSpec that needs the secret has no place the API server keeps."""

    WARN = "warn"
    FAIL = "fail"


@attrs.frozen
class SecretPlacement:
    """Where the secret of one PodSpec went."""

    placement: Placement
    pod_spec: str
    """JSON pointer of the PodSpec within its workload (or of the object holding a managed
    custom image field)."""
    path: str
    """JSON pointer of the ``imagePullSecrets`` list within the patched object."""
    kind: str
    namespace: str | None
    name: str | None
    """The workload holding the PodSpec (for a ServiceAccount patch: not the patched object)."""

    def to_json(self) -> dict[str, Any]:
        """JSON form for the report."""
        return {
            "placement": str(self.placement),
            "podSpec": self.pod_spec,
            "path": self.path,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
        }


@attrs.frozen
class PlacementNote:
    """A PodSpec of a custom resource that needs the secret and is unplaced or unchecked."""

    kind: str
    namespace: str | None
    name: str | None
    file: str
    line: int
    pod_spec: str
    """JSON pointer of the PodSpec within its object (or of the object holding a managed
    custom image field)."""
    reason: str

    def to_json(self) -> dict[str, Any]:
        """JSON form for the report."""
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "file": self.file,
            "line": self.line,
            "podSpec": self.pod_spec,
            "reason": self.reason,
        }


def _escape(seg: str | int) -> str:
    return str(seg).replace("~", "~0").replace("/", "~1")


def pointer(path: Sequence[str | int]) -> str:
    """RFC 6901 pointer of ``path``."""
    return "".join("/" + _escape(seg) for seg in path)


def pointer_path(ptr: str, data: Any) -> _PathT:
    """The path (keys and list indices) of JSON pointer ``ptr`` in ``data``."""
    out: _PathT = []
    node = data
    for raw in ptr.split("/")[1:] if ptr else []:
        seg = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and seg.isdigit():
            out.append(int(seg))
            node = node[int(seg)] if int(seg) < len(node) else None
        else:
            out.append(seg)
            node = node.get(seg) if isinstance(node, dict) else None
    return out


def _get(data: Any, path: Sequence[str | int]) -> Any:
    node = data
    for seg in path:
        if isinstance(seg, int):
            node = node[seg] if isinstance(node, list) and seg < len(node) else None
        else:
            node = node.get(seg) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


def _declares_pull_secrets(node: Schema | None) -> bool:
    """Whether a schema node declares ``imagePullSecrets`` as an array of ``{name}``."""
    if node is None:
        return False
    props = node.get("properties")
    field = props.get("imagePullSecrets") if isinstance(props, Mapping) else None
    if not isinstance(field, Mapping) or field.get("type") not in (None, "array"):
        return False
    items = field.get("items")
    if not isinstance(items, Mapping):
        return False
    item_props = items.get("properties")
    return (isinstance(item_props, Mapping) and "name" in item_props) or items.get(
        "x-kubernetes-preserve-unknown-fields"
    ) is True


def _object_props(node: Schema | None) -> list[str]:
    props = node.get("properties") if node is not None else None
    return sorted(props) if isinstance(props, Mapping) else []


def _is_pod_template(name: str) -> bool:
    return name.lower().endswith("podtemplate")


def _reachable(data: Any, path: Sequence[str | int]) -> bool:
    """Whether a patch can hold an object at ``path``: every value on the way (and at the end)
    is a mapping or absent (absent ones are created)."""
    node = data
    for seg in path:
        if isinstance(seg, int):
            if not isinstance(node, list) or seg >= len(node):
                return False
            node = node[seg]
            continue
        if not isinstance(node, dict):
            return False
        node = node.get(seg)
        if node is None:
            return True
    return isinstance(node, dict)


def ancestor_candidates(
    data: Any, pod_path: Sequence[str | int], pruner: Pruner
) -> Iterator[_PathT]:
    """Objects whose declared ``imagePullSecrets`` can serve the PodSpec at ``pod_path``,
    nearest first (see the module doc): declared by a schema of ``pruner`` (the written or the
    storage version's) and kept by every one."""
    for depth in range(len(pod_path) - 1, -1, -1):
        base = list(pod_path[:depth])
        if not isinstance(_get(data, base) if base else data, dict):
            continue
        nodes = [schema_at(s, base) for s in pruner.schemas]
        found: list[_PathT] = [base]
        for node in nodes:
            found += [[*base, child] for child in _object_props(node) if _is_pod_template(child)]
        for node in nodes:
            for child in _object_props(node):
                for grandchild in _object_props(schema_at(node, [child])):
                    if _is_pod_template(grandchild):
                        found.append([*base, child, grandchild])
        seen: list[_PathT] = []
        for path in found:
            if path in seen:
                continue
            seen.append(path)
            if (
                any(_declares_pull_secrets(schema_at(s, path)) for s in pruner.schemas)
                and _reachable(data, path)
                and pruner.keeps([*path, "imagePullSecrets", 0, "name"])
            ):
                yield path


def service_account_name(
    data: Any, pod_path: Sequence[str | int], pruner: Pruner | None
) -> str | None:
    """The ServiceAccount a PodSpec runs as: its ``serviceAccountName`` (or the deprecated
    ``serviceAccount``), else the nearest enclosing object's ``serviceAccountName``; only
    fields ``pruner`` keeps count."""
    for depth in range(len(pod_path), -1, -1):
        base = list(pod_path[:depth])
        node = _get(data, base) if base else data
        if not isinstance(node, dict):
            continue
        keys = (
            ("serviceAccountName", "serviceAccount")
            if depth == len(pod_path)
            else ("serviceAccountName",)
        )
        for key in keys:
            value = node.get(key)
            if isinstance(value, str) and value and (pruner is None or pruner.keeps([*base, key])):
                return value
    return None


def _has_secret(node: Any, secret: str) -> bool:
    pulls = node.get("imagePullSecrets") if isinstance(node, dict) else None
    return isinstance(pulls, list) and any(
        isinstance(p, dict) and p.get("name") == secret for p in pulls
    )


def covering_placement(
    pruned: Any,
    pod_path: Sequence[str | int],
    pruner: Pruner,
    secret: str,
    service_accounts: Mapping[str, Any],
) -> Placement | None:
    """How the PodSpec at ``pod_path`` of an object *as the API server stored it* (``pruned``)
    gets ``secret``: beside it, through an enclosing object's declared field, or through the
    ServiceAccount it runs as (``service_accounts``: name -> object, in its namespace);
    ``None`` when it does not."""
    if _has_secret(_get(pruned, pod_path), secret):
        return Placement.BESIDE_PODSPEC
    for path in ancestor_candidates(pruned, pod_path, pruner):
        if _has_secret(_get(pruned, path) if path else pruned, secret):
            return Placement.ANCESTOR
    name = service_account_name(pruned, pod_path, pruner)
    if name is not None and _has_secret(service_accounts.get(name), secret):
        return Placement.SERVICE_ACCOUNT
    return None


def _scalar_at(node: Any, keys: Sequence[str]) -> str | None:
    """The text of the scalar at ``keys`` under a composed mapping node (no conversion of the
    rest: CRDs can be megabytes)."""
    for key in keys:
        if type(node) is not MappingNode:
            return None
        node = next((v for k, v in node.value if k.value == key), None)
    return str(node.value) if type(node) is ScalarNode else None


def _crd_names_of(doc: Document) -> tuple[str, str] | None:
    group = _scalar_at(doc.node, ("spec", "group"))
    kind = _scalar_at(doc.node, ("spec", "names", "kind"))
    return None if group is None or kind is None else (group, kind)


def is_custom(doc: Document, crds: Mapping[tuple[str, str], Any]) -> bool:
    """Whether ``doc`` is a custom resource (a CRD in the base defines it, or its group is
    not one of Kubernetes' own)."""
    return (doc.group, doc.kind) in crds or doc.group not in BUILTIN_GROUPS


@attrs.frozen
class ResourcePlacement:
    """The placement of one custom resource's PodSpecs (see :meth:`Placer.place`)."""

    lists: dict[str, tuple[Placement, list[str]]]
    """Pointer of each ``imagePullSecrets`` parent in the object -> (rule, PodSpec pointers)."""
    service_accounts: list[tuple[Document, str]]
    """(ServiceAccount, PodSpec pointer) for the ``service-account`` rule."""
    unplaced: list[PlacementNote]
    unchecked: list[PlacementNote]
    data: Any = None
    """The object's data (``None`` when not read: legacy placement)."""


class Placer:
    """Decides where the secret goes for the custom resources of one inventory."""

    def __init__(
        self, inventory: Inventory, app_namespace: str, image_fields: Sequence[ImageField] = ()
    ) -> None:
        self._app_namespace = app_namespace
        self._image_fields = tuple(image_fields)
        self.crds: dict[tuple[str, str], Document] = {}
        for doc in inventory.crds:
            names = _crd_names_of(doc)
            if names is not None:
                self.crds.setdefault(names, doc)
        self._crd_data: dict[tuple[str, str], Any] = {}
        self.service_accounts: dict[tuple[str, str], Document] = {}
        for doc in inventory.service_accounts:
            if doc.name:
                self.service_accounts.setdefault((self.namespace_of(doc), doc.name), doc)

    def namespace_of(self, doc: Document) -> str:
        """The namespace ``doc`` lands in (the app namespace when it names none)."""
        return doc.namespace or self._app_namespace

    def is_custom(self, doc: Document) -> bool:
        """Whether ``doc`` goes through schema placement (or is listed as unchecked)."""
        return is_custom(doc, self.crds)

    def pruner(self, doc: Document) -> Pruner | str | None:
        """The pruner for ``doc``, a reason it cannot be checked, or ``None`` without a CRD."""
        key = (doc.group, doc.kind)
        crd = self.crds.get(key)
        if crd is None:
            return None
        if key not in self._crd_data:
            self._crd_data[key] = node_to_data(crd.node)
        return pruner_for(self._crd_data[key], doc.version)

    def place(
        self,
        resource: Resource,
        pointers: Sequence[str],
        secret: str,
        field_images: Mapping[str, int] | None = None,
    ) -> ResourcePlacement:
        """Where the secret goes for the PodSpecs at ``pointers`` of custom resource
        ``resource``, and for the objects holding its managed custom image fields whose
        image is in ``field_images`` (image -> line): those have no ``imagePullSecrets`` of
        their own, so only an enclosing object or the ServiceAccount can serve them. Without
        the CRD such a field gets no secret (as before) and is listed as unchecked."""
        doc = resource.document
        sites = {site.pointer: site.line for site in resource.pod_specs}
        out = ResourcePlacement(lists={}, service_accounts=[], unplaced=[], unchecked=[])
        images = dict(field_images or {})

        def note(ptr: str, reason: str) -> PlacementNote:
            return PlacementNote(
                kind=doc.kind,
                namespace=doc.namespace,
                name=doc.name,
                file=doc.file,
                line=sites.get(ptr, doc.line),
                pod_spec=ptr,
                reason=reason,
            )

        pruner = self.pruner(doc)
        if not isinstance(pruner, Pruner):
            reason = pruner or (
                f"no CustomResourceDefinition for {doc.kind}.{doc.group or 'core'} in the base"
            )
            for ptr in pointers:
                out.lists.setdefault(ptr, (Placement.LEGACY_UNCHECKED, []))[1].append(ptr)
                out.unchecked.append(note(ptr, reason))
            if images:
                data = node_to_data(doc.node)
                anchors = field_anchors(data, doc.kind, self._image_fields, images)
                for ptr, line in anchors.items():
                    sites.setdefault(ptr, line)
                    out.unchecked.append(
                        note(ptr, f"{reason}: its custom image field gets no pull secret")
                    )
            return out
        data = node_to_data(doc.node)
        out = attrs.evolve(out, data=data)
        anchors = field_anchors(data, doc.kind, self._image_fields, images)
        for ptr, line in anchors.items():
            sites.setdefault(ptr, line)
        for ptr in [*pointers, *anchors]:
            path = pointer_path(ptr, data)
            if ptr not in anchors and pruner.keeps([*path, "imagePullSecrets", 0, "name"]):
                out.lists.setdefault(ptr, (Placement.BESIDE_PODSPEC, []))[1].append(ptr)
                continue
            ancestor = next(ancestor_candidates(data, path, pruner), None)
            if ancestor is not None:
                where = pointer(ancestor)
                out.lists.setdefault(where, (Placement.ANCESTOR, []))[1].append(ptr)
                continue
            name = service_account_name(data, path, pruner)
            namespace = self.namespace_of(doc)
            account = self.service_accounts.get((namespace, name)) if name else None
            if account is not None:
                out.service_accounts.append((account, ptr))
                continue
            what = "the object holding this image field" if ptr in anchors else "this PodSpec"
            why = (
                f"CustomResourceDefinition {pruner.crd} keeps no imagePullSecrets beside {what}"
                " nor in an enclosing object"
            )
            if name is None:
                why += ", and it names no ServiceAccount"
            else:
                why += f", and its ServiceAccount {name} is not in the base (namespace {namespace})"
            out.unplaced.append(note(ptr, why))
        return out


def field_anchors(
    data: Any, kind: str, fields: Sequence[ImageField], images: Mapping[str, int]
) -> dict[str, int]:
    """Pointers of the objects holding the managed custom image fields (``fields``) of
    ``data`` whose value is one of ``images`` (image -> line), each with that line."""
    out: dict[str, int] = {}
    for field in fields:
        if field.kind not in ("*", kind):
            continue
        for path, value in _follow(data, field.path.split("/"), []):
            if isinstance(value, str) and value in images and path:
                out.setdefault(pointer(path[:-1]), images[value])
    return out


def _follow(node: Any, segments: list[str], path: _PathT) -> Iterator[tuple[_PathT, Any]]:
    """(path, value) along a kustomize field spec path (``spec/steps[]/image``)."""
    if not segments:
        yield path, node
        return
    if not isinstance(node, dict):
        return
    head, rest = segments[0], segments[1:]
    key = head.removesuffix("[]")
    if key not in node:
        return
    child = node[key]
    if head.endswith("[]") and isinstance(child, list):
        for i, item in enumerate(child):
            yield from _follow(item, rest, [*path, key, i])
    else:
        yield from _follow(child, rest, [*path, key])


def list_ops(data: Any, parent: str, secret: str) -> list[tuple[str, Any]]:
    """RFC 6902 ``add`` operations (path, value) putting ``secret`` into the
    ``imagePullSecrets`` of the object at pointer ``parent`` of ``data``; objects missing on the
    way are created. Empty when the secret is already there."""
    path = pointer_path(parent, data)
    node = data
    for i, seg in enumerate(path):
        child = node[seg] if isinstance(node, list) and isinstance(seg, int) else node.get(seg)
        if child is None:
            value: Any = {"imagePullSecrets": [{"name": secret}]}
            for key in reversed(path[i + 1 :]):
                value = {key: value}
            return [(pointer(path[: i + 1]), value)]
        node = child
    pulls = node.get("imagePullSecrets") if isinstance(node, dict) else None
    if isinstance(pulls, list):
        if any(isinstance(p, dict) and p.get("name") == secret for p in pulls):
            return []
        return [(f"{parent}/imagePullSecrets/-", {"name": secret})]
    return [(f"{parent}/imagePullSecrets", [{"name": secret}])]
