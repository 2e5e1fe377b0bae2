"""Loading rendered manifests (directory, kustomize base, file, stdin). STUB: being written."""

from __future__ import annotations

import os
from typing import TextIO

import attrs

from ._model import Base

__all__ = ["Limits", "load_manifests"]


@attrs.frozen
class Limits:
    """Bounds that keep hostile input from hanging or exhausting memory."""

    max_file_bytes: int = 64 * 1024 * 1024
    max_documents: int = 100_000


def load_manifests(
    source: str | os.PathLike[str], *, limits: Limits | None = None, stdin: TextIO | None = None
) -> Base:
    """Read manifests from a directory, a kustomize base, a file, or ``-`` (stdin)."""
    raise NotImplementedError
