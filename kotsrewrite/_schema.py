"""Kubernetes' structural-schema pruning of custom resources (pure: no I/O).

The API server drops every field of a custom resource that its CustomResourceDefinition's
structural schema does not specify ("field pruning"). This module mirrors
apiextensions-apiserver's ``pruning/algorithm.go`` on plain JSON data:

* a mapping keeps the keys named in ``properties`` (each pruned by its own schema); with
  ``additionalProperties`` (a schema, or ``true``) it keeps every other key too, each pruned by
  that schema (``true`` means the empty schema: nested mappings are emptied);
* a list's items are pruned by ``items``;
* ``x-kubernetes-preserve-unknown-fields: true`` keeps unknown keys as they are, while keys named
  in ``properties`` (or covered by ``additionalProperties``) are still pruned by their schema;
* ``x-kubernetes-embedded-resource: true`` (and the root of every object) keeps ``apiVersion``,
  ``kind`` and ``metadata``; ``metadata`` is then reduced to ObjectMeta's fields;
* ``allOf``/``anyOf``/``oneOf``/``not`` only validate: they never keep a field.

:class:`Pruner` holds the schemas the API server prunes one version of a custom resource with
(:func:`pruner_for`); :meth:`Pruner.keeps` answers whether a field at a path survives and
:meth:`Pruner.prune` returns an object as the API server would store it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "OBJECT_META_FIELDS",
    "Pruner",
    "crd_names",
    "keeps",
    "prune",
    "pruner_for",
    "schema_at",
]

PRESERVE = "x-kubernetes-preserve-unknown-fields"
EMBEDDED = "x-kubernetes-embedded-resource"
_META = frozenset({"apiVersion", "kind", "metadata"})

#: The fields of ObjectMeta (Kubernetes 1.32): an embedded or root ``metadata`` keeps only these.
OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)

Path = Sequence[str | int]
Schema = Mapping[str, Any]


def _props(s: Schema) -> Mapping[str, Any]:
    props = s.get("properties")
    return props if isinstance(props, Mapping) else {}


def _additional(s: Schema) -> tuple[bool, Schema | None]:
    """(present, schema): whether ``additionalProperties`` is set, and its schema (``None`` for
    a boolean, which the API server turns into an empty schema)."""
    if "additionalProperties" not in s or s["additionalProperties"] is None:
        return False, None
    value = s["additionalProperties"]
    return True, value if isinstance(value, Mapping) else None


def _items(s: Schema) -> Schema | None:
    items = s.get("items")
    return items if isinstance(items, Mapping) else None


def _preserves(s: Schema | None) -> bool:
    return s is not None and s.get(PRESERVE) is True


def _embedded(s: Schema | None) -> bool:
    return s is not None and s.get(EMBEDDED) is True


def _root(schema: Schema | None) -> Schema:
    """The schema of an object's root: an embedded resource (``Prune(..., root=true)``)."""
    return {**(schema or {}), EMBEDDED: True}


def prune(obj: Any, schema: Schema | None) -> Any:
    """A pruned deep copy of the object ``obj`` (its root is a resource: ``apiVersion``,
    ``kind`` and ``metadata`` stay; ``metadata`` keeps only ObjectMeta's fields)."""
    out = copy.deepcopy(obj)
    _prune(out, _root(schema))
    return out


def _prune_meta(x: Any) -> None:
    if isinstance(x, dict):
        meta = x.get("metadata")
        if isinstance(meta, dict):
            for key in [k for k in meta if k not in OBJECT_META_FIELDS]:
                del meta[key]


def _prune(x: Any, s: Schema | None) -> None:
    if _preserves(s):
        _skip_prune(x, s)
        return
    if isinstance(x, dict):
        if s is None:
            x.clear()
            return
        if _embedded(s):
            _prune_meta(x)
        props = _props(s)
        has_additional, additional = _additional(s)
        for key in list(x):
            if _embedded(s) and key in _META:
                continue
            if key in props:
                _prune(x[key], props[key] if isinstance(props[key], Mapping) else None)
            elif has_additional:
                _prune(x[key], additional)
            else:
                del x[key]
    elif isinstance(x, list):
        items = _items(s) if s is not None else None
        for value in x:
            _prune(value, items)


def _skip_prune(x: Any, s: Schema | None) -> None:
    if s is None:
        return
    if isinstance(x, dict):
        if _embedded(s):
            _prune_meta(x)
        props = _props(s)
        has_additional, additional = _additional(s)
        for key in list(x):
            if _embedded(s) and key in _META:
                continue
            if key in props:
                _prune(x[key], props[key] if isinstance(props[key], Mapping) else None)
            elif has_additional:
                _prune(x[key], additional)
    elif isinstance(x, list):
        for value in x:
            _skip_prune(value, _items(s))


def keeps(schema: Schema | None, path: Path) -> bool:
    """Whether pruning with ``schema`` (the object's root schema) keeps a value at ``path``
    (keys and list indices from the object's root), the values on the way being a mapping at
    each key and a list at each index.

    A mapping or list at the end of ``path`` counts as kept even if pruning empties it;
    ask for a leaf (``[..., "imagePullSecrets", 0, "name"]``) to know that its content stays.
    """
    s: Schema | None = _root(schema)
    skip = False
    for i, seg in enumerate(path):
        if not skip and _preserves(s):
            skip = True
        if isinstance(seg, int):
            if s is None:
                if skip:
                    return True
                continue  # prune(v, nil) on each item
            s = _items(s)
            # skipPrune recurses into items in skip mode; prune in prune mode.
            continue
        if s is None:
            return skip
        if _embedded(s) and seg in _META:
            if seg != "metadata":
                return True
            rest = path[i + 1 :]
            # metadata that is not a mapping is left as it is (the API server rejects it).
            return not rest or not isinstance(rest[0], str) or rest[0] in OBJECT_META_FIELDS
        props = _props(s)
        if seg in props:
            child = props[seg]
            s = child if isinstance(child, Mapping) else None
            skip = False
            continue
        has_additional, additional = _additional(s)
        if has_additional:
            s = additional
            skip = False
            continue
        return skip
    return True


def schema_at(schema: Schema | None, path: Path) -> Schema | None:
    """The schema node that describes the value at ``path`` (through ``properties``,
    ``additionalProperties`` and ``items``), or ``None`` when the schema does not describe it."""
    s: Schema | None = schema
    for seg in path:
        if s is None:
            return None
        if isinstance(seg, int):
            s = _items(s)
            continue
        props = _props(s)
        if seg in props:
            child = props[seg]
            s = child if isinstance(child, Mapping) else None
            continue
        s = _additional(s)[1]
    return s


def crd_names(crd: Mapping[str, Any]) -> tuple[str, str] | None:
    """(group, kind) a CustomResourceDefinition defines, or ``None`` when it names neither."""
    spec = crd.get("spec")
    if not isinstance(spec, Mapping):
        return None
    names = spec.get("names")
    group = spec.get("group")
    kind = names.get("kind") if isinstance(names, Mapping) else None
    if not isinstance(group, str) or not isinstance(kind, str):
        return None
    return group, kind


@attrs.frozen
class Pruner:
    """The structural schemas the API server prunes one version of a custom resource with.

    ``schemas`` empty means nothing is pruned (``preserveUnknownFields: true``, the default of
    a ``v1beta1`` CRD). Several schemas: the object is pruned by each in turn (the version it
    is written in, then the storage version it is converted to).
    """

    crd: str
    """The CRD's ``metadata.name`` (for messages)."""
    version: str
    schemas: tuple[Schema, ...] = ()

    def keeps(self, path: Path) -> bool:
        """Whether a value at ``path`` survives pruning by every schema."""
        return all(keeps(s, path) for s in self.schemas)

    def prune(self, obj: Any) -> Any:
        """``obj`` as the API server stores it (a pruned copy)."""
        out = copy.deepcopy(obj)
        for s in self.schemas:
            out = prune(out, s)
        return out

    def schema_at(self, path: Path) -> Schema | None:
        """The schema node of the written version at ``path`` (``None`` when the CRD does not
        prune or its schema does not describe ``path``)."""
        return schema_at(self.schemas[0], path) if self.schemas else None


def _version_schema(spec: Mapping[str, Any], entry: Mapping[str, Any]) -> Schema | None:
    schema = entry.get("schema")
    if isinstance(schema, Mapping) and isinstance(schema.get("openAPIV3Schema"), Mapping):
        return schema["openAPIV3Schema"]  # type: ignore[no-any-return]
    validation = spec.get("validation")  # v1beta1: one schema for every version
    if isinstance(validation, Mapping) and isinstance(validation.get("openAPIV3Schema"), Mapping):
        return validation["openAPIV3Schema"]  # type: ignore[no-any-return]
    return None


def pruner_for(crd: Mapping[str, Any], version: str) -> Pruner | str:
    """The :class:`Pruner` for objects of ``version`` defined by ``crd``, or a reason (a
    string) why the API server would not accept or not prune-check such objects.

    Decisions: the object is pruned by the schema of the version it is written in; when the
    CRD converts with strategy ``None`` (the default) and another version is the storage
    version, by that version's schema too (the API server prunes again after converting to
    it). With a ``Webhook`` conversion only the written version's schema is used (what the
    webhook makes of the fields is unknown). ``apiextensions.k8s.io/v1beta1`` CRDs preserve
    unknown fields unless ``spec.preserveUnknownFields: false``; a CRD with
    ``preserveUnknownFields: true`` prunes nothing.
    """
    metadata = crd.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    name = name if isinstance(name, str) else "(unnamed)"
    spec = crd.get("spec")
    if not isinstance(spec, Mapping):
        return f"CustomResourceDefinition {name} has no spec"
    entries: list[Mapping[str, Any]] = [
        v for v in spec.get("versions") or [] if isinstance(v, Mapping)
    ]
    if not entries and isinstance(spec.get("version"), str):  # v1beta1 single version
        entries = [{"name": spec["version"], "served": True, "storage": True}]
    entry = next((v for v in entries if v.get("name") == version), None)
    if entry is None or entry.get("served") is False:
        return f"CustomResourceDefinition {name} does not serve version {version}"
    v1beta1 = str(crd.get("apiVersion", "")).endswith("/v1beta1")
    preserve = spec.get("preserveUnknownFields")
    if preserve is True or (v1beta1 and preserve is not False):
        return Pruner(crd=name, version=version)
    schema = _version_schema(spec, entry)
    if schema is None:
        return f"CustomResourceDefinition {name} has no openAPIV3Schema for version {version}"
    schemas: list[Schema] = [schema]
    conversion = spec.get("conversion")
    strategy = conversion.get("strategy") if isinstance(conversion, Mapping) else None
    storage = next((v for v in entries if v.get("storage") is True), None)
    if storage is not None and storage is not entry and strategy in (None, "None"):
        stored = _version_schema(spec, storage)
        if stored is not None:
            schemas.append(stored)
    return Pruner(crd=name, version=version, schemas=tuple(schemas))
