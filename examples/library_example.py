"""Use kotsrewrite as a library, step by step, on the acme-platform example.

Run from anywhere::

    python examples/library_example.py [WORK_DIR]

It loads the manifests, finds every image, takes the verdicts from the KOTS Installation's
``knownImages`` instead of probing (so nothing touches the network), builds the plan, renders
the midstream files in memory, and finally does all of it in one call with
:func:`kotsrewrite.rewrite`. It works on a copy of the manifests in WORK_DIR (default: a new
temporary directory; kotsrewrite adds a kustomization file to a plain manifest directory, and
the example leaves this repository as it found it) and writes WORK_DIR/midstream, which
``kubectl kustomize WORK_DIR/midstream`` builds.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import kotsrewrite

ACME = Path(__file__).resolve().parent / "acme"


def main(argv: list[str]) -> int:
    """Walk through the API and write a midstream; print what each step found."""
    work = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="acme-"))
    manifests, out = work / "manifests", work / "midstream"
    shutil.copytree(ACME / "manifests", manifests, dirs_exist_ok=True)

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

    # 4. Render the midstream files in memory (pure): {relative path: text}.
    files = kotsrewrite.render_plan(plan, base, out_dir=out)
    print("midstream files:", ", ".join(files))

    # 5. Or all of the above in one call, written atomically to `out`.
    result = kotsrewrite.rewrite(manifests, options, out=out, known_images=known, offline=True)
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
