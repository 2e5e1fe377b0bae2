"""Rendering a :class:`~kotsrewrite.Plan` to midstream files (pure: returns text, writes nothing).

Layout of the output directory (paths are relative to it):

* ``kustomization.yaml``: ``resources`` (the base, then the secret files),
  ``configurations`` (when needed), ``commonAnnotations``, ``images``, ``patches``;
* ``pull-secret.yaml`` (the app namespace, no ``metadata.namespace``) and
  ``pull-secret-<namespace>.yaml`` for every other namespace (written mode 0600);
* ``image-fields.yaml``: the ``configurations`` file, only when an image to rename sits where
  kustomize does not look by default;
* ``base/``: when the input is not a kustomization (a plain directory, a single file, stdin):
  a snapshot of the manifest files read, byte for byte under their paths relative to the
  input, with a ``kustomization.yaml`` listing them.

kustomize refuses a plain directory, or files outside the kustomization root, as a resource, but
accepts a directory anywhere that holds a kustomization. A kustomization input is therefore
named by its path relative to the output; any other input is snapshotted into ``base/``, so the
midstream is self-contained, matches exactly what was read, and nothing is ever written into
the user's input.

Strings that YAML 1.1 (which kustomize reads) would take for a bool, a number, a null or a
timestamp (``on``, ``yes``, ``y``, ``1.10``, ``0x1f``...) are double quoted.
"""

from __future__ import annotations

import functools
import io
import json
import os
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import LiteralScalarString

from ._model import Base
from ._plan import Plan, PullSecret

__all__ = [
    "BASE_DIR",
    "CONFIGURATIONS_FILE",
    "KUSTOMIZATION_FILE",
    "dump_yaml",
    "is_secret_file",
    "read_base_texts",
    "render_plan",
    "secret_file_name",
]

KUSTOMIZATION_FILE = "kustomization.yaml"
CONFIGURATIONS_FILE = "image-fields.yaml"
BASE_DIR = "base"
_STDIN_FILE = "stdin.yaml"
# Plain scalars YAML 1.1 or 1.2 would resolve to something other than a string.
_AMBIGUOUS = re.compile(
    r"""^(?:
        y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF
      | ~|null|Null|NULL
      | [-+]?0b[0-1_]+ | [-+]?0o?[0-7_]+ | [-+]?(?:0|[1-9][0-9_]*) | [-+]?0x[0-9a-fA-F_]+
      | [-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+
      | [-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?
      | [-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
      | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
      | [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
      | [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}.*
      | << | =
    )$""",
    re.VERBOSE,
)


def _represent_str(representer: RoundTripRepresenter, data: str) -> Any:
    style = '"' if _AMBIGUOUS.match(data) or data == "" else None
    return representer.represent_scalar("tag:yaml.org,2002:str", data, style=style)


# ruamel folds scalars longer than its width, and its folding of double-quoted scalars loses
# or gains characters (0.18-0.19: a break after an escape such as ``\\`` reads back as an
# extra space; a Grafana dashboard's JSON no longer parses). Kubernetes' and kustomize's YAML
# readers take lines of any length, so nothing is ever folded: every scalar on one line.
_NO_FOLDING = 2**62


class _PureYAML(YAML):
    """ruamel's YAML without its plug-in search: ``YAML()`` globs its package directory for
    ``*/__plug_in__.py`` on every construction (none ship with ruamel.yaml), which would
    make rendering list a directory."""

    def official_plug_ins(self) -> list[str]:
        return []


def _yaml() -> YAML:
    yaml = _PureYAML(typ="rt", pure=True)
    yaml.width = _NO_FOLDING
    yaml.indent(mapping=2, sequence=2, offset=0)
    yaml.representer.add_representer(str, _represent_str)
    return yaml


@functools.cache
def _fast_yaml() -> YAML:
    """The :func:`_yaml` whose resolver the fast path consults (it only reads it)."""
    return _yaml()


def dump_yaml(data: Any) -> str:
    """Deterministic YAML for kustomize: insertion order kept, ambiguous strings quoted."""
    fast = _fast_dump(data, _fast_yaml())
    if fast is not None:
        return fast
    stream = io.StringIO()
    _yaml().dump(data, stream)
    return stream.getvalue()


# The fast path: what ruamel's emitter writes for the small subset of YAML the midstream is
# made of (mappings and sequences of strings, literal block patches), written directly. Any
# data outside the subset goes through ruamel; tests compare both on the golden files.

_STR_TAG = "tag:yaml.org,2002:str"
_LITERAL_LINE = re.compile(r"[\x20-\x7e]*[\x21-\x7e]")
# What the fast path writes: printable ASCII, line feeds and tabs (these two only double
# quoted, as ``\n`` and ``\t``; no line is long enough for ruamel to fold it).
_PRINTABLE = re.compile(r"[\x20-\x7e\n\t]+")
# First characters ruamel never writes plain; and those it does not when a space follows.
_NOT_PLAIN_START = frozenset("#,[]{}&*!|>'\"%@`")
_NOT_PLAIN_BEFORE_SPACE = frozenset("?:-")
# Values ruamel writes as these words: integers, booleans, empty collections (flow style).
_FLOW: dict[type, Any] = {
    int: int.__repr__,
    bool: lambda value: "true" if value else "false",
    dict: lambda value: "{}",
    list: lambda value: "[]",
}


def _double_quoted(text: str) -> str:
    """ruamel's double quoted style for text :data:`_PRINTABLE` accepts."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'


def _block_plain(text: str) -> bool:
    """Whether ruamel's emitter allows ``text`` (printable ASCII, one line, not empty) as a
    plain scalar in block context: its ``analyze_scalar`` rules for that subset."""
    first = text[0]
    if first == " " or text[-1] == " " or text.startswith(("---", "...")):
        return False
    if first in _NOT_PLAIN_START:
        return False
    if first in _NOT_PLAIN_BEFORE_SPACE and (len(text) == 1 or text[1] == " "):
        return False
    return ": " not in text[1:] and not (len(text) > 1 and text.endswith(":")) and " #" not in text


_MAX_KEY = 100  # ruamel writes keys of 128 characters or more as complex (``? key``) keys


class _Unsupported(Exception):
    """The data is outside what :func:`_fast_dump` writes."""


#: Scalars already written by :meth:`_FastEmitter.scalar` (same text, same output, every
#: time): a post-render output repeats most keys and many values in every object.
_SCALARS: dict[str, str] = {}
_SCALARS_MAX = 100_000


class _FastEmitter:
    def __init__(self, yaml: YAML) -> None:
        self._resolver = yaml.resolver
        if len(_SCALARS) > _SCALARS_MAX:
            _SCALARS.clear()
        self._scalars = _SCALARS
        self.lines: list[str] = []
        self._seen: set[int] = set()

    def enter(self, container: object) -> None:
        """A collection seen twice is shared: ruamel writes an anchor and an alias for it,
        which this emitter does not, so it declines (:class:`_Unsupported`)."""
        key = id(container)
        if key in self._seen:
            raise _Unsupported("shared collection")
        self._seen.add(key)

    def scalar(self, text: str) -> str:
        """``text`` as ruamel writes it with :func:`_represent_str`: plain, single quoted when
        plain is not allowed, or double quoted when ambiguous; :class:`_Unsupported` when it
        would need anything else."""
        out = self._scalars.get(text)
        if out is not None:
            return out
        if text == "":
            out = '""'
        elif len(text) > 1000 or not _PRINTABLE.fullmatch(text):
            raise _Unsupported(text)
        elif _AMBIGUOUS.match(text) or "\n" in text or "\t" in text:
            out = _double_quoted(text)
        else:
            tag = self._resolver.resolve(ScalarNode, text, (True, False))
            if str(getattr(tag, "value", tag)) != _STR_TAG:
                raise _Unsupported(text)
            if _block_plain(text):
                out = text
            elif "'" in text:
                out = _double_quoted(text)
            else:
                out = f"'{text}'"
        self._scalars[text] = out
        return out

    def mapping(self, data: dict[Any, Any], indent: int) -> None:
        if not data:
            raise _Unsupported("empty mapping")
        self.enter(data)
        pad = " " * indent
        for key, value in data.items():
            if type(key) is not str or len(key) >= _MAX_KEY or "\n" in key:
                raise _Unsupported(key)
            head = f"{pad}{self.scalar(key)}:"
            kind = type(value)
            if kind is str:
                self.lines.append(f"{head} {self.scalar(value)}")
            elif kind is LiteralScalarString:
                self.lines.append(f"{head} |")
                self.literal(value, indent + 2)
            elif kind is dict and value:
                self.lines.append(head)
                self.mapping(value, indent + 2)
            elif kind is list and value:
                self.lines.append(head)
                self.sequence(value, indent)
            elif kind in _FLOW:
                if kind is dict or kind is list:
                    self.enter(value)
                self.lines.append(f"{head} {_FLOW[kind](value)}")
            elif value is None:
                self.lines.append(head)
            else:
                raise _Unsupported(kind)

    def sequence(self, data: list[Any], indent: int) -> None:
        if not data:
            raise _Unsupported("empty sequence")
        self.enter(data)
        pad = " " * indent
        for item in data:
            kind = type(item)
            if kind is str:
                self.lines.append(f"{pad}- {self.scalar(item)}")
            elif kind is dict and item:
                first = len(self.lines)
                self.mapping(item, indent + 2)
                self.lines[first] = f"{pad}- {self.lines[first][indent + 2 :]}"
            elif kind in _FLOW and not (kind is list and item):
                if kind is dict or kind is list:
                    self.enter(item)
                self.lines.append(f"{pad}- {_FLOW[kind](item)}")
            elif item is None:
                self.lines.append(f"{pad}- ")
            else:
                raise _Unsupported(kind)

    def literal(self, text: str, indent: int) -> None:
        if not text.endswith("\n") or text.startswith(" "):
            raise _Unsupported("literal without a final newline or with a leading space")
        pad = " " * indent
        for line in text[:-1].split("\n"):
            if not _LITERAL_LINE.fullmatch(line):
                raise _Unsupported(line)
            self.lines.append(pad + line)


def _fast_dump(data: Any, yaml: YAML) -> str | None:
    """``data`` as ruamel dumps it with :func:`_yaml`, or ``None`` when outside the subset."""
    emitter = _FastEmitter(yaml)
    try:
        if type(data) is dict:
            emitter.mapping(data, 0)
        elif type(data) is list:
            emitter.sequence(data, 0)
        else:
            return None
    except _Unsupported:
        return None
    return "\n".join(emitter.lines) + "\n"


def secret_file_name(secret: PullSecret) -> str:
    """``pull-secret.yaml`` for the app namespace, ``pull-secret-<ns>.yaml`` otherwise."""
    return (
        "pull-secret.yaml" if secret.namespace is None else f"pull-secret-{secret.namespace}.yaml"
    )


def is_secret_file(path: str) -> bool:
    """Whether a rendered path holds a pull secret (written mode 0600)."""
    return "/" not in path and path.startswith("pull-secret")


def read_base_texts(base: Base) -> dict[str, str]:
    """The text of each manifest file of ``base`` (what :func:`render_plan` snapshots into
    ``base/`` for a plain directory or a single file); stdin's text, and a named pipe's,
    come from :attr:`Base.text`; a kustomization needs none."""
    if base.mode == "stdin":
        return {_STDIN_FILE: base.text or ""}
    if base.mode not in ("file", "directory") or base.root is None:
        return {}
    if base.mode == "file" and base.text is not None:  # a named pipe, read once already
        return {name: base.text for name in base.files}
    texts = {}
    for name in base.files:
        with (base.root / name).open(encoding="utf-8", newline="") as fh:
            texts[name] = fh.read()
    return texts


def _kustomization(resources: list[str]) -> str:
    return dump_yaml(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": resources,
        }
    )


def _base_copy_name(base: Base, name: str) -> str:
    if base.mode == "stdin":
        return _STDIN_FILE
    return posixpath.normpath(name.replace(os.sep, "/"))


def _relative_base(base: Base, out_dir: str | os.PathLike[str]) -> str:
    """A kustomization input's path relative to ``out_dir`` (``/``-separated), by path
    arithmetic on absolute paths only (:func:`os.path.relpath` consults the current
    directory for a relative one)."""
    root, out = os.fspath(base.root or ""), os.fspath(out_dir)
    if not (os.path.isabs(root) and os.path.isabs(out)):
        raise ValueError(
            "render_plan names a kustomization input relative to out_dir: give both"
            f" base.root ({root!r}) and out_dir ({out!r}) as absolute paths"
            " (e.g. Path(...).resolve())"
        )
    return os.path.relpath(root, out).replace(os.sep, "/")


def _snapshot_texts(base: Base, base_texts: Mapping[str, str] | None) -> Mapping[str, str]:
    """The texts to snapshot into ``base/``: stdin's from ``base``, any other's given."""
    if base.mode == "stdin":
        return {_STDIN_FILE: base.text or ""}
    missing = [name for name in base.files if base_texts is None or name not in base_texts]
    if base_texts is None or missing:
        raise ValueError(
            "render_plan snapshots a plain directory or file into base/ from base_texts:"
            f" give the text of every file (missing: {', '.join(missing)});"
            " read_base_texts(base) reads them"
        )
    return base_texts


def render_plan(
    plan: Plan,
    base: Base,
    *,
    out_dir: str | os.PathLike[str],
    base_texts: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The midstream files: ``{path relative to out_dir: text}``, sorted by path.

    Pure: it reads no file and asks the file system nothing. What it needs comes from the
    caller:

    * a kustomization input is named by its path relative to ``out_dir``, computed from
      ``out_dir`` and :attr:`Base.root` by path arithmetic alone: both must then be absolute,
      with symlinks resolved where they matter (``Path(...).resolve()``), else
      :class:`ValueError`;
    * a plain directory or a single file is snapshotted into ``base/`` from ``base_texts``
      (``{file: text}`` for every name in :attr:`Base.files`; :func:`read_base_texts` reads
      them), else :class:`ValueError`; stdin's text is :attr:`Base.text`.

    The pull secrets hold the license ID: write them with mode 0600 (see
    :func:`is_secret_file`).
    """
    files: dict[str, str] = {}
    if base.mode == "kustomize":
        base_ref = _relative_base(base, out_dir)
    else:
        texts = _snapshot_texts(base, base_texts)
        copied: list[str] = []
        for name in base.files if base.mode != "stdin" else (_STDIN_FILE,):
            target = _base_copy_name(base, name)
            files[f"{BASE_DIR}/{target}"] = texts[name if base.mode != "stdin" else _STDIN_FILE]
            copied.append(target)
        files[f"{BASE_DIR}/{KUSTOMIZATION_FILE}"] = _kustomization(copied)
        base_ref = BASE_DIR

    secret_files: list[str] = []
    for secret, data in zip(plan.secrets, plan.secret_objects(), strict=True):
        name = secret_file_name(secret)
        files[name] = dump_yaml(data)
        secret_files.append(name)

    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [base_ref, *secret_files],
    }
    if plan.field_specs:
        files[CONFIGURATIONS_FILE] = dump_yaml(
            {"images": [spec.to_json() for spec in plan.field_specs]}
        )
        kustomization["configurations"] = [CONFIGURATIONS_FILE]
    kustomization["commonAnnotations"] = {"kots.io/app-slug": plan.options.app_slug}
    if plan.renames:
        kustomization["images"] = [rename.to_json() for rename in plan.renames]
    if plan.patches:
        # Most patches hold the same operations (only the target differs): dump each
        # distinct list once.
        dumped: dict[str, str] = {}
        entries: list[dict[str, Any]] = []
        for patch in plan.patches:
            operations = patch.operations()
            key = json.dumps(operations)
            text = dumped.get(key)
            if text is None:
                text = dumped[key] = dump_yaml(operations)
            entries.append({"target": patch.target.to_json(), "patch": LiteralScalarString(text)})
        kustomization["patches"] = entries
    files[KUSTOMIZATION_FILE] = dump_yaml(kustomization)
    return dict(sorted(files.items()))
