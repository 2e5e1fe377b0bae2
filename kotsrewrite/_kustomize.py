"""Reading a kustomization as kustomize builds it, keeping where each image was written.

A directory holding a kustomization file is built with ``kubectl kustomize`` (or
``kustomize build``): the midstream applies on top of what the base *builds* to, so images,
names, namespaces and PodSpecs are read from the built objects, with every patch, ``images:``
transformer, ``namespace``, name prefix, component and generator applied.

To keep locations exact, the build goes through a wrapping kustomization written in a temporary
directory (never into the user's tree) that lists the input by relative path and asks for
``buildMetadata: [originAnnotations, transformerAnnotations]``. kustomize then annotates each
built object with the file it came from (``config.kubernetes.io/origin``) and the
kustomizations whose transformers touched it (``alpha.config.kubernetes.io/transformations``).
Both annotations are removed from the objects kept. Each built object is matched to its object
in the source file (read with the ordinary loader), and every node of the built object takes the
line of the same field in the source; a value the source does not hold (a patch or transformer
put it there) is marked *introduced*. :func:`relocate` then points each introduced image at
the kustomization (or patch file) that wrote it, with an ``origin`` saying which object it is in.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from ._errors import InputError
from ._kustomize_images import split_image
from ._manifests import (
    KUSTOMIZATION_FILES,
    Limits,
    _Checker,
    _LineMark,
    _Loader,
    _new_yaml,
    _read_file,
)
from ._model import Base, Document, ImageUse, Inventory

__all__ = [
    "ORIGIN_ANNOTATION",
    "TRANSFORMATIONS_ANNOTATION",
    "Origin",
    "build",
    "check_tree",
    "relocate",
    "relocate_error",
]

ORIGIN_ANNOTATION = "config.kubernetes.io/origin"
TRANSFORMATIONS_ANNOTATION = "alpha.config.kubernetes.io/transformations"
_STRIPPED = (ORIGIN_ANNOTATION, TRANSFORMATIONS_ANNOTATION)
_WRAPPER = (
    "apiVersion: kustomize.config.k8s.io/v1beta1\n"
    "kind: Kustomization\n"
    "resources:\n- {path}\n"
    "buildMetadata: [originAnnotations, transformerAnnotations]\n"
)
# Transformers that never write an image (a fallback must not blame them).
_NEVER_IMAGES = frozenset(
    {
        "NamespaceTransformer",
        "PrefixTransformer",
        "SuffixTransformer",
        "PrefixSuffixTransformer",
        "LabelTransformer",
        "AnnotationsTransformer",
        "ReplicaCountTransformer",
        "HashTransformer",
    }
)
# The kustomization field of each generator, for the line a generated object points at.
_GENERATOR_FIELDS = {
    "HelmChartInflationGenerator": "helmCharts",
    "ConfigMapGenerator": "configMapGenerator",
    "SecretGenerator": "secretGenerator",
}
# The kustomization field that configures each transformer, for the line an image points at
# when the text of the kustomization does not hold it.
_TRANSFORMER_FIELDS = {
    "ImageTagTransformer": "images",
    "PatchTransformer": "patches",
    "PatchStrategicMergeTransformer": "patchesStrategicMerge",
    "PatchJson6902Transformer": "patchesJson6902",
    "ReplacementTransformer": "replacements",
}
_TIMEOUT = 300


def _kustomization_file(directory: Path) -> Path | None:
    for name in KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            return directory / name
    return None


# --------------------------------------------------------------------------------------------
# Kustomization files: where images are written in them


def _mapping(node: Any) -> dict[str, Any]:
    if type(node) is not MappingNode:
        return {}
    return {str(k.value): v for k, v in node.value if type(k) is ScalarNode}


def _scalar(node: Any) -> str | None:
    return str(node.value) if type(node) is ScalarNode and node.value != "" else None


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


@attrs.frozen
class _ImageEntry:
    name: str
    new_name: str | None
    new_tag: str | None
    digest: str | None
    line: int

    def wrote(self, image: str) -> bool:
        """Whether this ``images`` entry would leave ``image`` as it is."""
        if self.new_name is None and self.new_tag is None and self.digest is None:
            return False
        repo, tag, digest = split_image(image)  # as kustomize splits what it matches
        if repo != (self.new_name if self.new_name is not None else self.name):
            return False
        if self.new_tag is not None and tag != self.new_tag:
            return False
        return self.digest is None or digest == self.digest


@attrs.frozen
class _KFile:
    """One kustomization file: its text, ``images`` entries and patch texts."""

    display: str
    text: str
    images: tuple[_ImageEntry, ...]
    patches: tuple[tuple[str, str, str], ...]
    """(field, display path, text) of each patch file it names."""
    fields: dict[str, int]
    """Top-level field -> line."""

    def find_text(self, image: str, field: str | None = None) -> tuple[str, int] | None:
        """Where ``image`` is written in this kustomization, or in the patch files its
        ``field`` (``patches``, ``patchesStrategicMerge``...) names."""
        pattern = re.compile(r"(?<![\w./:@-])" + re.escape(image) + r"(?![\w./:@-])")
        files = [(d, t) for f, d, t in self.patches if f == field]
        for display, text in ((self.display, self.text), *files):
            match = pattern.search(text)
            if match is not None:
                return display, _line_of(text, match.start())
        return None

    def find_entry(self, image: str) -> tuple[str, int] | None:
        for entry in self.images:
            if entry.wrote(image):
                return self.display, entry.line
        return None


class _Sources:
    """Reads source manifests and kustomization files once, relative to the input root."""

    def __init__(self, root: Path, wrap: Path, limits: Limits) -> None:
        self.root = root
        self.wrap = wrap
        self.limits = limits
        self.kfiles: dict[str, _KFile | None] = {}
        self.manifests: dict[Path, list[Document]] = {}
        self.files: list[str] = []

    def display(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.root)).as_posix()

    def resolve(self, annotated: str) -> Path:
        """A path from an annotation (relative to the wrapping kustomization), made absolute."""
        return Path(os.path.normpath(self.wrap / annotated))

    def manifest(self, path: Path) -> list[Document]:
        docs = self.manifests.get(path)
        if docs is None:
            display = self.display(path)
            loader = _Loader(self.limits)
            loader.add_text(display, _read_file(path, display, self.limits))
            docs = self.manifests[path] = loader.documents
            self.files.append(display)
        return docs

    def kfile(self, annotated: str) -> _KFile | None:
        """The kustomization named by a ``configuredIn`` (``None`` when unreadable)."""
        path = self.resolve(annotated)
        display = self.display(path)
        if display not in self.kfiles:
            self.kfiles[display] = self._read_kfile(path, display)
        return self.kfiles[display]

    def _read_kfile(self, path: Path, display: str) -> _KFile | None:
        try:
            text = _read_file(path, display, self.limits)
            root = next(iter(_new_yaml().compose_all(text)), None)
        except (InputError, YAMLError, RecursionError):
            return None
        top = _mapping(root)
        images: list[_ImageEntry] = []
        entries = top.get("images")
        for entry in entries.value if type(entries) is SequenceNode else []:
            fields = _mapping(entry)
            name = _scalar(fields.get("name"))
            if name is None:
                continue
            images.append(
                _ImageEntry(
                    name=name,
                    new_name=_scalar(fields.get("newName")),
                    new_tag=_scalar(fields.get("newTag")),
                    digest=_scalar(fields.get("digest")),
                    line=int(entry.start_mark.line) + 1,
                )
            )
        patches: list[tuple[str, str, str]] = []
        for field in ("patches", "patchesStrategicMerge", "patchesJson6902"):
            value = top.get(field)
            for entry in value.value if type(value) is SequenceNode else []:
                rel = _scalar(entry) if type(entry) is ScalarNode else None
                if rel is None:
                    rel = _scalar(_mapping(entry).get("path"))
                if rel is None or "\n" in rel:
                    continue  # an inline patch: it is in ``text``
                file = Path(os.path.normpath(path.parent / rel))
                file_display = self.display(file)
                try:
                    patch_text = _read_file(file, file_display, self.limits)
                except InputError:
                    continue
                patches.append((field, file_display, patch_text))
        lines = {
            str(k.value): int(k.start_mark.line) + 1
            for k, _ in (root.value if type(root) is MappingNode else [])
        }
        return _KFile(display, text, tuple(images), tuple(patches), lines)


# --------------------------------------------------------------------------------------------
# Origins


@attrs.frozen(eq=False)
class Origin:
    """Where kustomize took a built object from, and what changed it."""

    file: str | None
    """The object's own source file, relative to the input directory; ``None`` for a
    generated object or one from a remote base."""
    line: int | None
    """1-based line of the object in :attr:`file`."""
    configured_in: str | None
    """The kustomization of the generator that made the object (generated objects only)."""
    configured_by: str | None
    """The generator kind (``HelmChartInflationGenerator``, ``ConfigMapGenerator``...)."""
    transformers: tuple[tuple[str, str], ...]
    """(kustomization file, transformer kind) of every transformer applied, in order."""
    introduced: frozenset[int] = attrs.field(repr=False)
    """``id`` of every scalar node of the built object whose value the source does not hold."""
    _kfiles: dict[str, _KFile | None] = attrs.field(repr=False, alias="kfiles")

    def introducer(self, image: str) -> tuple[str, int, str, str] | None:
        """(file, line, transformer kind, kustomization) that put ``image`` into the object."""
        seen: set[tuple[str, str]] = set()
        for kfile, kind in reversed(self.transformers):
            if (kfile, kind) in seen:
                continue
            seen.add((kfile, kind))
            k = self._kfiles.get(kfile)
            if k is None:
                continue
            hit = None
            if kind == "ImageTagTransformer":
                hit = k.find_entry(image)
            elif kind not in _NEVER_IMAGES:
                hit = k.find_text(image, _TRANSFORMER_FIELDS.get(kind))
            if hit is not None:
                return (*hit, kind, kfile)
        if self.configured_in is not None:
            k = self._kfiles.get(self.configured_in)
            by = self.configured_by or "generator"
            line = 1
            if k is not None:
                hit = k.find_text(image)
                if hit is not None:
                    return (*hit, by, self.configured_in)
                line = k.fields.get(_GENERATOR_FIELDS.get(by, ""), 1)
            return self.configured_in, line, by, self.configured_in
        for kfile, kind in reversed(self.transformers):
            if kind not in _NEVER_IMAGES:
                k = self._kfiles.get(kfile)
                line = k.fields.get(_TRANSFORMER_FIELDS.get(kind, ""), 1) if k is not None else 1
                return kfile, line, kind, kfile
        return None


def _annotation_nodes(node: Any) -> Any:
    metadata = _mapping(node).get("metadata")
    return _mapping(metadata).get("annotations"), metadata


def _strip_annotations(node: Any) -> dict[str, str]:
    """Remove kustomize's build annotations from an object node; return their texts."""
    annotations, metadata = _annotation_nodes(node)
    found: dict[str, str] = {}
    if annotations is None or type(annotations) is not MappingNode:
        return found
    kept = []
    for k, v in annotations.value:
        if k.value in _STRIPPED and type(v) is ScalarNode:
            found[str(k.value)] = str(v.value)
        else:
            kept.append((k, v))
    annotations.value = kept
    if not kept:
        metadata.value = [(k, v) for k, v in metadata.value if k.value != "annotations"]
    return found


def _load_small(text: str) -> Any:
    try:
        from ._manifests import node_to_data

        return node_to_data(next(iter(_new_yaml().compose_all(text)), None))
    except (YAMLError, RecursionError, StopIteration):
        return None


def _rank(doc: Document, built: Document) -> tuple[int, bool]:
    return len(doc.name or ""), (doc.namespace or None) == (built.namespace or None)


def _match(built: Document, candidates: Sequence[Document]) -> Document | None:
    """The source object a built object was made from: same kind, and a name the built name
    contains (a name prefix or suffix adds around it); the longest such name wins."""
    best: Document | None = None
    for doc in candidates:
        if doc.kind != built.kind:
            continue
        if built.name is None or doc.name is None:
            if built.name == doc.name and best is None:
                best = doc
            continue
        if doc.name == built.name and (doc.namespace or None) == (built.namespace or None):
            return doc
        if doc.name in built.name and (best is None or _rank(doc, built) > _rank(best, built)):
            best = doc
    return best


def _flood(node: Any, mark: Any, introduced: set[int]) -> None:
    node.start_mark = mark
    if type(node) is ScalarNode:
        introduced.add(id(node))
    elif type(node) is MappingNode:
        for k, v in node.value:
            k.start_mark = mark
            _flood(v, mark, introduced)
    elif type(node) is SequenceNode:
        for v in node.value:
            _flood(v, mark, introduced)


def _item_name(node: Any) -> str | None:
    if type(node) is MappingNode:
        for k, v in node.value:
            if k.value == "name" and type(v) is ScalarNode:
                return str(v.value)
    return None


def _graft(built: Any, source: Any, introduced: set[int]) -> None:
    """Give every node of ``built`` the line of the same field in ``source``; mark values
    ``source`` does not hold as introduced (they take the line of their nearest parent)."""
    if type(built) is not type(source):
        _flood(built, source.start_mark, introduced)
        return
    built.start_mark = source.start_mark
    if type(built) is ScalarNode:
        if built.value != source.value:
            introduced.add(id(built))
    elif type(built) is MappingNode:
        fields = {k.value: (k, v) for k, v in source.value}
        for k, v in built.value:
            pair = fields.get(k.value)
            if pair is None:
                k.start_mark = built.start_mark
                _flood(v, built.start_mark, introduced)
            else:
                k.start_mark = pair[0].start_mark
                _graft(v, pair[1], introduced)
    elif type(built) is SequenceNode:
        names: dict[str, Any] = {}
        for item in source.value:
            name = _item_name(item)
            if name is not None:
                names.setdefault(name, item)
        for i, item in enumerate(built.value):
            name = _item_name(item)
            counterpart = names.get(name) if name is not None and names else None
            if counterpart is None and not names and i < len(source.value):
                counterpart = source.value[i]
            if counterpart is None:
                _flood(item, built.start_mark, introduced)
            else:
                _graft(item, counterpart, introduced)


def _transformers(text: str | None, sources: _Sources) -> tuple[tuple[str, str], ...]:
    data = _load_small(text) if text else None
    out: list[tuple[str, str]] = []
    for entry in data if isinstance(data, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("configuredIn"), str):
            continue
        by = entry.get("configuredBy")
        kind = str(by.get("kind")) if isinstance(by, dict) else ""
        sources.kfile(entry["configuredIn"])
        out.append((sources.display(sources.resolve(entry["configuredIn"])), kind))
    return tuple(out)


def _with_origin(doc: Document, annotations: dict[str, str], sources: _Sources) -> Document:
    transformers = _transformers(annotations.get(TRANSFORMATIONS_ANNOTATION), sources)
    origin = _load_small(annotations.get(ORIGIN_ANNOTATION, ""))
    origin = origin if isinstance(origin, dict) else {}
    introduced: set[int] = set()
    path = origin.get("path")
    source: Document | None = None
    file: str | None = None
    if isinstance(path, str) and not origin.get("repo") and "://" not in path:
        resolved = sources.resolve(path)
        file = sources.display(resolved)
        source = _match(doc, sources.manifest(resolved))
    if source is not None:
        _graft(doc.node, source.node, introduced)
        return Document(
            file=source.file,
            index=source.index,
            line=source.line,
            api_version=doc.api_version,
            kind=doc.kind,
            name=doc.name,
            namespace=doc.namespace,
            node=doc.node,
            item=source.item,
            origin=Origin(
                file=source.file,
                line=source.line,
                configured_in=None,
                configured_by=None,
                transformers=transformers,
                introduced=frozenset(introduced),
                kfiles=sources.kfiles,
            ),
        )
    # Generated (or from a remote base, or not found in its file): no line of its own.
    configured_in: str | None = None
    configured_by: str | None = None
    line = 1
    if isinstance(origin.get("configuredIn"), str):
        kfile = sources.kfile(origin["configuredIn"])
        configured_in = sources.display(sources.resolve(origin["configuredIn"]))
        by = origin.get("configuredBy")
        configured_by = str(by.get("kind")) if isinstance(by, dict) else None
        if kfile is not None:
            line = kfile.fields.get(_GENERATOR_FIELDS.get(configured_by or "", ""), 1)
    elif isinstance(path, str):
        repo = origin.get("repo")
        configured_in = f"{repo}//{path}" if isinstance(repo, str) else (file or path)
    _flood(doc.node, _LineMark(line - 1), introduced)
    return Document(
        file=configured_in or doc.file,
        index=0,
        line=line,
        api_version=doc.api_version,
        kind=doc.kind,
        name=doc.name,
        namespace=doc.namespace,
        node=doc.node,
        origin=Origin(
            file=None,
            line=None,
            configured_in=configured_in,
            configured_by=configured_by,
            transformers=transformers,
            introduced=frozenset(introduced),
            kfiles=sources.kfiles,
        ),
    )


# --------------------------------------------------------------------------------------------
# Checking the kustomization tree before building: exact FILE:LINE for the usual mistakes, and
# nothing remote (a build must not fetch anything: --offline, and the midstream must build
# from what was read)

_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@|github\.com/|gitlab\.com/)|\?ref=", re.I)


def _display(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _line(node: Any) -> int:
    return int(node.start_mark.line) + 1


def _kustomization_fields(kfile: Path, display: str, limits: Limits) -> dict[str, Any]:
    text = _read_file(kfile, display, limits)
    try:
        nodes = list(_new_yaml().compose_all(text))
    except (YAMLError, RecursionError) as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(
            f"YAML error in kustomization: {getattr(exc, 'problem', None) or exc}",
            file=display,
            line=int(mark.line) + 1 if mark is not None else None,
            hint="fix the kustomization file",
        ) from None
    nodes = [n for n in nodes if n is not None and not (type(n) is ScalarNode and not n.value)]
    if not nodes:
        return {}
    if len(nodes) > 1 or type(nodes[0]) is not MappingNode:
        raise InputError(
            "a kustomization must be a single mapping",
            file=display,
            line=_line(nodes[-1]),
            hint="fix the kustomization file",
        )
    _Checker(limits).check(display, nodes[0])  # duplicate keys, depth, alias bombs
    return _mapping(nodes[0])


def _entries(fields: dict[str, Any], display: str) -> Iterator[tuple[str, Any]]:
    for field in ("resources", "bases", "components"):
        value = fields.get(field)
        if value is None or (type(value) is ScalarNode and value.value in ("", "~", "null")):
            continue
        if type(value) is not SequenceNode:
            raise InputError(
                f"{field} is not a list", file=display, line=_line(value), hint="list paths"
            )
        for entry in value.value:
            if type(entry) is not ScalarNode or not entry.value:
                raise InputError(
                    f"an entry of {field} is not a string",
                    file=display,
                    line=_line(entry),
                    hint="list file or directory paths",
                )
            yield str(entry.value), entry


def _check_charts(fields: dict[str, Any], display: str) -> None:
    charts = fields.get("helmCharts")
    for chart in charts.value if type(charts) is SequenceNode else []:
        repo = _scalar(_mapping(chart).get("repo"))
        if repo is not None and _REMOTE.search(repo):
            raise InputError(
                f"helmCharts entry with the remote repo {repo!r} cannot be read",
                file=display,
                line=_line(chart),
                hint="pull the chart into the kustomization's charts/ directory (helm pull"
                " --untar) and drop repo, or render it with helm template and give the output",
            )


def check_tree(directory: Path, limits: Limits) -> None:
    """Refuse, with FILE:LINE, what would make the build fail or fetch from the network: a
    missing resource, a directory resource without a kustomization, a cycle, a remote base or
    chart. Paths are shown relative to ``directory``."""
    root = directory.resolve()
    seen: set[Path] = {root}

    def visit(kdir: Path, stack: tuple[Path, ...]) -> None:
        kfile = _kustomization_file(kdir)
        assert kfile is not None
        display = _display(kfile, root)
        fields = _kustomization_fields(kfile, display, limits)
        _check_charts(fields, display)
        for entry, node in _entries(fields, display):
            if _REMOTE.search(entry):
                raise InputError(
                    f"remote resource {entry!r} cannot be read",
                    file=display,
                    line=_line(node),
                    hint="render the remote base first (kubectl kustomize) and give its output",
                )
            target = Path(os.path.realpath(kdir / entry))  # a symlink loop: "does not exist"
            if target.is_dir():
                if target in stack:
                    raise InputError(
                        f"kustomization cycle through {entry!r}",
                        file=display,
                        line=_line(node),
                        hint="a base cannot include itself",
                    )
                if _kustomization_file(target) is None:
                    raise InputError(
                        f"directory resource {entry!r} has no kustomization file",
                        file=display,
                        line=_line(node),
                        hint="a directory in resources must hold a kustomization.yaml",
                    )
                if target not in seen:
                    seen.add(target)
                    visit(target, (*stack, target))
            elif not target.is_file():
                raise InputError(
                    f"resource {entry!r} does not exist",
                    file=display,
                    line=_line(node),
                    hint="fix the path in the kustomization",
                )
            elif Path(os.path.realpath(kdir)) not in target.parents:
                raise InputError(
                    f"resource file {entry!r} is outside the kustomization's directory"
                    " (kustomize refuses it)",
                    file=display,
                    line=_line(node),
                    hint="give that directory a kustomization.yaml listing the file and name"
                    " the directory instead",
                )

    visit(root, (root,))


# --------------------------------------------------------------------------------------------
# Building


_WRAPPER_LAYER = re.compile(
    r"^accumulating resources: accumulation err='accumulating resources from '[^']*':"
    r" '[^']*' must resolve to a file': recursed accumulation of path '[^']*': "
)


def _message(stderr: str, replacements: dict[str, str]) -> str:
    """kustomize's error, without kubectl's log prefix and with our temporary paths replaced."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    text = " ".join(lines)
    match = re.search(r'err="((?:[^"\\]|\\.)*)"', text) or re.search(r"err=<(.*)>", text)
    if match is not None:
        text = match.group(1).replace('\\"', '"').strip()
    text = re.sub(r"^Error: ", "", text)
    # The wrapping kustomization's own layer says nothing the user wrote.
    text = _WRAPPER_LAYER.sub("", text, count=1)
    for old, new in replacements.items():
        text = text.replace(old, new)
    if len(text) > 600:  # kustomize nests its errors: the innermost one is last
        text = "..." + text[-600:]
    return text or "no message"


def _run(command: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), capture_output=True, text=True, timeout=_TIMEOUT, check=False, cwd=cwd
    )


def build(directory: Path, *, limits: Limits, source: str) -> Base:
    """Build the kustomization in ``directory`` and load the built objects with origins.

    ``source`` is the path as the user gave it (for messages and :attr:`Base.source`).
    Raises :class:`~kotsrewrite.InputError` (exit 2) when no kustomize is installed, when the
    build fails (naming the kustomization, with kustomize's message) and for anything the
    loader refuses in the built output or the source files.
    """
    from ._verify import kustomize_command

    check_tree(directory, limits)
    kfile = _kustomization_file(directory)
    kdisplay = kfile.name if kfile is not None else source
    command = kustomize_command()
    root = directory.resolve()
    with tempfile.TemporaryDirectory(prefix="kotsrewrite-build-") as tmp:
        wrap = Path(tmp).resolve()
        rel = Path(os.path.relpath(root, wrap)).as_posix()
        (wrap / "kustomization.yaml").write_text(_WRAPPER.format(path=rel), encoding="utf-8")
        try:
            proc = _run([*command, str(wrap)], wrap)
            if (
                proc.returncode != 0
                and "enable-helm" in proc.stderr
                and shutil.which("helm") is not None
            ):
                proc = _run([*command, "--enable-helm", str(wrap)], wrap)
        except subprocess.TimeoutExpired:
            raise InputError(
                f"kustomize did not finish building it in {_TIMEOUT} s",
                file=kdisplay,
                hint=f"run '{' '.join(command)} {source}' to see where it hangs",
            ) from None
        except OSError as exc:
            raise InputError(
                f"cannot run kustomize: {exc}",
                file=kdisplay,
                hint="install kubectl (it contains kustomize) or kustomize, then run again",
            ) from None
        if proc.returncode != 0:
            message = _message(proc.stderr, {f"'{rel}'": f"'{source}'", str(wrap): "<build>"})
            hint = f"run '{' '.join(command)} {source}' and fix what it reports"
            if "enable-helm" in proc.stderr:
                hint = (
                    "helmCharts need helm on PATH (kubectl kustomize --enable-helm runs it):"
                    " install helm, or render the chart with helm template and give its output"
                )
            raise InputError(f"kustomize cannot build it: {message}", file=kdisplay, hint=hint)
        sources = _Sources(root, wrap, limits)
        loader = _Loader(limits)
        built_name = f"{kdisplay} (built by kustomize)"
        loader.add_text(built_name, proc.stdout)
        documents = []
        for doc in loader.documents:
            annotations = _strip_annotations(doc.node)
            documents.append(_with_origin(doc, annotations, sources))
    return Base(
        source=source,
        root=directory,
        mode="kustomize",
        files=tuple(sources.files),
        documents=tuple(documents),
    )


# --------------------------------------------------------------------------------------------
# Locations of introduced images


def _field_path(field: str) -> Iterator[str | int]:
    for part in field.split("."):
        name, _, rest = part.partition("[")
        if name:
            yield name
        while rest:
            index, _, rest = rest.partition("]")
            yield int(index)
            rest = rest.removeprefix("[")


def _at(node: Any, field: str) -> Any:
    try:
        for part in _field_path(field):
            if isinstance(part, int):
                if type(node) is not SequenceNode:
                    return None
                node = node.value[part]
            else:
                node = _mapping(node).get(part)
                if node is None:
                    return None
    except (ValueError, IndexError):
        return None
    return node


def _relocated(use: ImageUse, by_key: dict[tuple[Any, ...], Document]) -> ImageUse:
    loc = use.location
    doc = by_key.get((loc.api_version, loc.kind, loc.namespace, loc.name))
    origin = doc.origin if doc is not None else None
    if doc is None or origin is None:
        return use
    node = _at(doc.node, loc.field)
    if type(node) is not ScalarNode or id(node) not in origin.introduced:
        return use
    found = origin.introducer(str(node.value))
    if found is None:
        return use
    file, line, by, configured_in = found
    return attrs.evolve(
        use,
        location=attrs.evolve(
            loc,
            file=file,
            line=line,
            origin={
                "by": by,
                "configuredIn": configured_in,
                "objectFile": origin.file,
                "objectLine": origin.line,
            },
        ),
    )


def relocate(inventory: Inventory, base: Base) -> Inventory:
    """Point every image a kustomize patch, transformer or generator introduced at the file
    and line that wrote it (with an ``origin``); images written verbatim in an object's own
    file keep that file and line. Any input other than a kustomization is returned as is."""
    if base.mode != "kustomize":
        return inventory
    by_key = {(d.api_version, d.kind, d.namespace, d.name): d for d in base.documents}
    return attrs.evolve(
        inventory,
        uses=tuple(_relocated(use, by_key) for use in inventory.uses),
        unmanaged=tuple(_relocated(use, by_key) for use in inventory.unmanaged),
    )


def _scalars(node: Any) -> Iterator[Any]:
    if type(node) is ScalarNode:
        yield node
    elif type(node) is MappingNode:
        for _, value in node.value:
            yield from _scalars(value)
    elif type(node) is SequenceNode:
        for value in node.value:
            yield from _scalars(value)


def relocate_error(exc: InputError, base: Base) -> None:
    """Point an error about a value a kustomize patch or transformer introduced (an invalid or
    unrendered image) at the file and line that wrote it, in place."""
    if base.mode != "kustomize" or exc.file is None:
        return
    for doc in base.documents:
        origin = doc.origin
        if origin is None or doc.file != exc.file or not origin.introduced:
            continue
        for node in _scalars(doc.node):
            if (
                id(node) in origin.introduced
                and int(node.start_mark.line) + 1 == exc.line
                and f"'{node.value}'" in exc.message
            ):
                found = origin.introducer(str(node.value))
                if found is not None:
                    exc.file, exc.line = found[0], found[1]
                return
