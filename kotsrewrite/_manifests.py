"""Loading rendered manifests: a directory, a kustomize base, a single file, or stdin.

Files are composed (not constructed) with ruamel.yaml's C parser: every document stays a tree of
``MappingNode``/``SequenceNode``/``ScalarNode`` carrying line marks, and only the objects a later
stage needs as data go through :func:`node_to_data`. A fast resolver with YAML 1.1 rules (what
Kubernetes' YAML decoder uses) tags plain scalars, so ``image: 1.10`` is a float, not a string.

Each document is checked while it is walked once: duplicate keys, nesting depth, alias
expansion (a composed tree shares aliased nodes, so "billion laughs" costs nothing until it is
walked; we count what a walk would visit), recursive aliases, and the shape of a Kubernetes
object (a mapping with string ``apiVersion`` and ``kind``). Every problem is an
:class:`~kotsrewrite.InputError` with the file as the user knows it and the 1-based line.
"""

from __future__ import annotations

import gc
import math
import os
import re
import stat
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TextIO

import attrs
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode
from ruamel.yaml.parser import ParserError
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import BaseResolver
from ruamel.yaml.scanner import ScannerError
from ruamel.yaml.tag import Tag

from ._errors import InputError, shown_path
from ._model import Base, Document
from ._write import MARKER_FILE

__all__ = [
    "KUSTOMIZATION_FILES",
    "Limits",
    "load_manifests",
    "node_to_data",
    "scalar_kind",
]

#: File names that make a directory a kustomize base, in kustomize's order of preference.
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_STDIN = "<stdin>"


@attrs.frozen
class Limits:
    """Bounds that keep hostile input from hanging or exhausting memory.

    The defaults sit far above real applications (public installs reach 3 MB a file and a few
    hundred documents); the CLI raises the first two with ``--max-file-bytes`` and
    ``--max-documents``.
    """

    max_file_bytes: int = 64 * 1024 * 1024
    """Largest file (or stdin) read, in bytes."""
    max_documents: int = 100_000
    """Most YAML documents in the whole base (empty ones included)."""
    max_depth: int = 200
    """Deepest nesting of mappings and sequences within one document."""
    max_alias_nodes: int = 1_000_000
    """Most nodes a walk may visit again through YAML aliases, over the whole base."""


# --------------------------------------------------------------------------------------------
# Scalars: a fast YAML 1.1 resolver (ruamel's versioned resolver dominates parse time)

_TAG_PREFIX = "tag:yaml.org,2002:"
_STR = BaseResolver.DEFAULT_SCALAR_TAG
_SEQ = BaseResolver.DEFAULT_SEQUENCE_TAG
_MAP = BaseResolver.DEFAULT_MAPPING_TAG
_NULL = Tag(suffix=_TAG_PREFIX + "null")
_BOOL = Tag(suffix=_TAG_PREFIX + "bool")
_INT = Tag(suffix=_TAG_PREFIX + "int")
_FLOAT = Tag(suffix=_TAG_PREFIX + "float")
_MERGE = Tag(suffix=_TAG_PREFIX + "merge")

_BOOLS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE"), True),
    **dict.fromkeys(("on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE"), False),
    **dict.fromkeys(("off", "Off", "OFF"), False),
}
_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_WORDS: dict[str, Tag] = {
    **dict.fromkeys(_BOOLS, _BOOL),
    **dict.fromkeys(_NULLS, _NULL),
    "<<": _MERGE,
}
_INT_RE = re.compile(
    r"[-+]?(?:0b[01_]+|0x[0-9a-fA-F_]+|0o?[0-7_]+|(?:0|[1-9][0-9_]*)"
    r"|[1-9][0-9_]*(?::[0-5]?[0-9])+)\Z"
)
_FLOAT_RE = re.compile(
    r"[-+]?(?:(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+"
    r"|[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|\.(?:inf|Inf|INF))\Z|\.(?:nan|NaN|NAN)\Z"
)
_NUMBER_START = frozenset("0123456789+-.")


class _FastResolver(BaseResolver):
    """Tags plain scalars with YAML 1.1 rules; no path resolvers, no version lookups."""

    def __init__(self, version: Any = None, loader: Any = None, loadumper: Any = None) -> None:
        BaseResolver.__init__(self, loadumper if loadumper is not None else loader)

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is ScalarNode:
            if not implicit[0]:
                return _STR
            tag = _WORDS.get(value)
            if tag is not None:
                return tag
            if value[0] in _NUMBER_START:
                if _INT_RE.match(value):
                    return _INT
                if _FLOAT_RE.match(value):
                    return _FLOAT
            return _STR
        if kind is MappingNode:
            return _MAP
        return _SEQ


def _new_yaml() -> YAML:
    yaml = YAML(typ="safe", pure=False)
    yaml.Resolver = _FastResolver
    return yaml


class _PureResolver(_FastResolver):
    """The fast resolver for ruamel's pure-Python parser (which asks for the YAML version)."""

    processing_version = (1, 1)


def _new_pure_yaml() -> YAML:
    """ruamel's pure-Python parser: slower, but it accepts what libyaml wrongly rejects, such as
    ``{name: web, image: nginx:1.25}`` (a ``:`` inside a plain scalar in a flow mapping), which
    kubectl's go-yaml reads. Used only to retry a file the C parser failed on."""
    yaml = YAML(typ="safe", pure=True)
    yaml.Resolver = _PureResolver
    return yaml


def scalar_kind(node: Any) -> Literal["str", "int", "float", "bool", "null", "other"]:
    """What a scalar node means: ``str`` for strings (quoted or plain), else its YAML type."""
    tag = node.ctag
    if tag is _STR:
        return "str"
    if tag is _NULL:
        return "null"
    if tag is _INT:
        return "int"
    if tag is _FLOAT:
        return "float"
    if tag is _BOOL:
        return "bool"
    text = str(tag)
    if text.startswith(_TAG_PREFIX):
        short = text[len(_TAG_PREFIX) :]
        if short in ("str", "int", "float", "bool", "null"):
            return short  # type: ignore[return-value]
        if short in ("binary", "timestamp"):
            return "str"
    return "other"


def _is_str(node: Any) -> bool:
    return type(node) is ScalarNode and (node.ctag is _STR or scalar_kind(node) == "str")


def _to_int(text: str) -> int:
    text = text.replace("_", "")
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    if text.startswith("0b"):
        return sign * int(text[2:], 2)
    if text.startswith("0x"):
        return sign * int(text[2:], 16)
    if text.startswith("0o"):
        return sign * int(text[2:], 8)
    if ":" in text:
        value = 0
        for part in text.split(":"):
            value = value * 60 + int(part)
        return sign * value
    if len(text) > 1 and text.startswith("0"):
        return sign * int(text, 8)
    return sign * int(text)


def _to_float(text: str) -> float:
    text = text.replace("_", "").lower()
    if text.endswith(".nan"):
        return math.nan
    sign = -1.0 if text.startswith("-") else 1.0
    text = text.lstrip("+-")
    if text == ".inf":
        return sign * math.inf
    if ":" in text:
        value = 0.0
        for part in text.split(":"):
            value = value * 60 + float(part)
        return sign * value
    return sign * float(text)


def _scalar_value(node: Any) -> Any:
    kind = scalar_kind(node)
    text: str = node.value
    try:
        if kind == "null":
            return None
        if kind == "bool":
            return _BOOLS.get(text, text.lower() in ("true", "yes", "on", "y"))
        if kind == "int":
            return _to_int(text)
        if kind == "float":
            return _to_float(text)
    except ValueError:
        return text
    return text


def node_to_data(node: Any) -> Any:
    """Construct plain Python data (dict, list, str, int, float, bool, None) from a node.

    Uses YAML 1.1 scalar rules as Kubernetes does (``yes``/``on`` are booleans, ``010`` is
    octal) and applies ``<<`` merge keys; mapping keys are always strings (their text).
    Aliased nodes are constructed once per place they are used. Meant for the few objects a
    caller needs as data (for JSON patches): :func:`load_manifests` has already bounded depth
    and alias expansion of every document it returns.
    """
    if type(node) is ScalarNode:
        return _scalar_value(node)
    if type(node) is SequenceNode:
        return [node_to_data(child) for child in node.value]
    if type(node) is MappingNode:
        out: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key, value in node.value:
            if type(key) is ScalarNode and key.ctag is _MERGE:
                sources = value.value if type(value) is SequenceNode else [value]
                for source in reversed(sources):
                    data = node_to_data(source)
                    if isinstance(data, dict):
                        merged.update(data)
                continue
            name = key.value if type(key) is ScalarNode else str(node_to_data(key))
            out[name] = node_to_data(value)
        if merged:
            return {**merged, **out}
        return out
    if node is None:
        return None
    raise TypeError(f"not a YAML node: {type(node).__name__}")


# --------------------------------------------------------------------------------------------
# Checking one document


def _line(node: Any) -> int:
    return int(node.start_mark.line) + 1


class _LineMark:
    """The start mark kept on checked nodes: just the 0-based ``line`` (and ``column`` 0).

    libyaml's marks (two per node, 96 bytes each) are most of a composed tree's memory; every
    node :func:`load_manifests` returns carries one of these, shared by the nodes starting on
    the same line, and ``end_mark`` is ``None``.
    """

    __slots__ = ("line",)
    column = 0

    def __init__(self, line: int) -> None:
        self.line = line


_intern = sys.intern


class _Checker:
    """Walks documents once: duplicate keys, depth, alias expansion, recursive aliases."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.alias_nodes = 0
        self.file = ""
        # id(collection node) -> nodes a walk visits from it (-1 while being walked).
        self._sizes: dict[int, int] = {}
        # 0-based line -> the one small mark shared by every node starting on that line.
        self._marks: dict[int, _LineMark] = {}

    def check(self, file: str, node: Any) -> None:
        self.file = file
        self._sizes = {}
        self._marks = {}
        try:
            self._walk(node, 1)
        except RecursionError:
            raise InputError(
                "nesting too deep to read",
                file=file,
                line=_line(node),
                hint="Kubernetes objects are never nested this deep; check the file",
            ) from None
        finally:
            self._sizes = {}
            self._marks = {}

    def _walk(self, node: Any, depth: int) -> int:
        sizes = self._sizes
        key = id(node)
        known = sizes.get(key)
        if known is not None:
            if known < 0:
                raise InputError(
                    "recursive YAML alias (an anchor that contains itself)",
                    file=self.file,
                    line=_line(node),
                    hint="Kubernetes objects cannot be recursive; remove the alias",
                )
            self.alias_nodes += known
            if self.alias_nodes > self.limits.max_alias_nodes:
                raise InputError(
                    f"YAML aliases expand to more than {self.limits.max_alias_nodes:,} nodes"
                    " (an alias bomb?)",
                    file=self.file,
                    line=_line(node),
                    hint="rendered manifests do not need YAML aliases; expand them",
                )
            return known
        if depth > self.limits.max_depth:
            raise InputError(
                f"nesting deeper than {self.limits.max_depth} levels",
                file=self.file,
                line=_line(node),
                hint="Kubernetes objects are never nested this deep; check the file",
            )
        sizes[key] = -1
        size = 1
        marks = self._marks
        mark = marks.get(node.start_mark.line)
        if mark is None:
            mark = marks[node.start_mark.line] = _LineMark(node.start_mark.line)
        node.start_mark = mark
        node.end_mark = None
        children = node.value
        if type(node) is MappingNode:
            names = []
            for k, value in children:
                if type(k) is not ScalarNode:
                    raise InputError(
                        "a mapping key is not a scalar",
                        file=self.file,
                        line=_line(k),
                        hint="Kubernetes objects have string keys",
                    )
                k.value = name = _intern(k.value)
                names.append(name)
                mark = marks.get(k.start_mark.line)
                if mark is None:
                    mark = marks[k.start_mark.line] = _LineMark(k.start_mark.line)
                k.start_mark = mark
                k.end_mark = None
                if type(value) is ScalarNode:
                    size += 2
                    if value.end_mark is not None:
                        mark = marks.get(value.start_mark.line)
                        if mark is None:
                            mark = marks[value.start_mark.line] = _LineMark(value.start_mark.line)
                        value.start_mark = mark
                        value.end_mark = None
                else:
                    size += 1 + self._walk(value, depth + 1)
            if len(names) > 1 and len(set(names)) != len(names):
                self._duplicate(children)
        else:
            for value in children:
                if type(value) is ScalarNode:
                    size += 1
                    if value.end_mark is not None:
                        mark = marks.get(value.start_mark.line)
                        if mark is None:
                            mark = marks[value.start_mark.line] = _LineMark(value.start_mark.line)
                        value.start_mark = mark
                        value.end_mark = None
                else:
                    size += self._walk(value, depth + 1)
        sizes[key] = size
        return size

    def _duplicate(self, children: list[tuple[Any, Any]]) -> None:
        first: dict[str, int] = {}
        for k, _ in children:
            if k.value in first:
                raise InputError(
                    f"duplicate key {k.value!r} (first at line {first[k.value]})",
                    file=self.file,
                    line=_line(k),
                    hint="remove one of the two; Kubernetes would silently keep only one",
                )
            first[k.value] = _line(k)


def _get(node: Any, key: str) -> Any:
    """The value node of ``key`` in a mapping node, or ``None``."""
    for k, v in node.value:
        if k.value == key:
            return v
    return None


def _text(node: Any) -> str | None:
    """The text of a non-null scalar, else ``None``."""
    if type(node) is ScalarNode and node.ctag is not _NULL:
        return str(node.value)
    return None


_TYPE_NAMES = {MappingNode: "a mapping", SequenceNode: "a list", ScalarNode: "a scalar"}


def _object(file: str, index: int, node: Any, item: int | None) -> Document:
    what = "list item" if item is not None else "document"
    if type(node) is not MappingNode:
        raise InputError(
            f"{what} is {_TYPE_NAMES.get(type(node), 'not a mapping')}, not a Kubernetes object",
            file=file,
            line=_line(node),
            hint="each document must be a mapping with apiVersion and kind",
        )
    fields: dict[str, Any] = {}
    for k, v in node.value:
        if k.value in ("apiVersion", "kind", "metadata"):
            fields[k.value] = v
    for name in ("apiVersion", "kind"):
        value = fields.get(name)
        if value is None:
            raise InputError(
                f"{what} has no {name}",
                file=file,
                line=_line(node),
                hint="each object needs string apiVersion and kind; is this a Helm values file?",
            )
        if not _is_str(value) or not value.value:
            raise InputError(
                f"{name} is not a string",
                file=file,
                line=_line(value),
                hint=f"give {name} as a non-empty string",
            )
    name_: str | None = None
    namespace: str | None = None
    metadata = fields.get("metadata")
    if type(metadata) is MappingNode:
        name_ = _text(_get(metadata, "name"))
        namespace = _text(_get(metadata, "namespace"))
    return Document(
        file=file,
        index=index,
        line=_line(node),
        api_version=str(fields["apiVersion"].value),
        kind=str(fields["kind"].value),
        name=name_,
        namespace=namespace,
        node=node,
        item=item,
    )


def _objects(file: str, index: int, node: Any) -> Iterator[Document]:
    doc = _object(file, index, node, None)
    if doc.kind.endswith("List"):
        items = _get(node, "items")
        if items is not None:
            if type(items) is SequenceNode:
                for i, child in enumerate(items.value):
                    yield _object(file, index, child, i)
                return
            if items.ctag is not _NULL:
                raise InputError(
                    f"items of a {doc.kind} is not a list",
                    file=file,
                    line=_line(items),
                    hint="a List holds its objects in a list named items",
                )
            return
    yield doc


# --------------------------------------------------------------------------------------------
# Reading files


def _too_deep_text(text: str, limit: int) -> int | None:
    """A 1-based line where nesting may exceed ``limit``, checked on the text.

    libyaml recurses once per nesting level and crashes the process on very deep input, so
    this runs before composing. It over-estimates (brackets inside plain and block scalars
    count), which only matters for texts far outside anything real; the count restarts at each
    document marker, so unbalanced brackets in many documents' scripts do not add up.
    """
    if text.count("[") + text.count("{") > limit:
        stripped = _QUOTED.sub(_blank_quoted, text)
        depth = 0
        for match in _BRACKETS.finditer(stripped):
            if len(match.group()) > 1:
                depth = 0
            elif match.group() in "[{":
                depth += 1
                if depth > limit:
                    return stripped.count("\n", 0, match.start()) + 1
            elif depth:
                depth -= 1
    lead = re.search(rf"^[ \t?:-]{{{limit}}}", text, re.MULTILINE)
    if lead:
        return text.count("\n", 0, lead.start()) + 1
    return None


_QUOTED = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\n]|\'\')*\'|#[^\n]*')
_BRACKETS = re.compile(r"[\[\]{}]|^(?:---|\.\.\.)(?=[ \t\r\n]|\Z)", re.MULTILINE)


def _blank_quoted(match: re.Match[str]) -> str:
    return "\n" * match.group().count("\n")


# libyaml's own recursion limit sits near 20,000 levels (segfault); stay far below.
_TEXT_DEPTH_LIMIT = 2_000


_WIDE_BOMS = {
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\xfe\xff": "UTF-16",
    b"\xff\xfe": "UTF-16",
}


_SURROGATE = re.compile("[\ud800-\udfff]")


def _decode(data: bytes, file: str) -> str:
    for bom, name in _WIDE_BOMS.items():
        if data.startswith(bom):
            raise InputError(
                f"{name} text (byte order mark), not UTF-8",
                file=file,
                line=1,
                hint="save the file as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)",
            )
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise InputError(
            "binary file (contains NUL bytes), not YAML or JSON",
            file=file,
            line=line,
            hint="give rendered manifests as UTF-8 text",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            file=file,
            line=line,
            hint="save the file as UTF-8; YAML manifests must be UTF-8 text",
        ) from None


def _too_large(file: str, size: int | None, limits: Limits) -> InputError:
    what = f"{size:,} bytes" if size is not None else "larger"
    return InputError(
        f"file too large ({what}; the limit is {limits.max_file_bytes:,} bytes)",
        file=file,
        hint="raise the limit with --max-file-bytes if this file is really meant",
    )


def _read_file(path: Path, file: str, limits: Limits, *, named: bool = False) -> str:
    """The text of ``path``; only a file the user ``named`` may be a pipe (``<(helm ...)``)."""
    try:
        info = path.stat()
        size = info.st_size
        if not named and not stat.S_ISREG(info.st_mode):
            raise InputError(
                "not a regular file (a pipe, device or socket)",
                file=file,
                hint="a base directory may hold only regular files; remove it",
            )
        if size > limits.max_file_bytes:
            raise _too_large(file, size, limits)
        with path.open("rb") as fh:
            data = fh.read(limits.max_file_bytes + 1)
    except OSError as exc:
        raise InputError(
            f"cannot read: {exc.strerror or exc}", file=file, hint="check the path"
        ) from None
    if len(data) > limits.max_file_bytes:
        raise _too_large(file, None, limits)
    return _decode(data, file)


def _codepoint(character: Any) -> int:
    return ord(character) if isinstance(character, str) else int(character)


# A Helm/Go template action outside a comment: ``{{ .Values.image }}``, ``{{- if .x }}``.
_TEMPLATE_ACTION = re.compile(r"^[^#\n]*?(\{\{-?)", re.MULTILINE)
# Errors a template left in a file causes when read as YAML.
_TEMPLATE_SYMPTOMS = ("YAML error", "a mapping key is not a scalar")


def _template_error(exc: InputError, file: str, text: str) -> InputError | None:
    """The unrendered-template error to report instead of ``exc`` (a YAML error or a
    non-scalar key caused by a template action such as ``image: {{ .Values.image }}`` or
    ``{{- if .Values.x }}``), or ``None`` when ``text`` holds no template action."""
    if not exc.message.startswith(_TEMPLATE_SYMPTOMS):
        return None
    found = list(_TEMPLATE_ACTION.finditer(text))
    if not found:
        return None
    # The template action nearest before the error (YAML errors surface after their cause).
    line_of = [text.count("\n", 0, m.start(1)) + 1 for m in found]
    before = [n for n in line_of if exc.line is None or n <= exc.line]
    line = before[-1] if before else line_of[0]
    action = text.splitlines()[line - 1].strip()
    if len(action) > 80:
        action = action[:77] + "..."
    return InputError(
        f"unrendered template: {action!r} (not YAML until rendered)",
        file=file,
        line=line,
        hint="render the chart or KOTS templates first (helm template, kots pull), then run"
        " kotsrewrite on the output",
    )


_TEMPLATE_LINE = re.compile(r"\{\{|\{\%")


def _template_hint(exc: InputError, text: str) -> InputError:
    """A YAML or structure error in a file holding unrendered templates ({{ ... }}) is not to
    be fixed in the YAML: say to render it first (limits keep their own hint)."""
    if exc.hint and ("--max" in exc.hint or "limit" in exc.hint):
        return exc
    found = _TEMPLATE_LINE.search(text)
    if found is None:
        return exc
    line = text.count("\n", 0, found.start()) + 1
    if exc.line is not None and line > exc.line:
        return exc
    exc.hint = (
        f"line {line} holds a template ({found.group()} ...): if it is not rendered, render"
        " the chart or KOTS templates first (helm template, kots pull) and give the output;"
        f" else {exc.hint or 'fix the file'}"
    )
    return exc


class _VisitorError(Exception):
    """What a visitor raised, carried past the loader's own handling of errors."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


#: Called with each object as soon as it is read; returns the object to keep in its place
#: (itself, or a copy without its node tree).
Visitor = Callable[[Document], Document]


class _Loader:
    def __init__(self, limits: Limits, visit: Visitor | None = None) -> None:
        self.limits = limits
        self.checker = _Checker(limits)
        self.visit = visit
        self.documents: list[Document] = []
        self.files: list[str] = []
        self.count = 0
        self.yaml = _new_yaml()

    def add_text(self, file: str, text: str) -> None:
        try:
            self._add_text(file, text)
        except _VisitorError as exc:
            raise exc.error from None  # not about this file's YAML: as the visitor said it
        except InputError as exc:
            raise _template_error(exc, file, text) or _template_hint(exc, text) from None

    def _add_text(self, file: str, text: str) -> None:
        self.files.append(file)
        line = _too_deep_text(text, _TEXT_DEPTH_LIMIT)
        if line is not None:
            raise InputError(
                f"nesting deeper than {self.limits.max_depth} levels",
                file=file,
                line=line,
                hint="Kubernetes objects are never nested this deep; check the file",
            )
        documents, count, aliases = len(self.documents), self.count, self.checker.alias_nodes
        try:
            try:
                self._compose(file, text, self.yaml)
            except (ScannerError, ParserError) as exc:
                # libyaml rejects some YAML that go-yaml (kubectl) reads; retry this one file
                # with the pure-Python parser, and report the C parser's error if that fails too.
                # The objects before the error were already delivered (and visited): the retry
                # delivers only the ones after them.
                self.count, self.checker.alias_nodes = count, aliases
                try:
                    with warnings.catch_warnings():
                        # e.g. a duplicate anchor: an error to libyaml, a warning here
                        warnings.simplefilter("error")
                        self._compose(
                            file, text, _new_pure_yaml(), skip=len(self.documents) - documents
                        )
                except (YAMLError, RecursionError, Warning):
                    raise exc from None
        except ReaderError as exc:
            line = text.count("\n", 0, max(0, int(exc.position))) + 1
            raise InputError(
                f"YAML error: {exc.reason} (U+{_codepoint(exc.character):04X})",
                file=file,
                line=line,
                hint="remove the control character; YAML text cannot contain it",
            ) from None
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or "invalid YAML"
            context = exc.context or ""
            if context.startswith("found duplicate anchor") and exc.context_mark is not None:
                problem = f"duplicate anchor (first at line {exc.context_mark.line + 1})"
            elif context and exc.context_mark is not None and exc.problem_mark is not None:
                problem = f"{problem} ({context} at line {exc.context_mark.line + 1})"
            raise InputError(
                f"YAML error: {problem}",
                file=file,
                line=int(mark.line) + 1 if mark is not None else None,
                hint="fix the YAML syntax (indentation, quoting, unclosed brackets)",
            ) from None
        except YAMLError as exc:
            raise InputError(f"YAML error: {exc}", file=file, hint="fix the YAML syntax") from None
        except RecursionError:
            raise InputError(
                "nesting too deep to read",
                file=file,
                hint="Kubernetes objects are never nested this deep; check the file",
            ) from None

    def _compose(self, file: str, text: str, yaml: YAML, skip: int = 0) -> None:
        """Compose, check and deliver the objects of ``text``, but the first ``skip``."""
        visit, documents = self.visit, self.documents
        for index, node in enumerate(yaml.compose_all(text)):
            self.count += 1
            if self.count > self.limits.max_documents:
                raise InputError(
                    f"more than {self.limits.max_documents:,} YAML documents",
                    file=file,
                    line=_line(node) if node is not None else None,
                    hint="raise the limit with --max-documents if the base is really this large",
                )
            if node is None or (type(node) is ScalarNode and node.ctag is _NULL and not node.style):
                continue
            if type(node) is not ScalarNode:
                self.checker.check(file, node)
            for doc in _objects(file, index, node):
                if skip:
                    skip -= 1
                elif visit is None:
                    documents.append(doc)
                else:
                    try:
                        documents.append(visit(doc))
                    except Exception as exc:
                        raise _VisitorError(exc) from None


def _display(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _manifest_files(directory: Path) -> list[Path]:
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(directory):
        # Hidden directories, and midstreams an earlier run wrote (beside a single file of
        # this directory, say): the output of kotsrewrite is never its input.
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".") and not os.path.isfile(os.path.join(dirpath, d, MARKER_FILE))
        )
        for name in filenames:
            if name.startswith(".") or not name.endswith(_MANIFEST_SUFFIXES):
                continue
            path = Path(dirpath, name)
            found.append((path.relative_to(directory).as_posix(), path))
    found.sort()
    return [path for _, path in found]


def _kustomization_file(directory: Path) -> Path | None:
    for name in KUSTOMIZATION_FILES:
        path = directory / name
        if path.is_file():
            return path
    return None


def load_manifests(
    source: str | os.PathLike[str],
    *,
    limits: Limits | None = None,
    stdin: TextIO | None = None,
    visit: Visitor | None = None,
) -> Base:
    """Read manifests from a directory, a kustomize base, a file, or ``-`` (stdin).

    A directory is walked recursively for ``*.yaml``, ``*.yml`` and ``*.json`` (sorted; hidden
    files and directories skipped) unless it holds a kustomization file: then it is built with
    ``kubectl kustomize`` (or ``kustomize build``) and the documents are the built objects,
    each with its :attr:`~kotsrewrite.Document.origin` and the file and lines of its source
    (see ``kotsrewrite._kustomize``); nothing is written into the directory. Empty documents
    are skipped; ``List`` kinds contribute their ``items``.

    Raises :class:`~kotsrewrite.InputError` (with file and 1-based line) for unreadable,
    binary or oversized files, a kustomization kustomize cannot build (or no kustomize
    installed), YAML errors, duplicate keys, documents that are not objects,
    alias bombs, excessive nesting and too many documents.

    ``visit``, when given, is called with each object as soon as it is read and checked (in
    the order of :attr:`Base.documents`), while the next ones are still unread, and returns
    what to keep in its place: when that is a copy without the node tree
    (``attrs.evolve(doc, node=None)``), the tree is freed at once and loading holds one
    document's tree at a time. Exceptions it raises propagate (nothing later is read).
    """
    # The composed trees are millions of small container objects kept alive until the end:
    # the cyclic garbage collector would rescan them over and over (3x the parse time) and
    # could free nothing. Pause it while reading; it is restored even on error.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _load(source, limits if limits is not None else Limits(), stdin, visit)
    finally:
        if enabled:
            gc.enable()


def _load(
    source: str | os.PathLike[str], limits: Limits, stdin: TextIO | None, visit: Visitor | None
) -> Base:
    loader = _Loader(limits, visit)
    text_kept: str | None = None
    root: Path | None
    mode: Literal["kustomize", "directory", "file", "stdin"]
    if str(source) == "-":
        stream = stdin
        if stream is None:
            stream = sys.stdin
        try:
            text = stream.read(limits.max_file_bytes + 1)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"not valid UTF-8 ({exc.reason})",
                file=_STDIN,
                hint="give rendered manifests as UTF-8 text",
            ) from None
        if len(text) > limits.max_file_bytes:
            raise _too_large(_STDIN, None, limits)
        if "\x00" in text:
            raise InputError(
                "binary input (contains NUL bytes), not YAML or JSON",
                file=_STDIN,
                line=text.count("\n", 0, text.index("\x00")) + 1,
                hint="give rendered manifests as UTF-8 text",
            )
        # Under the C/POSIX locale Python decodes stdin with surrogateescape: bad bytes
        # arrive as lone surrogates, which the C parser cannot take.
        bad = _SURROGATE.search(text)
        if bad is not None:
            raise InputError(
                f"not valid UTF-8 (byte 0x{ord(bad.group()) & 0xFF:02x})",
                file=_STDIN,
                line=text.count("\n", 0, bad.start()) + 1,
                hint="give rendered manifests as UTF-8 text",
            )
        text = text.removeprefix("\ufeff")
        loader.add_text(_STDIN, text)
        text_kept, root, mode = text, None, "stdin"
    else:
        path = Path(source)
        if path.is_dir():
            root = path
            if _kustomization_file(path) is not None:
                from ._kustomize import build

                try:
                    built = build(path, limits=limits, source=str(source))
                except InputError as exc:
                    raise exc.within(str(source)) from None
                if visit is None:
                    return built
                try:  # kustomize built them all at once: visit them now, in order
                    return attrs.evolve(built, documents=tuple(map(visit, built.documents)))
                except InputError as exc:
                    raise exc.within(built.base_dir) from None
            mode = "directory"
            if (path / "Chart.yaml").is_file():
                raise InputError(
                    "a Helm chart, not rendered manifests",
                    file=shown_path(str(source), "Chart.yaml"),
                    hint="render it first (helm template RELEASE CHART > rendered.yaml) and"
                    " give the output, or run kotsrewrite post-render as Helm's"
                    " --post-renderer",
                )
            paths = _manifest_files(path)
            if not paths:
                raise InputError(
                    "no manifests (*.yaml, *.yml, *.json) in this directory",
                    file=str(source),
                    hint="give the directory holding the rendered manifests",
                )
            try:
                for p in paths:
                    display = _display(p, root)
                    loader.add_text(display, _read_file(p, display, limits))
            except InputError as exc:
                # Files are named relative to the base; messages name them as the user can
                # open them from where they ran the command.
                raise exc.within(str(source)) from None
        elif path.exists():
            if path.name in KUSTOMIZATION_FILES:
                raise InputError(
                    "a kustomization file, not manifests",
                    file=str(source),
                    hint=f"give its directory ({os.path.dirname(str(source)) or '.'}) to read"
                    " it as a kustomize base",
                )
            root, mode = path.parent, "file"
            try:
                text = _read_file(path, path.name, limits, named=True)
                loader.add_text(path.name, text)
            except InputError as exc:
                raise exc.within(os.path.dirname(str(source))) from None
            if not path.is_file():  # a pipe (<(helm template ...)): it cannot be read twice
                text_kept = text
        else:
            raise InputError(
                "no such file or directory",
                file=str(source),
                hint="give a directory, a file, or - for stdin",
            )
    return Base(
        source=str(source),
        root=root,
        mode=mode,
        files=tuple(loader.files),
        documents=tuple(loader.documents),
        text=text_kept,
    )
