"""Finding every image in a base. STUB: being written."""

from __future__ import annotations

from collections.abc import Sequence

from ._model import Base, ImageField, Inventory

__all__ = ["find_images"]


def find_images(base: Base, *, image_fields: Sequence[ImageField] = ()) -> Inventory:
    """Walk every object of ``base`` and collect image uses with their locations."""
    raise NotImplementedError
