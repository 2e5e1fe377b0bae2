"""Use kotsrewrite as a library: list every image of the acme-platform example and where it is.

Run from the repository root::

    python examples/library_example.py [MANIFESTS]

MANIFESTS defaults to ``examples/acme/manifests`` beside this file. Nothing here touches the
network: loading and discovery only read files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import kotsrewrite

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    """Print each distinct image, then every place it is used."""
    source = argv[1] if len(argv) > 1 else str(HERE / "acme" / "manifests")

    base = kotsrewrite.load_manifests(source)
    inventory = kotsrewrite.find_images(base)
    images = inventory.images
    print(f"{len(base.documents)} objects in {len(base.files)} files, {len(images)} images")

    for ref in images:
        print()
        print(f"{ref}  (registry {ref.registry}, repository {ref.repository})")
        for use in inventory.uses:
            if use.ref != ref:
                continue
            loc = use.location
            where = f"{loc.namespace}/" if loc.namespace else ""
            print(
                f"  {loc.file}:{loc.line}  {loc.kind} {where}{loc.name}"
                f"  container={loc.container}  {loc.field}"
            )

    for use in inventory.unmanaged:
        loc = use.location
        print(f"unmanaged (not rewritten): {use.ref} at {loc.file}:{loc.line} {loc.field}")
    for warning in inventory.warnings:
        print(f"warning: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
