"""Applying a plan directly to manifests: what a Helm post-renderer needs (pure, no I/O).

:func:`post_render` gives the objects ``kubectl kustomize`` would build from the midstream
kustomization that :func:`~kotsrewrite.render_plan` writes for the same plan, without
kustomize: the JSON6902 patches (matched as kustomize matches patch targets), the pull secrets
appended, ``commonAnnotations`` (``kots.io/app-slug``) on every object and on the pod
templates kustomize annotates, and the image renames applied where kustomize's image
transformer looks (``containers``/``initContainers`` lists at any depth except in a
CustomResourceDefinition, its default field specs, and the plan's ``configurations``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import jsonpatch
from jsonpointer import JsonPointerException
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from ._errors import InputError
from ._manifests import node_to_data, scalar_kind
from ._model import Base
from ._plan import _ANY, PatchTarget, Plan, RenameIndex, _simple_pattern
from ._render import dump_yaml

__all__ = ["dump_documents", "post_render"]

#: kustomize's commonAnnotations field specs: (group or None, version or None, kind or None,
#: path). ``None`` matches anything, as an empty selector field does in kustomize.
_ANNOTATION_SPECS: tuple[tuple[str | None, str | None, str | None, str], ...] = (
    (None, None, None, "metadata/annotations"),
    (None, "v1", "ReplicationController", "spec/template/metadata/annotations"),
    (None, None, "Deployment", "spec/template/metadata/annotations"),
    (None, None, "ReplicaSet", "spec/template/metadata/annotations"),
    (None, None, "DaemonSet", "spec/template/metadata/annotations"),
    (None, None, "StatefulSet", "spec/template/metadata/annotations"),
    ("batch", None, "Job", "spec/template/metadata/annotations"),
    ("batch", None, "CronJob", "spec/jobTemplate/metadata/annotations"),
    ("batch", None, "CronJob", "spec/jobTemplate/spec/template/metadata/annotations"),
)

#: kustomize's default ``images`` field specs (any kind).
_IMAGE_SPECS: tuple[str, ...] = (
    "spec/containers[]/image",
    "spec/initContainers[]/image",
    "spec/volumes[]/image/reference",
    "spec/template/spec/containers[]/image",
    "spec/template/spec/initContainers[]/image",
    "spec/template/spec/volumes[]/image/reference",
)

_CRD = "CustomResourceDefinition"


def _gvk(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    group, _, version = (api_version if isinstance(api_version, str) else "").rpartition("/")
    return group, version, kind if isinstance(kind, str) else ""


def _metadata(obj: Mapping[str, Any], key: str) -> str:
    metadata = obj.get("metadata")
    value = metadata.get(key) if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else ""


def _regex_match(pattern: str, value: str) -> bool:
    """kustomize selector fields are anchored regular expressions; empty matches anything."""
    if not pattern:
        return True
    try:
        return re.fullmatch(pattern, value) is not None
    except re.error:
        return pattern == value


def _selected(obj: Mapping[str, Any], target: PatchTarget) -> bool:
    """Whether kustomize's patch ``target`` selects ``obj`` (an absent namespace selects every
    namespace; an object without one is in ``default``)."""
    group, version, kind = _gvk(obj)
    namespace = _metadata(obj, "namespace") or "default"
    return (
        _regex_match(target.group, group)
        and _regex_match(target.version, version)
        and _regex_match(target.kind, kind)
        and _regex_match(target.name, _metadata(obj, "name"))
        and _regex_match(target.namespace or "", namespace)
    )


def _set_annotation(node: Any, path: list[str], key: str, value: str) -> None:
    """Set ``key`` in the mapping at ``path``, creating missing (or null) mappings on the way,
    as kustomize's field specs with ``create: true`` do."""
    for segment in path:
        if not isinstance(node, dict):
            return
        child = node.get(segment)
        if child is None:
            child = node[segment] = {}
        node = child
    if isinstance(node, dict):
        node[key] = value


def _annotate(obj: dict[str, Any], key: str, value: str) -> None:
    group, version, kind = _gvk(obj)
    for want_group, want_version, want_kind, path in _ANNOTATION_SPECS:
        if want_group is not None and want_group != group:
            continue
        if want_version is not None and want_version != version:
            continue
        if want_kind is not None and want_kind != kind:
            continue
        _set_annotation(obj, path.split("/"), key, value)


#: Called with an image string, returns it renamed (memoized :meth:`Plan.rename_image`).
_Renamer = Callable[[str], str]
#: The image fields found in one object: (id of the parent mapping, key) -> the mapping.
_Fields = dict[tuple[int, str], dict[str, Any]]


def _rename_field(parent: dict[str, Any], key: str, fields: _Fields) -> None:
    if isinstance(parent.get(key), str):
        fields[(id(parent), key)] = parent


def _legacy(node: Any, fields: _Fields) -> None:
    """kustomize's legacy image filter: ``image`` of each mapping in a list under a key named
    ``containers`` or ``initContainers``, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            _legacy(value, fields)
            if key in ("containers", "initContainers") and isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        _rename_field(item, "image", fields)
    elif isinstance(node, list):
        for value in node:
            _legacy(value, fields)


def _field_spec(node: Any, segments: list[str], fields: _Fields) -> None:
    """Follow a kustomize field spec path (``a/b[]/c``); ``[]`` over a mapping takes it as
    the single element, as kustomize does."""
    if not segments or not isinstance(node, dict):
        return
    head, rest = segments[0], segments[1:]
    many = head.endswith("[]")
    key = head.removesuffix("[]")
    if key not in node:
        return
    if not rest:
        _rename_field(node, key, fields)
        return
    child = node[key]
    if many and isinstance(child, list):
        for item in child:
            _field_spec(item, rest, fields)
    else:
        _field_spec(child, rest, fields)


def _renamer(plan: Plan) -> _Renamer:
    """What the plan's ``images`` entries, applied in order, make of an image string.

    Every reference the plan decided is known already (the planner checked that the entries
    rename each one to its decision); any other string is worked out once, with the entries
    indexed by name."""
    known = {d.image.original: d.new_image for d in plan.decisions}
    index: RenameIndex | None = None

    def rename(image: str) -> str:
        nonlocal index
        out = known.get(image)
        if out is None:
            if index is None:
                index = RenameIndex([r.name for r in plan.renames])
            out = known[image] = index.rename(image, plan.renames)
        return out

    return rename


class _NameIndex:
    """Objects by ``metadata.name``, so that a patch target with a literal name (the planner's
    exact targets) looks only at the objects of that name; candidates are still checked with
    :func:`_selected`."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self._count = len(objects)
        self._by_name: dict[str, list[int]] = {}
        for i, obj in enumerate(objects):
            self._by_name.setdefault(_metadata(obj, "name"), []).append(i)

    def candidates(self, target: PatchTarget) -> Iterable[int]:
        tokens = _simple_pattern(target.name)
        if tokens is None or _ANY in tokens:
            return range(self._count)
        return self._by_name.get("".join(cast(list[str], tokens)), ())


_YAML12_BOOLS = frozenset({"true", "True", "TRUE", "false", "False", "FALSE"})


def _plain(node: Any) -> Any:
    """Plain data of a node as kustomize reads it: like :func:`~kotsrewrite.node_to_data`,
    except that YAML 1.1 booleans YAML 1.2 does not know (``yes``, ``on``, ``n``...) stay
    strings; kustomize keeps them as written and prints them quoted."""
    if type(node) is ScalarNode:
        if scalar_kind(node) == "bool" and node.value not in _YAML12_BOOLS:
            return node.value
        return node_to_data(node)
    if type(node) is SequenceNode:
        return [_plain(child) for child in node.value]
    if type(node) is MappingNode:
        keys = [k for k, _ in node.value]
        if any(type(k) is ScalarNode and k.value == "<<" and k.style is None for k in keys):
            return node_to_data(node)  # merge keys: leave them to the loader's reading
        return {
            (k.value if type(k) is ScalarNode else str(node_to_data(k))): _plain(v)
            for k, v in node.value
        }
    return node_to_data(node)


def _objects(source: Base | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(source, Base):
        return [cast(dict[str, Any], _plain(doc.node)) for doc in source.documents]
    out = []
    for obj in source:
        if not isinstance(obj, Mapping):
            raise TypeError(f"expected a mapping per object, got {type(obj).__name__}")
        out.append(copy.deepcopy(dict(obj)))
    return out


def post_render(source: Base | Iterable[Mapping[str, Any]], plan: Plan) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` builds from the midstream of ``plan`` over ``source``.

    ``source`` is the :class:`~kotsrewrite.Base` the plan was built from (or its objects as
    plain data, which are copied, never changed). The result is the input objects in order,
    then the pull secrets, with (in kustomize's order) the patches applied, the
    ``kots.io/app-slug`` annotation added and the images renamed. The pull secret of the app
    namespace has no ``metadata.namespace``: Helm installs it into the release namespace.

    Raises :class:`~kotsrewrite.InputError` when a patch cannot apply to an object it targets.
    """
    objects = _objects(source)
    names = _NameIndex(objects)  # patches add pull secrets: names never change
    for patch in plan.patches:
        operations = jsonpatch.JsonPatch(cast(Any, patch.operations()))
        for i in names.candidates(patch.target):
            obj = objects[i]
            if not _selected(obj, patch.target):
                continue
            try:
                objects[i] = cast(dict[str, Any], operations.apply(obj))
            except (jsonpatch.JsonPatchException, JsonPointerException) as exc:
                raise InputError(
                    f"cannot add the pull secret to {obj.get('kind')}"
                    f" {_metadata(obj, 'name')}: {exc}",
                    file=patch.file,
                    line=patch.line,
                    hint="imagePullSecrets must be a list of {name: ...} mappings",
                ) from None
    objects.extend(plan.secret_objects())
    for obj in objects:
        _annotate(obj, "kots.io/app-slug", plan.options.app_slug)
    specs: list[tuple[str | None, list[str]]] = [(None, s.split("/")) for s in _IMAGE_SPECS]
    specs += [(fs.kind, fs.path.split("/")) for fs in plan.field_specs]
    if not plan.renames:
        return objects
    # Each image field is found once per object and gets every entry at once: the entries
    # applied in order are what Plan.rename_image gives, known for every decided image.
    rename = _renamer(plan)
    for obj in objects:
        kind = _gvk(obj)[2]
        if kind == _CRD:
            continue
        fields: _Fields = {}
        _legacy(obj, fields)
        for want_kind, segments in specs:
            if want_kind is None or want_kind == kind:
                _field_spec(obj, segments, fields)
        for (_, key), parent in fields.items():
            parent[key] = rename(parent[key])
    return objects


def dump_documents(objects: Iterable[Any]) -> str:
    """Objects as multi-document YAML (``---`` between them), as Helm reads it back."""
    return "---\n".join(dump_yaml(obj) for obj in objects)
