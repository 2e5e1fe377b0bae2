"""How kustomize's ``images`` transformer matches and rewrites image names: the one place
the planner, the relocation planner, the Helm post-renderer and ``verify`` take these rules
from (pure: no I/O).

kustomize v5 (``api/filters/imagetag``, ``api/image``) rewrites an image string with an
``images`` entry when ``^<name>(:tag)?(@alg:digest)?$`` matches it, ``name`` compiled as a
regular expression *without escaping* (so ``quay.io/a`` also matches ``quayXio/a``); the new
image is ``newName`` followed by the tag and digest its ``image.Split`` finds in the old one.
Entries apply one after another, each to the result of the ones before.

What follows from that, and what this module provides:

* matching: :func:`name_matches`, :data:`TAG_DIGEST` (what may follow a name);
  :func:`split_image` and :func:`renamed` (the rewrite); :class:`Rename` (one entry),
  :func:`renames_from` (a kustomization's list) and :func:`apply_renames` (all of them, in
  order);
* spellings: kustomize compares names as written, so a repository needs one entry per
  spelling the base uses (:func:`spellings`: ``nginx`` and ``docker.io/library/nginx`` are
  two); an entry for one tag only is tag-qualified (:func:`tag_qualified`: ``nginx:1.25``);
* regex escaping: a name that would also catch an image it is not meant for is escaped as
  Go's ``regexp.QuoteMeta`` does (:func:`quote_meta`), and :func:`finish_renames` decides
  which to escape and checks what the entries make of every image;
* speed: :class:`RenameIndex` finds the names matching an image among many without trying
  each; :func:`simple_pattern` reads a regular expression made only of literal characters,
  escaped specials and ``.`` wildcards (the names above, and exact patch target names).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ._reference import ImageRef

__all__ = [
    "ANY",
    "TAG_DIGEST",
    "Rename",
    "RenameEntry",
    "RenameIndex",
    "apply_renames",
    "finish_renames",
    "name_matches",
    "quote_meta",
    "renamed",
    "renames_from",
    "simple_pattern",
    "spellings",
    "split_image",
    "tag_qualified",
]

#: What kustomize lets follow an entry's name in an image it matches: ``(:tag)?(@digest)?$``.
_TAG_DIGEST_SOURCE = r"(:[a-zA-Z0-9_.{}-]*)?(@[a-zA-Z][a-zA-Z0-9]*:[a-zA-Z0-9_.{}-]*)?$"
TAG_DIGEST = re.compile(_TAG_DIGEST_SOURCE)
"""What may follow a name in an image kustomize matches it with (match it at the name's end)."""


def name_matches(image: str, name: str) -> bool:
    """Whether a kustomize ``images`` entry with ``name`` matches ``image``.

    kustomize v5 compiles ``^<name>(:tag)?(@alg:digest)?$`` as a regular expression without
    escaping ``name`` (so ``.`` matches any character); this mirrors it. A name that is not a
    valid regular expression matches nothing.
    """
    pattern = _image_pattern(name)
    return pattern is not None and pattern.match(image) is not None


@functools.lru_cache(maxsize=4096)
def _image_pattern(name: str) -> re.Pattern[str] | None:
    try:
        return re.compile("^" + name + _TAG_DIGEST_SOURCE)
    except re.error:
        return None


def split_image(image: str) -> tuple[str, str, str]:
    """kustomize's ``image.Split``: (name, tag, digest), ``""`` for a part not there."""
    slash = image.find("/")
    search, offset = (image[slash:], slash) if slash > 0 else (image, 0)
    at, colon = search.find("@"), search.find(":")
    if colon < 0 and at < 0:
        return image, "", ""
    if at >= 0 and (at < colon or colon < 0):
        return image[: at + offset], "", image[at + offset + 1 :]
    if at >= 0 and colon >= 0:
        return (
            image[: colon + offset],
            image[colon + offset + 1 : at + offset],
            image[at + offset + 1 :],
        )
    return image[: colon + offset], image[colon + offset + 1 :], ""


def renamed(image: str, new_name: str) -> str:
    """``image`` renamed by a matching entry: ``new_name`` with the image's tag and digest."""
    _, tag, digest = split_image(image)
    out = new_name
    if tag:
        out += f":{tag}"
    if digest:
        out += f"@{digest}"
    return out


def quote_meta(text: str) -> str:
    """Go's ``regexp.QuoteMeta`` for the characters an image name can hold."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", text)


def spellings(refs: Iterable[ImageRef]) -> list[str]:
    """The names to write one entry each for so that every reference of ``refs`` (one
    repository) is matched: the spellings used, sorted (kustomize matches names as written,
    and each entry costs it a pass over every object)."""
    return sorted({ref.name for ref in refs})


def tag_qualified(ref: ImageRef) -> str:
    """The name of an entry matching ``ref``'s tag and digest only (``nginx:1.25``): the
    ``(:tag)?(@digest)?`` kustomize appends then matches nothing more."""
    out = ref.name + (f":{ref.tag}" if ref.tag is not None else "")
    return out + (f"@{ref.digest}" if ref.digest is not None else "")


@attrs.frozen(order=True)
class Rename:
    """One kustomize ``images`` entry: ``name`` + ``newName`` only (never a tag or digest)."""

    name: str
    """As written in the kustomization; kustomize reads it as a regular expression, so a
    ``.`` is escaped (``quay\\.io/...``) only where it would otherwise match another image."""
    new_name: str

    def matches(self, image: str) -> bool:
        """Whether kustomize applies this entry to ``image``."""
        return name_matches(image, self.name)

    def apply(self, image: str) -> str:
        """``image`` after this entry (unchanged when it does not match)."""
        if not self.matches(image):
            return image
        return renamed(image, self.new_name)

    def to_json(self) -> dict[str, str]:
        """The kustomization ``images`` entry."""
        return {"name": self.name, "newName": self.new_name}


def renames_from(images: Any) -> list[Rename]:
    """The name-only renames of a kustomization's ``images`` list, in order (entries without
    both a ``name`` and a ``newName`` rename nothing and are left out)."""
    return [
        Rename(name=str(e["name"]), new_name=str(e["newName"]))
        for e in images or []
        if isinstance(e, dict) and e.get("name") and e.get("newName")
    ]


def apply_renames(image: str, renames: Iterable[Rename]) -> str:
    """``image`` after every entry of ``renames``, in order, as kustomize applies them."""
    for rename in renames:
        image = rename.apply(image)
    return image


RenameEntry = tuple[str, str, frozenset[str]]
"""A candidate entry before escaping: (name as the base spells it, newName, the images as
written that it is meant to rename)."""


def finish_renames(
    entries: Sequence[RenameEntry], intended: Mapping[str, str]
) -> tuple[tuple[Rename, ...], list[str]]:
    """The entries as written, and the images they rename otherwise than intended.

    A name that would also match an image it is not meant for is escaped
    (:func:`quote_meta`); the entries are sorted (by name unescaped, then as written) and
    duplicates dropped. ``intended`` maps every image as written to what it must become; the
    images renamed to anything else are returned, in ``intended``'s order.
    """
    # Which images could reach each entry: the originals not yet renamed.
    catches_other = [False] * len(entries)
    entry_index = RenameIndex([name for name, _, _ in entries])
    for image in intended:
        for pos in entry_index.matching(image):
            if image not in entries[pos][2]:
                catches_other[pos] = True
    renames = [
        Rename(name=quote_meta(name) if escape else name, new_name=new_name)
        for (name, new_name, _), escape in zip(entries, catches_other, strict=True)
    ]
    renames = sorted(set(renames), key=lambda r: (r.name.replace("\\", ""), r.name))
    index = RenameIndex([r.name for r in renames])
    wrong = [image for image, want in intended.items() if index.rename(image, renames) != want]
    return tuple(renames), wrong


# Characters Python's ``re`` reads as something other than themselves (outside a class).
_SPECIAL = frozenset(".^$*+?{}[]\\|()")
ANY = None
"""A wildcard position (unescaped ``.``) in a :func:`simple_pattern`."""


def simple_pattern(pattern: str) -> list[str | None] | None:
    """``pattern`` as one token per matched character: the character itself, or :data:`ANY`
    for an unescaped ``.`` (any character but a newline); ``None`` when the pattern uses any
    other regular expression feature (or is empty, which matches everything)."""
    tokens: list[str | None] = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, None)
            if nxt is None or nxt not in _SPECIAL:
                return None
            tokens.append(nxt)
        elif ch == ".":
            tokens.append(ANY)
        elif ch in _SPECIAL:
            return None
        else:
            tokens.append(ch)
    return tokens or None


class RenameIndex:
    """kustomize ``images`` names indexed so that finding the ones matching an image looks at
    a few candidates, not at every name.

    A name kustomize reads as a regular expression made of literal characters, escaped
    specials and ``.`` wildcards (every name the planner writes) matches only images whose
    first ``len`` characters it matches, followed by what its ``(:tag)?(@digest)?$`` takes.
    So names are grouped by length and wildcard positions, and keyed by their other
    characters; any other name is checked with its real pattern against every image.
    """

    #: Candidates looked at, over every instance (a measure of work for tests).
    checks = 0

    def __init__(self, names: Iterable[str]) -> None:
        self._names: list[str] = []
        self._always: list[int] = []
        # length -> wildcard positions -> name with wildcards as NUL -> positions
        self._shapes: dict[int, dict[tuple[int, ...], dict[str, list[int]]]] = {}
        for pos, name in enumerate(names):
            self._names.append(name)
            tokens = simple_pattern(name) if "\0" not in name else None
            if tokens is None:
                self._always.append(pos)
                continue
            wild = tuple(i for i, token in enumerate(tokens) if token is ANY)
            key = "".join("\0" if token is ANY else token for token in tokens)
            by_wild = self._shapes.setdefault(len(tokens), {})
            by_wild.setdefault(wild, {}).setdefault(key, []).append(pos)

    def matching(self, image: str) -> list[int]:
        """Positions of the names that match ``image``, ascending."""
        if "\n" in image:  # ``.`` does not match it: leave that to the real patterns
            candidates = range(len(self._names))
            RenameIndex.checks += len(self._names)
            return [p for p in candidates if name_matches(image, self._names[p])]
        out = [p for p in self._always if name_matches(image, self._names[p])]
        checks = len(self._always)
        ends = {len(image)} | {i for i, ch in enumerate(image) if ch in ":@"}
        for end in ends:
            by_wild = self._shapes.get(end)
            if by_wild is None or TAG_DIGEST.match(image, end) is None:
                continue
            head = image[:end]
            for wild, keys in by_wild.items():
                checks += 1
                key = head
                if wild:
                    chars = list(head)
                    for i in wild:
                        chars[i] = "\0"
                    key = "".join(chars)
                out.extend(keys.get(key, ()))
        RenameIndex.checks += checks
        return sorted(out)

    def rename(self, image: str, renames: Sequence[Rename]) -> str:
        """``image`` after every entry of ``renames`` (the names indexed), in order, as
        kustomize applies them: the same as :func:`apply_renames`, looking at fewer."""
        done = -1
        while True:
            later = [pos for pos in self.matching(image) if pos > done]
            if not later:
                return image
            done = later[0]
            image = renamed(image, renames[done].new_name)
