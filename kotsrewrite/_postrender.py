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

import bisect
import copy
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import jsonpatch
from jsonpointer import JsonPointerException
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from ._errors import InputError
from ._kustomize_images import ANY, RenameIndex, simple_pattern
from ._manifests import node_to_data, scalar_kind
from ._model import Base
from ._plan import PatchTarget, Plan
from ._render import dump_yaml

__all__ = ["dump_documents", "helm_post_render", "post_render"]

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
        tokens = simple_pattern(target.name)
        if tokens is None or ANY in tokens:
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
                    file=source.shown(patch.file) if isinstance(source, Base) else patch.file,
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


# --------------------------------------------------------------------------------------------
# Helm: what the post-renderer's output needs beyond the objects kustomize would build.
#
# Helm 3 pipes `---\n# Source: CHART/templates/x.yaml\n...` and splits our output on the same
# comments (`helm template --show-only`); it never sends hooks. Helm 4 pipes hooks and
# manifests together, each object annotated with the template file it came from, and uses the
# annotation to rebuild its files; it rejects output that is only whitespace.

#: The annotation Helm 4 puts on every object it sends to a post-renderer (its template file).
HELM_FILENAME_ANNOTATION = "postrenderer.helm.sh/postrender-filename"
_HOOK = "helm.sh/hook"
_HOOK_WEIGHT = "helm.sh/hook-weight"
_SOURCE = "# Source: "
_GENERATED_FILE = "kotsrewrite/pull-secret.yaml"
_GENERATED_HOOK_FILE = "kotsrewrite/pull-secret-hooks.yaml"


def hook_secret_name(plan: Plan) -> str:
    """Name of the pull secret that Helm hooks use: ``<slug>-registry-hooks``.

    A hook runs before the release's ordinary objects exist, so a hook that pulls through the
    proxy cannot use the ordinary pull secret. It gets its own secret, itself a hook of the
    same phases with a lower weight (created first) and ``before-hook-creation`` deletion; a
    separate name, so it never collides with the ordinary secret (``--no-hooks``, upgrades).
    """
    return f"{plan.secret_name}-hooks"


def source_comments(base: Base) -> list[tuple[str, ...]]:
    """The ``# Source:`` comment lines heading each document of ``base``, per object.

    Aligned with :attr:`~kotsrewrite.Base.documents` (every item of a ``List`` gets its
    document's comments). Only stdin keeps its text; other bases give empty tuples.
    """
    if base.text is None:
        return [() for _ in base.documents]
    starts: list[int] = [0]  # 0-based line numbers of `---` markers (0: the stream's start)
    sources: list[list[tuple[int, str]]] = [[]]
    for number, line in enumerate(base.text.splitlines()):
        if line.startswith("---") and line[3:4] in ("", " ", "\t"):
            starts.append(number)
            sources.append([])
        elif line.startswith(_SOURCE):
            sources[-1].append((number, line.rstrip()))
    out = []
    for doc in base.documents:
        start = doc.line - 1
        segment = bisect.bisect_right(starts, start) - 1
        out.append(tuple(text for number, text in sources[segment] if number < start))
    return out


def _namespace(obj: Mapping[str, Any], plan: Plan) -> str:
    return _metadata(obj, "namespace") or plan.options.namespace


def _annotations(obj: Mapping[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    return annotations if isinstance(annotations, dict) else {}


def _hook_phases(obj: Mapping[str, Any]) -> list[str]:
    value = _annotations(obj).get(_HOOK)
    if not isinstance(value, str):
        return []
    return [phase.strip() for phase in value.split(",") if phase.strip()]


def _pull_secret_refs(node: Any, name: str) -> Iterable[dict[str, Any]]:
    """Every ``imagePullSecrets`` entry naming ``name``, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "imagePullSecrets" and isinstance(value, list):
                for entry in value:
                    if isinstance(entry, dict) and entry.get("name") == name:
                        yield entry
            else:
                yield from _pull_secret_refs(value, name)
    elif isinstance(node, list):
        for value in node:
            yield from _pull_secret_refs(value, name)


def _hook_weight(obj: Mapping[str, Any]) -> int:
    try:
        return int(str(_annotations(obj).get(_HOOK_WEIGHT, "0")).strip())
    except ValueError:
        return 0


def helm_secrets(
    objects: list[dict[str, Any]], secrets: list[dict[str, Any]], plan: Plan
) -> list[dict[str, Any]]:
    """The pull secrets Helm should create for ``objects`` (already post-rendered).

    An ordinary secret only in a namespace where an object that is not a hook lists it in
    ``imagePullSecrets``, or that ``--additional-namespace`` asks for (``*``: every secret of
    the plan). Hooks that list it are pointed at :func:`hook_secret_name` instead (changed
    in place), and their namespaces get that secret as a hook of all their phases, weighted
    one below the lowest hook weight of ``objects`` (and below 0), so Helm creates it first.
    """
    name = plan.secret_name
    extra = plan.options.additional_namespaces
    wanted = {_namespace(s, plan) for s in secrets} if "*" in extra else set(extra)
    hook_phases: dict[str, set[str]] = {}
    weights = [0]
    for obj in objects:
        phases = _hook_phases(obj)
        if phases:
            weights.append(_hook_weight(obj))
        refs = list(_pull_secret_refs(obj, name))
        if not refs:
            continue
        namespace = _namespace(obj, plan)
        if phases:
            hook_phases.setdefault(namespace, set()).update(phases)
            for ref in refs:
                ref["name"] = hook_secret_name(plan)
        else:
            wanted.add(namespace)
    out = [s for s in secrets if _namespace(s, plan) in wanted]
    by_namespace = {_namespace(s, plan): s for s in secrets}
    for namespace in sorted(hook_phases):
        template = by_namespace.get(namespace)
        if template is None:  # the plan made no secret there (it always does today)
            continue
        hook = copy.deepcopy(template)
        hook["metadata"]["name"] = hook_secret_name(plan)
        hook["metadata"].setdefault("annotations", {}).update(
            {
                _HOOK: ",".join(sorted(hook_phases[namespace])),
                _HOOK_WEIGHT: str(min(weights) - 1),
                "helm.sh/hook-delete-policy": "before-hook-creation",
            }
        )
        out.append(hook)
    return out


def _chart_of(path: str) -> str:
    return path.split("/", 1)[0] if "/" in path else ""


def helm_post_render(base: Base, plan: Plan) -> str:
    """What ``kotsrewrite post-render`` writes for Helm 3 and Helm 4 (pure).

    :func:`post_render`'s objects with the ``# Source:`` comments of their input documents
    (Helm 3) and Helm 4's filename annotation kept; the pull secrets of :func:`helm_secrets`,
    which carry a source of their own (``CHART/kotsrewrite/pull-secret.yaml``, or
    ``...-hooks.yaml``) in whichever form the input used. No object at all gives ``---``:
    Helm 4 refuses an empty output.
    """
    rendered = post_render(base, plan)
    count = len(base.documents)
    objects, secrets = rendered[:count], rendered[count:]
    heads = source_comments(base)
    secrets = helm_secrets(objects, secrets, plan)
    filenames = [_annotations(o).get(HELM_FILENAME_ANNOTATION) for o in objects]
    first = next((f for f in filenames if isinstance(f, str)), None)
    first_head = next((h[0] for h in heads if h), None)
    chart = _chart_of(first or (first_head or "").removeprefix(_SOURCE))
    for secret in secrets:
        generated = _GENERATED_HOOK_FILE if _HOOK in _annotations(secret) else _GENERATED_FILE
        path = f"{chart}/{generated}" if chart else generated
        if first is not None:
            secret["metadata"].setdefault("annotations", {})[HELM_FILENAME_ANNOTATION] = path
        heads.append((f"{_SOURCE}{path}",) if first_head is not None else ())
    documents = [*objects, *secrets]
    if not documents:
        return "---\n"
    return "".join(
        "---\n" + "".join(line + "\n" for line in head) + dump_yaml(obj)
        for head, obj in zip(heads, documents, strict=True)
    )
