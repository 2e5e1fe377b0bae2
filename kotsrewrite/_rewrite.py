"""One call doing the whole job: load, find images, probe, plan, render, write, report."""

from __future__ import annotations

import datetime as dt
import gc
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs

from ._discovery import find_images
from ._errors import OutputError
from ._manifests import Limits, load_manifests
from ._model import EXPIRED, Base, Inventory, ProbeResult
from ._plan import Plan, RewriteOptions, build_plan, is_replicated
from ._probe import ProbeOptions, probe_sync
from ._reference import ImageRef
from ._relocate import COPY_PLAN_FILE, CopyPlan, RelocationOptions
from ._render import BASE_DIR, is_secret_file, read_base_texts, render_plan
from ._report import build_report
from ._write import MARKER_FILE, check_inputs_outside, write_output

__all__ = ["Prober", "RewriteResult", "default_output_dir", "rewrite"]

#: Anything that turns references into verdicts (``probe_sync`` with options by default).
Prober = Callable[[Sequence[ImageRef]], Sequence[ProbeResult]]


@attrs.frozen
class RewriteResult:
    """What :func:`rewrite` did."""

    base: Base = attrs.field(repr=False)
    inventory: Inventory = attrs.field(repr=False)
    plan: Plan
    files: Mapping[str, str] = attrs.field(repr=False)
    """The rendered files, ``{path relative to output: text}`` (pull secrets included)."""
    output: Path
    """Where the midstream was (or, with ``dry_run``, would be) written."""
    written: bool
    report: dict[str, Any] = attrs.field(repr=False)
    """The JSON report (see :func:`~kotsrewrite.build_report`)."""
    probed: tuple[ImageRef, ...] = ()
    """References actually sent to the prober."""
    copy_plan: CopyPlan | None = None
    """With ``relocation``: the copy plan written beside the midstream (``copy-plan.json``)."""

    @property
    def warnings(self) -> tuple[str, ...]:
        """Warnings of the plan."""
        return self.plan.warnings

    def summary(self) -> str:
        """One line: ``N images: P private, Q public, U unknown, R replicated; written to D``."""
        c = self.plan.counts()
        where = f"written to {self.output}" if self.written else f"would write {self.output}"
        base = ""
        if self.base.mode != "kustomize":
            base = f" (base copied with its own kustomization into {self.output / BASE_DIR})"
        return (
            f"{c['images']} images: {c['private']} private, {c['public']} public,"
            f" {c['unknown']} unknown, {c['replicated']} on Replicated hosts;"
            f" {len(self.plan.patches)} patches, {len(self.plan.secrets)} pull secrets;"
            f" {where}{base}"
        )


def default_output_dir(base: Base) -> Path:
    """``midstream/`` beside the base directory or file; ``./midstream`` for stdin."""
    if base.mode == "stdin" or base.root is None:
        return Path("midstream").absolute()
    root = Path(base.root).absolute()
    if base.mode == "file":
        return root / "midstream"
    return root.parent / "midstream"


def _refuse_output_inside_base(output: Path, base: Base, shown: str) -> None:
    """The midstream may not go inside a base directory: that writes into the user's input,
    and the next run would read the midstream as manifests."""
    if base.mode not in ("directory", "kustomize") or base.root is None:
        return
    root = Path(base.root).resolve()
    if root in output.resolve().parents:
        raise OutputError(
            f"{shown}: inside the base directory {base.source}: the midstream would be"
            " written into the input, and read as manifests by the next run",
            hint="choose an output directory outside the base (the default is midstream/"
            " beside it)",
        )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def rewrite(
    source: str | os.PathLike[str],
    options: RewriteOptions,
    *,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    dry_run: bool = False,
    known_images: Iterable[ProbeResult] = (),
    offline: bool = False,
    prober: Prober | None = None,
    probe_options: ProbeOptions | None = None,
    limits: Limits | None = None,
    stdin: TextIO | None = None,
    inputs: Iterable[str | os.PathLike[str]] = (),
    relocation: RelocationOptions | None = None,
    resolver: Callable[[CopyPlan], Mapping[str, str]] | None = None,
) -> RewriteResult:
    """Read ``source`` (directory, kustomize base, file or ``-``), decide every image and
    write the midstream to ``out`` (default: :func:`default_output_dir`).

    Images in ``known_images`` are not probed; neither are images on the Replicated hosts,
    nor anything with ``options.proxy_all`` or ``offline``. The rest go to ``prober``
    (default :func:`~kotsrewrite.probe_sync` with ``probe_options``). With ``dry_run``
    nothing is written. Raises :class:`~kotsrewrite.InputError` (bad input, nothing
    written), :class:`~kotsrewrite.PolicyError` (``--on-unknown fail``) or
    :class:`~kotsrewrite.OutputError`, also when ``out`` holds the base or one of ``inputs``
    (the run's other input files: License, Application, known images), checked before
    probing: replacing ``out`` would delete them.

    With ``relocation`` every image is renamed into that registry instead (see
    :func:`~kotsrewrite.relocate_plan`) and ``copy-plan.json`` is written beside the
    kustomization; with ``relocation.resolve`` the tags' digests are looked up with
    ``resolver`` (default: :func:`~kotsrewrite.resolve_digests` with the license).
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    base = load_manifests(source, limits=limits, stdin=stdin)
    timings["load"] = time.perf_counter() - start

    mark = time.perf_counter()
    inventory = find_images(base, image_fields=options.image_fields)
    timings["discover"] = time.perf_counter() - mark
    # The base's node trees live to the end and hold no garbage: keep the collector from
    # rescanning them over and over while the plan is built and rendered.
    gc.freeze()
    try:
        return _rewrite_loaded(
            source,
            base,
            inventory,
            options,
            timings=timings,
            start=start,
            out=out,
            force=force,
            dry_run=dry_run,
            known_images=known_images,
            offline=offline,
            prober=prober,
            probe_options=probe_options,
            inputs=inputs,
            relocation=relocation,
            resolver=resolver,
        )
    finally:
        gc.unfreeze()


def _rewrite_loaded(
    source: str | os.PathLike[str],
    base: Base,
    inventory: Inventory,
    options: RewriteOptions,
    *,
    timings: dict[str, float],
    start: float,
    out: str | os.PathLike[str] | None,
    force: bool,
    dry_run: bool,
    known_images: Iterable[ProbeResult],
    offline: bool,
    prober: Prober | None,
    probe_options: ProbeOptions | None,
    inputs: Iterable[str | os.PathLike[str]],
    relocation: RelocationOptions | None,
    resolver: Callable[[CopyPlan], Mapping[str, str]] | None,
) -> RewriteResult:
    output = Path(out).absolute() if out is not None else default_output_dir(base)
    _refuse_output_inside_base(output, base, str(out) if out is not None else str(output))
    if not dry_run:
        check_inputs_outside(output, [*inputs, *([base.source] if base.mode != "stdin" else [])])

    mark = time.perf_counter()
    known = list(known_images)
    fresh = [r for r in known if r.evidence.source != EXPIRED]  # expired: probe again
    cached = {r.image.original for r in fresh} | {r.image.normalized for r in fresh}
    to_probe: list[ImageRef] = []
    if not offline and not options.proxy_all:
        to_probe = [
            ref
            for ref in inventory.images
            if not is_replicated(ref, options)
            and ref.original not in cached
            and ref.normalized not in cached
        ]
    probed: list[ProbeResult] = []
    if to_probe:
        run = prober or (lambda refs: probe_sync(refs, probe_options))
        stamp = _now()
        for result in run(to_probe):
            if result.evidence.probed_at is None:
                result = attrs.evolve(
                    result, evidence=attrs.evolve(result.evidence, probed_at=stamp)
                )
            probed.append(result)
    timings["probe"] = time.perf_counter() - mark

    mark = time.perf_counter()
    # Fresh probes win over the cache (they are listed first).
    plan = build_plan(inventory, [*probed, *known], options)
    copy_plan = None
    if relocation is not None:
        plan, copy_plan = _relocate(plan, inventory, relocation, options, resolver)
    timings["plan"] = time.perf_counter() - mark

    mark = time.perf_counter()
    # render_plan is pure: the file texts and the resolved paths come from here.
    texts = read_base_texts(base)
    resolved = attrs.evolve(base, root=base.root.resolve()) if base.root is not None else base
    files = render_plan(plan, resolved, out_dir=output.resolve(), base_texts=texts)
    if copy_plan is not None:
        files = dict(sorted({**files, COPY_PLAN_FILE: copy_plan.dumps()}.items()))
    timings["render"] = time.perf_counter() - mark

    mark = time.perf_counter()
    if not dry_run:
        write_output(files, output, force=force, private=is_secret_file, protected=base.root)
    timings["write"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - start

    report = build_report(
        plan,
        output=str(output),
        files=sorted([*files, MARKER_FILE]),
        timings=timings,
        source=str(source),
        dry_run=dry_run,
    )
    return RewriteResult(
        base=base,
        inventory=inventory,
        plan=plan,
        files=files,
        output=output,
        written=not dry_run,
        report=report,
        probed=tuple(to_probe),
        copy_plan=copy_plan,
    )


def _relocate(
    plan: Plan,
    inventory: Inventory,
    relocation: RelocationOptions,
    options: RewriteOptions,
    resolver: Callable[[CopyPlan], Mapping[str, str]] | None,
) -> tuple[Plan, CopyPlan]:
    """The relocated plan and its copy plan (digests resolved when asked)."""
    from ._copy import CopyOptions, resolve_digests
    from ._relocate import build_copy_plan, relocate_plan

    relocated = relocate_plan(plan, inventory, relocation)
    copy_plan = build_copy_plan(relocated)
    if relocation.resolve:
        run = resolver or (lambda p: resolve_digests(p, CopyOptions(license_id=options.license_id)))
        copy_plan = build_copy_plan(relocated, run(copy_plan))
    return relocated, copy_plan
