"""Finding every image in a base, with where it is and whether kustomize rewrites it.

The walk follows the composed YAML nodes of each object (never constructed data) so every use
keeps its line. What counts as managed matches kustomize v5.5's image transformer: it rewrites
the ``image`` of every mapping entry of a ``containers`` or ``initContainers`` list at any depth
of any kind except ``CustomResourceDefinition``. We also find ``ephemeralContainers`` and image
volumes of PodSpecs (they need a ``configurations`` file), and every other string field named
``image`` (unmanaged unless ``--image-field`` names it).
"""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TextIO

import attrs
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from ._errors import InputError, InvalidReferenceError, shown_path
from ._manifests import Limits, _kustomization_file, load_manifests, scalar_kind
from ._model import (
    Base,
    Document,
    ImageField,
    ImageUse,
    Inventory,
    Location,
    PodSpecSite,
    Resource,
    Slot,
)
from ._reference import ImageRef

__all__ = ["KNOWN_POD_SPECS", "find_images", "parse_image_field", "scan_manifests"]

#: Where the PodSpec sits in the workload kinds KOTS knows, plus ``PodTemplate``.
KNOWN_POD_SPECS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "PodTemplate": ("template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_CRD = "CustomResourceDefinition"
_CONTAINER_SLOTS = {
    "containers": Slot.CONTAINER,
    "initContainers": Slot.INIT_CONTAINER,
    "ephemeralContainers": Slot.EPHEMERAL_CONTAINER,
}
# Where kustomize v5.5's default image fieldSpecs look, for any kind.
_FIELDSPEC_PREFIXES: tuple[tuple[str, ...], ...] = (("spec",), ("spec", "template", "spec"))
_TEMPLATE = re.compile(r"\{\{|\$\(")
_PathT = tuple[str | int, ...]


_INDEX = re.compile(r"\[\d*\]")


def parse_image_field(text: str) -> ImageField:
    """Parse ``KIND:PATH`` (``Tekton:spec/steps[]/image``, ``*:spec/image``).

    The path is slash separated as in kustomize fieldSpecs, or dotted as kotsrewrite prints
    fields in its warnings and tables (``ConfigMap:data.image``,
    ``Tekton:spec.steps[0].image``): a path without a slash is read that way, a list index
    meaning every entry (``steps[]``).

    Raises :class:`~kotsrewrite.InputError` naming ``--image-field`` when malformed.
    """
    kind, sep, path = text.strip().partition(":")
    path = path.strip("/")
    if "/" not in path:
        path = _INDEX.sub("[]", path).replace(".", "/")
    if not sep or not kind or not path or "//" in path or path.startswith("[]"):
        raise InputError(
            f"invalid image field {text!r}",
            file="--image-field",
            hint="give KIND:PATH, the path slash separated or dotted, e.g. MyApp:spec/image,"
            " '*:spec/steps[]/image' or ConfigMap:data.image",
        )
    return ImageField(kind=kind, path=path)


def _field_segments(field: ImageField) -> tuple[tuple[str, bool], ...]:
    out = []
    for part in field.path.split("/"):
        if part.endswith("[]"):
            out.append((part[:-2], True))
        else:
            out.append((part, False))
    return tuple(out)


def _dotted(path: _PathT) -> str:
    out = ""
    for seg in path:
        if type(seg) is int:
            out += f"[{seg}]"
        else:
            out += f".{seg}" if out else str(seg)
    return out


def _pointer(path: _PathT) -> str:
    return "".join("/" + str(seg).replace("~", "~0").replace("/", "~1") for seg in path)


def _get(node: Any, key: str) -> Any:
    for k, v in node.value:
        if k.value == key:
            return v
    return None


def _line(node: Any) -> int:
    return int(node.start_mark.line) + 1


def _is_null(node: Any) -> bool:
    return node is None or (type(node) is ScalarNode and scalar_kind(node) == "null")


def _has_image_entry(seq: Any) -> bool:
    if type(seq) is not SequenceNode:
        return False
    for entry in seq.value:
        if type(entry) is MappingNode:
            image = _get(entry, "image")
            if type(image) is ScalarNode and not _is_null(image):
                return True
    return False


class _Walk:
    """Discovery over one object."""

    def __init__(
        self,
        doc: Document,
        resource: int,
        fields: Sequence[ImageField],
        refs: dict[str, ImageRef],
        base_dir: str | None = None,
        matched: set[ImageField] | None = None,
    ) -> None:
        self.doc = doc
        self.matched: set[ImageField] = matched if matched is not None else set()
        self.base_dir = base_dir
        self.refs = refs
        self.resource = resource
        self.fields = fields
        self.known = KNOWN_POD_SPECS.get(doc.kind)
        self.uses: list[ImageUse] = []
        self.unmanaged: dict[_PathT, ImageUse] = {}
        self.warnings: list[str] = []
        self.sites: list[PodSpecSite] = []
        self.claimed: set[_PathT] = set()

    # -- helpers -------------------------------------------------------------------------

    def _shown(self) -> str:
        """The document's file as the user can open it, for warnings."""
        return shown_path(self.base_dir, self.doc.file)

    def _location(self, path: _PathT, node: Any, container: str | None) -> Location:
        doc = self.doc
        return Location(
            file=doc.file,
            line=_line(node),
            document=doc.index,
            kind=doc.kind,
            namespace=doc.namespace,
            name=doc.name,
            container=container,
            field=_dotted(path),
            api_version=doc.api_version,
            item=doc.item,
        )

    def _template_check(self, path: _PathT, node: Any) -> None:
        text = str(node.value)
        if _TEMPLATE.search(text):
            raise InputError(
                f"unrendered template in image {text!r} at {_dotted(path)}",
                file=self.doc.file,
                line=_line(node),
                hint="render the chart or KOTS templates first (helm template, kots pull)",
            )

    def _parse(self, path: _PathT, node: Any) -> ImageRef:
        text = str(node.value)
        ref = self.refs.get(text)
        if ref is not None:
            return ref
        try:
            ref = self.refs[text] = ImageRef.parse(text)
            return ref
        except InvalidReferenceError as exc:
            raise InvalidReferenceError(
                f"{exc.message} at {_dotted(path)}",
                file=self.doc.file,
                line=_line(node),
                hint=exc.hint,
            ) from None

    def _managed(
        self, path: _PathT, node: Any, slot: Slot, container: str | None, site: str | None
    ) -> None:
        kind = scalar_kind(node)
        if kind != "str":
            raise InputError(
                f"image at {_dotted(path)} is not a string (YAML reads {node.value!r} as {kind})",
                file=self.doc.file,
                line=_line(node),
                hint='quote the image, e.g. image: "nginx:1.10"',
            )
        self._template_check(path, node)
        ref = self._parse(path, node)
        self.claimed.add(path)
        self.uses.append(
            ImageUse(
                ref=ref,
                location=self._location(path, node, container),
                slot=slot,
                resource=self.resource if site is not None else None,
                pod_spec=site,
            )
        )

    # -- PodSpecs --------------------------------------------------------------------------

    def _pod_spec(self, node: Any, path: _PathT) -> None:
        pointer = _pointer(path)
        secrets_node = _get(node, "imagePullSecrets")
        secrets: tuple[str, ...] | None = None
        if type(secrets_node) is SequenceNode:
            names = []
            for entry in secrets_node.value:
                if type(entry) is MappingNode:
                    name = _get(entry, "name")
                    if type(name) is ScalarNode and not _is_null(name):
                        names.append(str(name.value))
            secrets = tuple(names)
        self.sites.append(PodSpecSite(pointer=pointer, line=_line(node), pull_secrets=secrets))
        for key, value in node.value:
            slot = _CONTAINER_SLOTS.get(key.value)
            if slot is not None and type(value) is SequenceNode:
                for i, entry in enumerate(value.value):
                    if type(entry) is not MappingNode:
                        continue
                    image = _get(entry, "image")
                    if type(image) is not ScalarNode or _is_null(image):
                        continue
                    name = _get(entry, "name")
                    cname = str(name.value) if type(name) is ScalarNode else None
                    self._managed((*path, key.value, i, "image"), image, slot, cname, pointer)
            elif key.value == "volumes" and type(value) is SequenceNode:
                for i, entry in enumerate(value.value):
                    if type(entry) is not MappingNode:
                        continue
                    image = _get(entry, "image")
                    if type(image) is not MappingNode:
                        continue
                    ref = _get(image, "reference")
                    if type(ref) is not ScalarNode or _is_null(ref):
                        continue
                    name = _get(entry, "name")
                    vname = str(name.value) if type(name) is ScalarNode else None
                    self._managed(
                        (*path, "volumes", i, "image", "reference"),
                        ref,
                        Slot.IMAGE_VOLUME,
                        vname,
                        pointer,
                    )

    # -- the walk ----------------------------------------------------------------------------

    def run(self) -> None:
        self._mapping(self.doc.node, [])
        self._mapping_containers()
        if self.fields:
            self._apply_fields()

    def _mapping_containers(self) -> None:
        """kustomize's default fieldSpecs (``spec/containers[]/image``...) also match when
        ``containers`` is a mapping, not a list; it then rewrites that mapping's ``image``."""
        for prefix in _FIELDSPEC_PREFIXES:
            node: Any = self.doc.node
            for key in prefix:
                node = _get(node, key) if type(node) is MappingNode else None
            if type(node) is not MappingNode:
                continue
            for key, slot in (
                ("containers", Slot.CONTAINER),
                ("initContainers", Slot.INIT_CONTAINER),
            ):
                entry = _get(node, key)
                if type(entry) is not MappingNode:
                    continue
                image = _get(entry, "image")
                if type(image) is not ScalarNode or _is_null(image):
                    continue
                path = (*prefix, key, "image")
                self.unmanaged.pop(path, None)
                name = _get(entry, "name")
                cname = str(name.value) if type(name) is ScalarNode else None
                self._managed(path, image, slot, cname, None)

    def _mapping(self, node: Any, path: list[str | int]) -> None:
        children = node.value
        is_site = False
        if self.known is not None and len(path) == len(self.known) and tuple(path) == self.known:
            is_site = True
        else:
            for key, value in children:
                if key.value in ("containers", "initContainers") and _has_image_entry(value):
                    is_site = True
                    break
        if is_site:
            self._pod_spec(node, tuple(path))
        for key, value in children:
            t = type(value)
            if t is ScalarNode:
                if key.value == "image" and scalar_kind(value) == "str":
                    self._other((*path, "image"), value)
            elif t is MappingNode:
                path.append(key.value)
                self._mapping(value, path)
                path.pop()
            elif t is SequenceNode:
                path.append(key.value)
                if key.value in ("containers", "initContainers"):
                    self._odd_entries(value, path)
                self._sequence(value, path)
                path.pop()

    def _odd_entries(self, node: Any, path: list[str | int]) -> None:
        """Warn where kustomize's image transformer would stop with "wrong node kind"."""
        for i, entry in enumerate(node.value):
            if type(entry) is MappingNode:
                image = _get(entry, "image")
                if image is not None and type(image) is not ScalarNode:
                    self.warnings.append(
                        f"{self._shown()}:{_line(image)}: {_dotted((*path, i, 'image'))} of"
                        f" {self.doc.kind} {self.doc.name or '(unnamed)'} is not a string;"
                        " kustomize's image transformer fails on such an object"
                    )

    def _sequence(self, node: Any, path: list[str | int]) -> None:
        for i, value in enumerate(node.value):
            t = type(value)
            if t is MappingNode:
                path.append(i)
                self._mapping(value, path)
                path.pop()
            elif t is SequenceNode:
                path.append(i)
                self._sequence(value, path)
                path.pop()

    def _other(self, path: _PathT, node: Any) -> None:
        if path in self.claimed:
            return
        self._template_check(path, node)
        try:
            ref = self.refs.get(node.value) or ImageRef.parse(str(node.value))
        except InvalidReferenceError as exc:
            self.warnings.append(
                f"{self._shown()}:{_line(node)}: {_dotted(path)} of {self.doc.kind}"
                f" {self.doc.name or '(unnamed)'} is not an image reference, ignored:"
                f" {exc.message}"
            )
            return
        self.unmanaged[path] = ImageUse(
            ref=ref,
            location=self._location(path, node, None),
            slot=Slot.FIELD,
            resource=None,
            pod_spec=None,
        )

    # -- --image-field -----------------------------------------------------------------------

    def _apply_fields(self) -> None:
        for field in self.fields:
            if field.kind not in ("*", self.doc.kind):
                continue
            found: list[tuple[_PathT, Any]] = []
            self._follow(self.doc.node, _field_segments(field), (), found)
            for path, node in found:
                if type(node) is ScalarNode and not _is_null(node):
                    self.matched.add(field)
                if path in self.claimed or type(node) is not ScalarNode or _is_null(node):
                    continue
                self.unmanaged.pop(path, None)
                self._managed(path, node, Slot.FIELD, None, None)

    def _follow(
        self,
        node: Any,
        segments: tuple[tuple[str, bool], ...],
        path: _PathT,
        found: list[tuple[_PathT, Any]],
    ) -> None:
        if not segments:
            found.append((path, node))
            return
        if type(node) is not MappingNode:
            return
        (key, each), rest = segments[0], segments[1:]
        value = _get(node, key)
        if value is None:
            return
        if each:
            if type(value) is SequenceNode:
                for i, child in enumerate(value.value):
                    self._follow(child, rest, (*path, key, i), found)
        else:
            self._follow(value, rest, (*path, key), found)


def find_images(base: Base, *, image_fields: Sequence[ImageField] = ()) -> Inventory:
    """Walk every object of ``base`` and collect image uses with their locations.

    Managed uses (:attr:`Inventory.uses`) are the images of ``containers``,
    ``initContainers`` and ``ephemeralContainers`` entries and image volumes
    (``volumes[].image.reference``) of every PodSpec (the KOTS workload paths, and any mapping
    at any depth with a ``containers``/``initContainers`` list of entries with an ``image``),
    plus fields named by ``image_fields``. Other string fields named ``image`` are
    :attr:`Inventory.unmanaged`; those that do not parse as references become warnings.
    ``CustomResourceDefinition`` objects are never searched (kustomize skips them too).

    For a built kustomization, an image a patch, ``images:`` transformer or generator
    introduced points at the file that wrote it, with :attr:`Location.origin` naming the
    object's own file.

    Raises :class:`~kotsrewrite.InputError` for an unrendered template in any image field, and
    :class:`~kotsrewrite.InvalidReferenceError` for an invalid reference in a managed field.
    """
    enabled = gc.isenabled()
    gc.disable()  # creates no cycles; see load_manifests
    try:
        inventory = _find(base, image_fields)
    except InputError as exc:
        if base.mode == "kustomize":
            from ._kustomize import relocate_error

            relocate_error(exc, base)  # a value a patch or transformer wrote: point there
        raise exc.within(base.base_dir) from None
    finally:
        if enabled:
            gc.enable()
    if base.mode == "kustomize":
        from ._kustomize import relocate

        inventory = relocate(inventory, base)  # images a patch or transformer introduced
    return inventory


class _Finder:
    """Discovery over a stream of objects: :meth:`add` one at a time, then :meth:`inventory`."""

    def __init__(self, image_fields: Sequence[ImageField], base_dir: str | None) -> None:
        self.image_fields = image_fields
        self.base_dir = base_dir
        self.uses: list[ImageUse] = []
        self.unmanaged: list[ImageUse] = []
        self.resources: list[Resource] = []
        self.warnings: list[str] = []
        self.namespaces: set[str] = set()
        self.refs: dict[str, ImageRef] = {}
        self.crds: list[Document] = []
        self.accounts: list[Document] = []
        self.field_objects: list[Document] = []
        self.matched: set[ImageField] = set()

    def add(self, doc: Document) -> bool:
        """Walk one object; true when the plan may need it as data later (it holds a PodSpec,
        a managed field outside one, or is a CRD or a ServiceAccount)."""
        if doc.namespace:
            self.namespaces.add(doc.namespace)
        if doc.kind == "Namespace" and doc.name:
            self.namespaces.add(doc.name)
        needed = False
        if doc.kind == "ServiceAccount" and doc.group == "":
            self.accounts.append(doc)
            needed = True
        if doc.kind == _CRD:
            self.crds.append(doc)
            return True
        walk = _Walk(
            doc, len(self.resources), self.image_fields, self.refs, self.base_dir, self.matched
        )
        walk.run()
        order = sorted(walk.uses, key=lambda u: (u.location.line, u.location.field))
        self.uses.extend(order)
        self.unmanaged.extend(
            sorted(walk.unmanaged.values(), key=lambda u: (u.location.line, u.location.field))
        )
        self.warnings.extend(walk.warnings)
        if any(u.slot is Slot.FIELD and u.pod_spec is None for u in walk.uses):
            self.field_objects.append(doc)
            needed = True
        if walk.sites:
            self.resources.append(Resource(document=doc, pod_specs=tuple(walk.sites)))
            needed = True
        return needed

    def replace_last(self, doc: Document, lean: Document) -> None:
        """Put ``lean`` where :meth:`add` just recorded ``doc``."""
        for found in (self.crds, self.accounts, self.field_objects):
            if found and found[-1] is doc:
                found[-1] = lean
        if self.resources and self.resources[-1].document is doc:
            self.resources[-1] = attrs.evolve(self.resources[-1], document=lean)

    def inventory(self, base: Base) -> Inventory:
        """What was found in ``base`` (whose objects were all given to :meth:`add`)."""
        warnings = list(self.warnings)
        if not base.documents:
            what = "stdin" if base.mode == "stdin" else base.source
            warnings.insert(
                0,
                f"no Kubernetes objects in {what} (empty, or only comments and empty documents);"
                " nothing to rewrite",
            )
        for field in dict.fromkeys(self.image_fields):
            if field not in self.matched:
                kinds = "object" if field.kind == "*" else field.kind
                warnings.append(
                    f"image field {field.kind}:{field.path} matches nothing: no {kinds} in the"
                    f" base has a string at {field.path.replace('/', '.')}; check the kind and"
                    " the path"
                )
        return Inventory(
            uses=tuple(self.uses),
            unmanaged=tuple(self.unmanaged),
            resources=tuple(self.resources),
            namespaces=tuple(sorted(self.namespaces)),
            warnings=tuple(warnings),
            crds=tuple(self.crds),
            service_accounts=tuple(self.accounts),
            field_objects=tuple(self.field_objects),
            base_dir=base.base_dir,
        )


def _find(base: Base, image_fields: Sequence[ImageField]) -> Inventory:
    finder = _Finder(image_fields, base.base_dir)
    for doc in base.documents:
        finder.add(doc)
    return finder.inventory(base)


def _base_dir(source: str | os.PathLike[str]) -> str | None:
    """:attr:`~kotsrewrite.Base.base_dir` of the base that loading ``source`` gives."""
    text = str(source)
    if text == "-":
        return None
    if os.path.isdir(text):
        return text
    return os.path.dirname(text) or None


def scan_manifests(
    source: str | os.PathLike[str],
    *,
    limits: Limits | None = None,
    stdin: TextIO | None = None,
    image_fields: Sequence[ImageField] = (),
    keep: Literal["all", "needed", "none"] = "all",
) -> tuple[Base, Inventory]:
    """:func:`~kotsrewrite.load_manifests` and :func:`find_images` in one pass, each object
    walked as soon as it is read, so that composed node trees need not outlive their document.

    ``keep`` says which objects keep their :attr:`~kotsrewrite.Document.node` in the result:
    ``all`` (the same as loading then finding), ``needed`` (what a plan reads as data: objects
    holding a PodSpec or a managed field outside one, CRDs and ServiceAccounts) or ``none``
    (locations only; memory then grows with the image uses, not with the size of the
    manifests). A kustomization is built by kustomize all at once and its images are traced
    to the files that wrote them through the built trees: its objects are found after loading
    and keep their nodes, whatever ``keep`` says. Raises what both raise (the loader names
    files in the walk's errors as it names its own).
    """
    text = str(source)
    if text != "-" and os.path.isdir(text) and _kustomization_file(Path(text)) is not None:
        base = load_manifests(source, limits=limits, stdin=stdin)
        return base, find_images(base, image_fields=image_fields)
    finder = _Finder(image_fields, _base_dir(source))

    def visit(doc: Document) -> Document:
        needed = finder.add(doc)
        if keep == "all" or (keep == "needed" and needed):
            return doc
        lean = attrs.evolve(doc, node=None)
        if needed:
            finder.replace_last(doc, lean)
        return lean

    enabled = gc.isenabled()
    gc.disable()  # creates no cycles; see load_manifests
    try:
        base = load_manifests(source, limits=limits, stdin=stdin, visit=visit)
        return base, finder.inventory(base)
    finally:
        if enabled:
            gc.enable()
