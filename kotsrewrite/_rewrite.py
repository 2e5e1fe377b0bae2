"""One call doing the whole job: load, find images, probe, plan, render, write, report."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs

from ._discovery import find_images
from ._manifests import Limits, load_manifests
from ._model import Base, Inventory, ProbeResult
from ._plan import Plan, RewriteOptions, build_plan, is_replicated
from ._probe import ProbeOptions, probe_sync
from ._reference import ImageRef
from ._relocate import COPY_PLAN_FILE, CopyPlan, RelocationOptions
from ._render import (
    KUSTOMIZATION_FILE,
    is_secret_file,
    read_base_texts,
    render_base_kustomization,
    render_plan,
)
from ._report import build_report
from ._write import MARKER_FILE, staged_file, write_output

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
    base_kustomization: Path | None = None
    """The kustomization added to a plain base directory (written, or with ``dry_run`` to be
    written); ``None`` for any other input."""
    base_kustomization_text: str | None = attrs.field(default=None, repr=False)
    """Its text."""
    copy_plan: CopyPlan | None = None
    """With ``relocation``: the copy plan written beside the midstream (``copy-plan.json``)."""

    @property
    def base_kustomization_display(self) -> str | None:
        """The base kustomization as the user named the base (``manifests/kustomization.yaml``)."""
        if self.base_kustomization is None:
            return None
        return (Path(self.base.source) / KUSTOMIZATION_FILE).as_posix()

    @property
    def warnings(self) -> tuple[str, ...]:
        """Warnings of the plan."""
        return self.plan.warnings

    def summary(self) -> str:
        """One line: ``N images: P private, Q public, U unknown, R replicated; written to D``."""
        c = self.plan.counts()
        where = f"written to {self.output}" if self.written else f"would write {self.output}"
        base = ""
        if self.base.mode in ("file", "stdin"):
            base = f" (base copied with its own kustomization into {self.output / 'base'})"
        elif self.base_kustomization is not None:
            verb = "wrote" if self.written else "would write"
            base = f"; {verb} base kustomization: {self.base_kustomization_display}"
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
    :class:`~kotsrewrite.OutputError`.

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

    mark = time.perf_counter()
    known = list(known_images)
    cached = {r.image.original for r in known} | {r.image.normalized for r in known}
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

    output = Path(out).absolute() if out is not None else default_output_dir(base)
    mark = time.perf_counter()
    files = render_plan(plan, base, out_dir=output, base_texts=read_base_texts(base))
    if copy_plan is not None:
        files = dict(sorted({**files, COPY_PLAN_FILE: copy_plan.dumps()}.items()))
    timings["render"] = time.perf_counter() - mark

    base_text = render_base_kustomization(base)
    base_kustomization = None
    if base_text is not None:
        assert base.root is not None
        base_kustomization = Path(base.root).absolute() / KUSTOMIZATION_FILE

    mark = time.perf_counter()
    if not dry_run:
        # The base kustomization is staged first (an unwritable base fails before anything is
        # written) and put in place only once the midstream is.
        guard: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if base_kustomization is not None and base_text is not None:
            guard = staged_file(
                base_kustomization,
                base_text,
                hint="kustomize needs a kustomization file in the base directory: make the"
                " directory writable, add a kustomization.yaml listing its manifests yourself,"
                " or give the manifests as a single file (kotsrewrite rewrite FILE --out DIR)",
            )
        with guard:
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
    report["baseKustomization"] = (
        None if base_kustomization is None else (Path(base.source) / KUSTOMIZATION_FILE).as_posix()
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
        base_kustomization=base_kustomization,
        base_kustomization_text=base_text,
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
