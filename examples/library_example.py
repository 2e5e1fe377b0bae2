"""Use kotsrewrite as a library, step by step, on the acme-platform example.

Run from anywhere::

    python examples/library_example.py [WORK_DIR]

It loads the manifests, finds every image, takes the verdicts from the KOTS Installation's
``knownImages`` instead of probing (so nothing touches the network), builds the plan, renders
the midstream files in memory, and finally does all of it in one call with
:func:`kotsrewrite.rewrite`. It reads the example's manifests where they are (kotsrewrite never
writes into its input) and writes WORK_DIR/midstream (default WORK_DIR: a new temporary
directory), which ``kubectl kustomize WORK_DIR/midstream`` builds: a plain manifest directory
is copied into its ``base/`` with a kustomization of its own.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import kotsrewrite

ACME = Path(__file__).resolve().parent / "acme"


def main(argv: list[str]) -> int:
    """Walk through the API and write a midstream; print what each step found."""
    work = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="acme-"))
    manifests, out = ACME / "manifests", work / "midstream"

    # 1. Load the rendered manifests and find every image, with where it is used.
    base = kotsrewrite.load_manifests(manifests)
    inventory = kotsrewrite.find_images(base)
    print(f"{len(base.documents)} objects, {len(inventory.images)} images:")
    for ref in inventory.images:
        uses = [u for u in inventory.uses if u.ref == ref]
        first = uses[0].location
        print(f"  {ref}  ({len(uses)} use(s), first at {first.file}:{first.line} {first.field})")

    # 2. Verdicts. Here from the KOTS Installation's knownImages; with network access use
    #    kotsrewrite.probe_sync(inventory.images) (or `await kotsrewrite.probe(...)`).
    known = kotsrewrite.load_known_images(ACME / "kots" / "installation.yaml")

    # 3. Decide every image and compute the renames, patches and pull secrets (pure).
    options = kotsrewrite.RewriteOptions(
        app_slug="acme-platform",
        license_id="2kQ9fakeLicenseId",
        additional_namespaces=("acme-jobs",),
    )
    plan = kotsrewrite.build_plan(inventory, known, options)
    for decision in plan.decisions:
        target = f" -> {decision.new_image}" if decision.new_name else ""
        print(f"  {decision.action:<11} {decision.image}{target}")
    for warning in plan.warnings:
        print(f"  warning: {warning}")

    # 4. Render the midstream files in memory (pure: render_plan reads nothing, so the texts
    #    of the manifest files it copies into base/ are read first): {relative path: text}.
    texts = kotsrewrite.read_base_texts(base)
    files = kotsrewrite.render_plan(plan, base, out_dir=out, base_texts=texts)
    print("midstream files:", ", ".join(f for f in files if not f.startswith("base/")))
    print("base snapshot:", ", ".join(f for f in files if f.startswith("base/")))

    # 5. Or all of the above in one call, written atomically to `out`.
    result = kotsrewrite.rewrite(manifests, options, out=out, known_images=known, offline=True)
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
