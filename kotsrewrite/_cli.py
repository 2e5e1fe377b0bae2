"""The ``kotsrewrite`` command line: a thin layer over the library.

Exit codes: 0 ok, 1 policy failure, 2 bad input or usage. Errors print one line with the
file:line or flag and what went wrong, then a ``hint:`` line saying what to do.

Each subcommand owns one ``_add_<name>`` (arguments) and one ``_run_<name>`` (behaviour)
function below; the shared plumbing (parser, error handling) is at the top and bottom.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO, cast

from ._errors import KotsRewriteError
from ._plan import RewriteOptions

_Runner = Callable[[argparse.Namespace, TextIO, TextIO], int]


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with a one-line reason and a hint on usage errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\nhint: run '{self.prog} --help'\n")


# --------------------------------------------------------------------------------------------
# kotsrewrite images


def _add_images(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("images", help="list every image and where it is used")
    p.add_argument("path", help="directory, file, or - for stdin")
    p.add_argument(
        "--format", choices=("table", "json"), default="table", help="output (default: table)"
    )
    p.add_argument(
        "--image-field",
        action="append",
        default=[],
        metavar="KIND:PATH",
        help="also manage this field, e.g. MyApp:spec/image or '*:spec/steps[]/image' (repeatable)",
    )
    p.add_argument(
        "--max-file-bytes", type=_positive_int, default=None, metavar="N", help="largest file read"
    )
    p.add_argument(
        "--max-documents", type=_positive_int, default=None, metavar="N", help="most documents"
    )
    p.set_defaults(run=_run_images)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _load_limits(args: argparse.Namespace) -> Any:
    import attrs

    from ._manifests import Limits

    limits = Limits()
    if args.max_file_bytes is not None:
        limits = attrs.evolve(limits, max_file_bytes=args.max_file_bytes)
    if args.max_documents is not None:
        limits = attrs.evolve(limits, max_documents=args.max_documents)
    return limits


def _images_json(inventory: Any) -> dict[str, Any]:
    groups: dict[str, list[Any]] = {}
    for use in inventory.uses:
        groups.setdefault(use.ref.original, []).append(use)
    images = []
    for image in sorted(groups):
        uses = groups[image]
        images.append(
            {
                "image": image,
                "normalized": uses[0].ref.normalized,
                "locations": [{**u.location.to_json(), "slot": str(u.slot)} for u in uses],
            }
        )
    unmanaged = [
        {"image": u.ref.original, **u.location.to_json()}
        for u in sorted(inventory.unmanaged, key=lambda u: u.ref.original)
    ]
    return {"images": images, "unmanaged": unmanaged, "warnings": list(inventory.warnings)}


_TABLE_WIDTH = 100
_SLOT_MARK = {
    "initContainers": " [init]",
    "ephemeralContainers": " [ephemeral]",
    "volumes": " [volume]",
}


def _squeeze(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    keep = width - 3
    head = (keep + 1) // 2
    return text[:head] + "..." + text[len(text) - (keep - head) :]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    budget = _TABLE_WIDTH - 2 * (len(header) - 1)
    while sum(widths) > budget:
        widest = max(range(len(widths)), key=lambda i: widths[i])
        if widths[widest] <= 8:
            break
        widths[widest] -= 1
    lines = []
    for row in [header, *rows]:
        cells = [_squeeze(cell, widths[i]).ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return lines


def _object_name(loc: Any) -> str:
    name = loc.name or "(unnamed)"
    return f"{loc.kind} {loc.namespace}/{name}" if loc.namespace else f"{loc.kind} {name}"


def _images_table(inventory: Any) -> str:
    """People's form: each image on its own line, then its places as aligned rows."""
    out: list[str] = []
    groups: dict[str, list[Any]] = {}
    for use in inventory.uses:
        groups.setdefault(use.ref.original, []).append(use)
    rows: list[list[str]] = []
    heads: dict[int, str] = {}
    for image in sorted(groups):
        heads[len(rows)] = image
        for use in groups[image]:
            loc = use.location
            if use.slot == "field":
                what = f"{loc.field} [field]"
            else:
                what = (loc.container or "(unnamed)") + _SLOT_MARK.get(str(use.slot), "")
            rows.append(["  " + f"{loc.file}:{loc.line}", _object_name(loc), what])
    if rows:
        lines = _table(("IMAGE / WHERE", "OBJECT", "CONTAINER"), rows)
        out.append(lines[0])
        for i, line in enumerate(lines[1:]):
            if i in heads:
                out.append(heads[i])
            out.append(line)
        out.append("")
    n, places = len(groups), len(inventory.uses)
    out.append(f"{n} image{'s' * (n != 1)} in {places} place{'s' * (places != 1)}.")
    if inventory.unmanaged:
        n = len(inventory.unmanaged)
        out.append("")
        out.append(
            f"{n} unmanaged image field{'s' * (n != 1)} (not rewritten; manage with"
            " --image-field KIND:PATH):"
        )
        rows = []
        for use in sorted(inventory.unmanaged, key=lambda u: u.ref.original):
            loc = use.location
            rows.append([use.ref.original, f"{loc.file}:{loc.line}", _object_name(loc)])
            rows.append(["  " + loc.field, "", ""])
        out += _table(("IMAGE / FIELD", "WHERE", "OBJECT"), rows)
    return "\n".join(out) + "\n"


def _run_images(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ._discovery import find_images, parse_image_field
    from ._manifests import load_manifests

    fields = [parse_image_field(text) for text in args.image_field]
    base = load_manifests(args.path, limits=_load_limits(args))
    inventory = find_images(base, image_fields=fields)
    for warning in inventory.warnings:
        err.write(f"kotsrewrite: warning: {warning}\n")
    if args.format == "json":
        out.write(json.dumps(_images_json(inventory), indent=2) + "\n")
    else:
        out.write(_images_table(inventory))
    return 0


# --------------------------------------------------------------------------------------------
# kotsrewrite probe


def _add_probe(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "probe",
        help="probe images anonymously and print verdicts",
        description="Ask each image's registry, with no credentials, whether the image can be"
        " pulled anonymously; print the verdict (public, private, not_found, rate_limited,"
        " unreachable) with its evidence. Exit 0 even when images are private.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument(
        "--format", choices=("table", "json"), default="table", help="output (default: table)"
    )
    _add_transport_options(p)
    p.add_argument(
        "--on-unknown",
        choices=["private", "public", "fail"],
        default="private",
        help="not_found/rate_limited/unreachable: warn (private, public) or exit 1 (fail)",
    )
    p.set_defaults(run=_run_probe)


def _add_transport_options(p: argparse.ArgumentParser) -> None:
    """How registries are reached; shared by ``probe``, ``rewrite`` and ``post-render``."""
    p.add_argument(
        "--insecure-registry",
        metavar="HOST",
        action="append",
        default=[],
        help="reach HOST[:PORT] over plain HTTP (repeatable)",
    )
    p.add_argument("--ca-file", metavar="FILE", help="extra CA certificates (PEM)")
    p.add_argument(
        "--concurrency", type=_positive_int, metavar="N", help="probes in flight (default 64)"
    )
    p.add_argument(
        "--per-registry",
        type=_positive_int,
        metavar="N",
        help="probes in flight per registry (default 8)",
    )
    p.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="time budget of one probe (default 10)",
    )


def _probe_options(args: argparse.Namespace) -> Any:
    """ProbeOptions from the transport flags; unset flags keep the library's defaults."""
    from ._probe import ProbeOptions

    tuning = {
        name: getattr(args, name)
        for name in ("concurrency", "per_registry", "timeout")
        if getattr(args, name) is not None
    }
    return ProbeOptions(
        insecure_registries=frozenset(args.insecure_registry), ca_file=args.ca_file, **tuning
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _run_probe(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ._errors import InvalidReferenceError
    from ._probe import probe_sync
    from ._progress import ProbeProgress
    from ._reference import ImageRef

    refs = []
    for i, text in enumerate(args.images, 1):
        try:
            refs.append(ImageRef.parse(text))
        except InvalidReferenceError as exc:
            raise InvalidReferenceError(
                exc.message, file=f"IMAGE argument {i}", hint=exc.hint
            ) from None
    options = _probe_options(args)
    with ProbeProgress(refs, err) as progress:
        results = probe_sync(refs, options, on_result=progress)
    if args.format == "json":
        doc = {
            "images": [
                {
                    "image": r.image.original,
                    "verdict": str(r.verdict),
                    "evidence": r.evidence.to_json(),
                }
                for r in results
            ]
        }
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        width = max(len(r.image.original) for r in results)
        out.write(f"{'VERDICT':<13}{'IMAGE':<{width + 2}}REASON\n")
        for r in results:
            out.write(f"{r.verdict!s:<13}{r.image.original:<{width + 2}}{r.evidence.reason}\n")
    unknown = [r for r in results if not r.verdict.is_known]
    for r in unknown:
        how = {"private": "treated as private", "public": "left alone", "fail": "refused"}
        err.write(
            f"kotsrewrite: warning: {r.image.original}: {r.verdict}"
            f" ({how[args.on_unknown]} under --on-unknown {args.on_unknown})\n"
        )
    if unknown and args.on_unknown == "fail":
        err.write(
            f"kotsrewrite: error: {len(unknown)} image(s) neither public nor private\n"
            "hint: fix access to those registries, or choose --on-unknown private|public\n"
        )
        return 1
    return 0


# --------------------------------------------------------------------------------------------
# kotsrewrite rewrite


def _add_plan_options(p: argparse.ArgumentParser, *, namespace_help: str) -> None:
    """The options that decide the plan, shared by ``rewrite`` and ``post-render``."""
    p.add_argument("--app-slug", metavar="SLUG", help="app slug (or from --license)")
    p.add_argument("--license-id", metavar="ID", help="license ID (or from --license)")
    p.add_argument("--license", metavar="FILE", help="KOTS License YAML (licenseID, appSlug)")
    p.add_argument(
        "--application",
        metavar="FILE",
        help="KOTS Application YAML (additionalNamespaces, proxyPublicImages)",
    )
    p.add_argument("--namespace", metavar="NS", default="default", help=namespace_help)
    p.add_argument(
        "--additional-namespace",
        metavar="NS",
        action="append",
        default=[],
        help="also create the pull secret in NS ('*': every namespace seen); repeatable",
    )
    p.add_argument("--proxy-host", metavar="H", default="proxy.replicated.com")
    p.add_argument("--replicated-registry", metavar="H", default="registry.replicated.com")
    p.add_argument(
        "--known-images",
        metavar="FILE",
        help="KOTS Installation YAML or a kotsrewrite report: verdicts used instead of probing",
    )
    p.add_argument(
        "--cache-ttl",
        metavar="SECONDS",
        type=float,
        default=None,
        help="ignore report verdicts probed longer ago than this",
    )
    p.add_argument("--offline", action="store_true", help="never touch the network")
    p.add_argument(
        "--proxy-all", action="store_true", help="proxy every non-Replicated image, no probing"
    )
    p.add_argument(
        "--on-unknown",
        choices=["private", "public", "fail"],
        default="private",
        help="images not proved public or private (default: private, with a warning)",
    )
    p.add_argument(
        "--image-field",
        metavar="KIND:PATH",
        action="append",
        default=[],
        help="manage a custom image field, e.g. MyApp:spec/image; repeatable",
    )
    _add_transport_options(p)
    p.add_argument(
        "--max-file-bytes", type=_positive_int, default=None, metavar="N", help="largest file read"
    )
    p.add_argument(
        "--max-documents", type=_positive_int, default=None, metavar="N", help="most documents"
    )


def _add_rewrite(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "rewrite",
        help="write the midstream kustomization",
        description="Find every image, probe it anonymously, and write a midstream"
        " kustomization that pulls private images through the proxy with the license secret.",
    )
    p.add_argument("path", help="directory, kustomize base, file, or - for stdin")
    _add_plan_options(p, namespace_help="app namespace")
    p.add_argument("--out", metavar="DIR", help="output directory (default: midstream/ beside)")
    p.add_argument("--force", action="store_true", help="replace a directory not written by us")
    p.add_argument("--report", metavar="FILE|-", help="write the JSON report to FILE or stdout")
    p.add_argument(
        "--dry-run", action="store_true", help="print the files and the plan; write nothing"
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="after writing, build the midstream with kustomize and check it (exit 1 if wrong)",
    )
    _add_relocation_options(p)
    p.set_defaults(run=_run_rewrite)


def _add_relocation_options(p: argparse.ArgumentParser) -> None:
    """``rewrite --registry``: relocate every image into the customer's registry."""
    p.add_argument(
        "--registry",
        metavar="HOST[:PORT][/NS]",
        help="relocate every image into this registry and write copy-plan.json beside the"
        " kustomization (see kotsrewrite copy)",
    )
    p.add_argument(
        "--registry-layout",
        choices=("nested", "flat"),
        default="nested",
        help="nested: HOST/NS/<source host>/<path> (default); flat: HOST/NS/<last component>,"
        " a short suffix only where two collide",
    )
    p.add_argument(
        "--registry-auth",
        metavar="FILE",
        help="Docker config.json with auths for the registry: the pull secret's credentials"
        " (default: REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json, ~/.docker/config.json)",
    )
    p.add_argument(
        "--resolve",
        action="store_true",
        help="with --registry: pin each tag's current digest in the copy plan (skopeo)",
    )


def _relocation(args: argparse.Namespace, options: RewriteOptions) -> Any:
    """RelocationOptions from ``--registry`` and friends, or ``None``; and the resolver."""
    from ._errors import InputError

    if args.registry is None:
        for flag in ("registry_auth", "resolve"):
            if getattr(args, flag):
                raise InputError(
                    "needs --registry",
                    file="--" + flag.replace("_", "-"),
                    hint="add --registry HOST[:PORT][/NAMESPACE]",
                )
        return None
    from ._relocate import RelocationOptions, default_auth_file, read_registry_auth

    if args.verify:
        raise InputError(
            "--verify checks proxy midstreams; it cannot check a relocated one yet",
            file="--verify",
            hint="drop --verify; build the midstream with kubectl kustomize DIR",
        )
    if args.resolve and args.offline:
        raise InputError(
            "--resolve looks digests up in registries", file="--resolve", hint="drop --offline"
        )
    target = RelocationOptions(registry=args.registry, layout=args.registry_layout)
    auth = args.registry_auth or default_auth_file()
    if auth is None:
        raise InputError(
            f"no credentials for {target.host}: no Docker config file found",
            file="--registry-auth",
            hint=f"log in with 'skopeo login --authfile FILE {target.host}' and pass"
            " --registry-auth FILE",
        )
    import attrs

    creds = read_registry_auth(auth, target.host)
    return attrs.evolve(target, credentials=creds, resolve=bool(args.resolve))


def _rewrite_options(args: argparse.Namespace) -> tuple[RewriteOptions, bool]:
    """RewriteOptions from the flags and the KOTS files; and whether proxy-all is on."""
    from ._errors import InputError
    from ._kots import read_application, read_license
    from ._model import ImageField, OnUnknown

    slug, license_id = args.app_slug, args.license_id
    if args.license:
        lic = read_license(args.license)
        slug = slug or lic.app_slug
        license_id = license_id or lic.license_id
    additional = list(args.additional_namespace)
    proxy_all = bool(args.proxy_all)
    if args.application:
        app = read_application(args.application)
        additional += [ns for ns in app.additional_namespaces if ns not in additional]
        proxy_all = proxy_all or app.proxy_public_images
    if not slug:
        raise InputError(
            "no app slug", file="--app-slug", hint="pass --app-slug SLUG or --license FILE"
        )
    if not license_id:
        raise InputError(
            "no license ID", file="--license-id", hint="pass --license-id ID or --license FILE"
        )
    fields = []
    for spec in args.image_field:
        kind, sep, path = spec.partition(":")
        if not sep or not kind or not path or path.startswith("/"):
            raise InputError(
                f"invalid image field {spec!r}",
                file="--image-field",
                hint="use KIND:PATH with a slash-separated path, e.g. MyApp:spec/image",
            )
        fields.append(ImageField(kind=kind, path=path))
    options = RewriteOptions(
        app_slug=slug,
        license_id=license_id,
        namespace=args.namespace,
        additional_namespaces=tuple(additional),
        proxy_host=args.proxy_host,
        replicated_registry=args.replicated_registry,
        proxy_all=proxy_all,
        on_unknown=OnUnknown(args.on_unknown),
        image_fields=tuple(fields),
    )
    return options, proxy_all


def _progress_prober(options: Any, err: TextIO) -> Callable[[Sequence[Any]], Sequence[Any]]:
    """``probe_sync`` with ``options`` and a progress display on ``err`` (when a terminal)."""
    from ._probe import probe_sync
    from ._progress import ProbeProgress

    def run(refs: Sequence[Any]) -> Sequence[Any]:
        with ProbeProgress(refs, err) as progress:
            return probe_sync(refs, options, on_result=progress)

    return run


def _write_report(path: str, text: str) -> None:
    """Write the JSON report to ``path``; an OS error is an OutputError naming the file."""
    from pathlib import Path

    from ._errors import OutputError

    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the report: {exc.strerror}") from None


def _run_rewrite(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:

    from ._report import dump_report, load_known_images
    from ._rewrite import rewrite

    options, _ = _rewrite_options(args)
    known = []
    if args.known_images:
        known = load_known_images(args.known_images, ttl=args.cache_ttl)
    probe_options = _probe_options(args)
    relocation = _relocation(args, options)
    resolver = None
    if relocation is not None and relocation.resolve:
        from ._copy import CopyOptions, resolve_digests

        copy_options = CopyOptions(
            license_id=options.license_id, insecure_registries=tuple(args.insecure_registry)
        )
        resolver = lambda plan: resolve_digests(plan, copy_options)  # noqa: E731
    result = rewrite(
        args.path,
        options,
        relocation=relocation,
        resolver=resolver,
        out=args.out,
        force=args.force,
        dry_run=args.dry_run,
        known_images=known,
        offline=args.offline,
        probe_options=probe_options,
        prober=_progress_prober(probe_options, err),
        limits=_load_limits(args),
        stdin=sys.stdin,
    )
    for warning in result.warnings:
        err.write(f"kotsrewrite: warning: {warning}\n")
    if args.dry_run:
        out.write(f"# would write {result.output}\n")
        for name in result.files:
            out.write(f"{name}\n")
        for d in result.plan.decisions:
            verdict = "-" if d.verdict is None else str(d.verdict)
            target = f" -> {d.new_image}" if d.new_name else ""
            out.write(f"{d.action:<11} {verdict:<12} {d.image.original}{target}\n")
        for patch in result.plan.patches:
            t = patch.target
            ns = f" -n {t.namespace}" if t.namespace else ""
            out.write(
                f"patch       {t.kind}/{t.name}{ns}: imagePullSecrets += {options.secret_name}\n"
            )
    if args.report:
        text = dump_report(result.report)
        if args.report == "-":
            out.write(text)
        else:
            _write_report(args.report, text)
    summary = result.summary()
    if result.copy_plan is not None:
        summary += (
            f"; {len(result.copy_plan.images)} images relocated to {result.copy_plan.registry}"
            f" (copy plan: {result.output / 'copy-plan.json'})"
        )
    err.write(f"kotsrewrite: {summary}\n")
    if getattr(args, "verify", False) and result.written:
        from ._verify import verify_midstream

        return _print_verify(verify_midstream(result.output, result.plan), out, err)
    return 0


# --------------------------------------------------------------------------------------------
# kotsrewrite post-render (a Helm post-renderer)


def _add_post_render(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "post-render",
        help="Helm post-renderer: manifests on stdin, rewritten manifests on stdout",
        description="Read rendered manifests on stdin and write on stdout what kubectl"
        " kustomize would build from the midstream kustomization for them: private images"
        " renamed to the proxy, the pull secret added to their workloads and appended."
        " Use it as: helm install REL CHART --post-renderer kotsrewrite"
        " --post-renderer-args post-render --post-renderer-args --license=FILE ..."
        " (Helm 4: after helm plugin install ./helm-plugin from the kotsrewrite repository)."
        " Messages Helm would drop also go to Helm's stderr.",
    )
    _add_plan_options(
        p, namespace_help="the release namespace (its pull secret has no metadata.namespace)"
    )
    p.add_argument(
        "--report", metavar="FILE", help="write the JSON report to FILE (stdout is the output)"
    )
    p.set_defaults(run=_run_post_render)


def _run_post_render(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:

    from ._errors import InputError
    from ._postrender import helm_post_render
    from ._report import dump_report, load_known_images
    from ._rewrite import rewrite

    if args.report == "-":
        raise InputError(
            "the report cannot go to stdout: stdout carries the manifests",
            file="--report",
            hint="give a file name, e.g. --report kotsrewrite-report.json",
        )
    options, _ = _rewrite_options(args)
    known = load_known_images(args.known_images, ttl=args.cache_ttl) if args.known_images else []
    probe_options = _probe_options(args)
    result = rewrite(
        "-",
        options,
        dry_run=True,
        known_images=known,
        offline=args.offline,
        probe_options=probe_options,
        limits=_load_limits(args),
        stdin=sys.stdin,
    )
    text = helm_post_render(result.base, result.plan)
    for warning in result.warnings:
        err.write(f"kotsrewrite: warning: {warning}\n")
    if args.report:
        report = {**result.report, "output": None, "files": []}
        _write_report(args.report, dump_report(report))
    out.write(text)
    return 0


# --------------------------------------------------------------------------------------------
# kotsrewrite verify


def _add_verify(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "verify",
        help="build a midstream with kustomize and check it",
        description="Build DIR with kubectl kustomize (or kustomize build) and its base the"
        " same way, then check: every image is what the kustomization's images entries make"
        " of the base's, tag and digest intact (others untouched); every PodSpec pulling from"
        " a host of the pull secret lists the secret exactly once; a pull secret in every"
        " namespace that needs one; each secret a dockerconfigjson with correct auths; the"
        " kots.io/app-slug annotation on every object. Prints one line per problem."
        " Exit 0 ok, 1 problems found, 2 usage.",
    )
    p.add_argument("directory", metavar="DIR", help="the midstream directory (rewrite --out)")
    p.add_argument(
        "--namespace",
        metavar="NS",
        default=None,
        help="the app namespace (default: the one namespace without its own secret)",
    )
    p.set_defaults(run=_run_verify)


def _print_verify(result: Any, out: TextIO, err: TextIO) -> int:
    for problem in result.problems:
        out.write(f"{problem}\n")
    err.write(f"kotsrewrite: verify: {result.summary()}\n")
    return 0 if result.ok else 1


def _run_verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ._verify import verify_midstream

    return _print_verify(verify_midstream(args.directory, namespace=args.namespace), out, err)


# --------------------------------------------------------------------------------------------
# kotsrewrite copy


def _add_copy(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "copy",
        help="copy the images of a copy plan (rewrite --registry) with skopeo",
        description="Copy every image of PLAN (copy-plan.json, or the midstream directory"
        " holding it) to its destination with skopeo copy --all --preserve-digests: registry"
        " to registry, to an OCI directory (--to-dir, for a disconnected transfer) or from"
        " one (--from-dir). Images already at their destination with the planned digest are"
        " skipped; every copy is checked by digest. Exit 0 ok, 1 an image failed, 2 usage.",
    )
    p.add_argument("plan", metavar="PLAN", help="copy-plan.json or the midstream directory")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--to-dir", metavar="DIR", help="export to OCI layouts under DIR")
    where.add_argument("--from-dir", metavar="DIR", help="import from a --to-dir export")
    p.add_argument(
        "--authfile",
        metavar="FILE",
        help="Docker config with registry credentials (default: REGISTRY_AUTH_FILE,"
        " $DOCKER_CONFIG/config.json, skopeo's defaults)",
    )
    p.add_argument("--license-id", metavar="ID", help="license ID, for the proxy")
    p.add_argument("--license", metavar="FILE", help="KOTS License YAML (licenseID)")
    p.add_argument(
        "--insecure-registry",
        metavar="HOST",
        action="append",
        default=[],
        help="reach HOST[:PORT] over plain HTTP or unverified TLS (repeatable)",
    )
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        metavar="N",
        help="copies at once (default 4)",
    )
    p.add_argument("--skopeo", metavar="PATH", help="the skopeo executable")
    p.add_argument(
        "--format", choices=("table", "json"), default="table", help="output (default: table)"
    )
    p.set_defaults(run=_run_copy)


def _run_copy(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from pathlib import Path

    from ._copy import CopyOptions, copy_images
    from ._errors import InputError
    from ._kots import read_license
    from ._relocate import CopyPlan

    plan = CopyPlan.load(args.plan)
    license_id = args.license_id
    if args.license and not license_id:
        license_id = read_license(args.license).license_id
        args.license_id = license_id  # so that an internal error scrubs it
    if license_id is None and args.from_dir is None:
        need = [e for e in plan.images if e.pull_auth == "license"]
        if need:
            raise InputError(
                f"{len(need)} images pull from the proxy or the Replicated registry with the"
                f" license (e.g. {need[0].pull_from})",
                file="--license-id",
                hint="pass --license FILE or --license-id ID",
            )
    options = CopyOptions(
        authfile=Path(args.authfile) if args.authfile else None,
        license_id=license_id,
        insecure_registries=tuple(args.insecure_registry),
        concurrency=args.concurrency,
        skopeo=args.skopeo,
    )

    def show(item: Any) -> None:
        if args.format == "table":
            digest = item.digest or "-"
            out.write(f"{item.status:<8} {digest:<71} {item.entry.destination}\n")
            if item.error:
                out.write(f"         {item.error}\n")
            out.flush()

    result = copy_images(plan, options, to_dir=args.to_dir, from_dir=args.from_dir, on_result=show)
    if args.format == "json":
        doc = {"images": [i.to_json() for i in result.images], "ok": result.ok}
        out.write(json.dumps(doc, indent=2) + "\n")
    err.write(f"kotsrewrite: copy: {result.summary()}\n")
    return 0 if result.ok else 1


# --------------------------------------------------------------------------------------------
# plumbing


def _add_output_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """``--quiet``/``--verbose``, accepted before the subcommand and after it."""
    default: Any = argparse.SUPPRESS if suppress else False
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default,
        help="print nothing on stderr but errors",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="log each registry request (method, URL, status, time) on stderr; show"
        " tracebacks of internal errors",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``kotsrewrite`` command (used to check the README)."""
    parser = _Parser(
        prog="kotsrewrite",
        description="Find images in rendered manifests, probe them anonymously, and write a"
        " midstream kustomization that pulls private images through the proxy.",
        epilog="Exit status: 0 ok, 1 policy failure (--on-unknown fail, verify found problems)"
        " or internal error, 2 bad input or usage. Run 'kotsrewrite COMMAND --help' for a"
        " command's options.",
    )
    _add_output_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_images(sub)
    _add_probe(sub)
    _add_rewrite(sub)
    _add_post_render(sub)
    _add_verify(sub)
    _add_copy(sub)
    for subparser in sub.choices.values():
        _add_output_options(subparser, suppress=True)
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[command]
            return found
    return parser


def _report_error(exc: KotsRewriteError, err: TextIO) -> None:
    """``kotsrewrite: error: WHERE: message`` and, when the error has one, ``hint: ...``."""
    err.write(f"kotsrewrite: error: {exc}\n")
    if exc.hint:
        err.write(f"hint: {exc.hint}\n")


class _QuietStream(io.TextIOBase):
    """stderr under ``--quiet``: passes ``kotsrewrite: error:`` lines and their hints only."""

    def __init__(self, target: TextIO) -> None:
        self._target = target
        self._pending = ""
        self._passing = False

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if line.startswith("kotsrewrite: error:"):
                self._passing = True
            elif not line.startswith("hint:"):
                self._passing = False
            if self._passing:
                self._target.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self._target.flush()


def _scrub(text: str, args: argparse.Namespace) -> str:
    secret = getattr(args, "license_id", None)
    return text.replace(secret, "<license ID>") if secret else text


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run the command line; returns the exit code (never calls ``sys.exit`` itself).

    Exit codes: 0 ok; 1 policy failure (``--on-unknown fail``, ``verify`` found problems) or an
    internal error (a bug: one line asking for a report, the traceback with ``--verbose``);
    2 bad input or usage (one ``kotsrewrite: error:`` line naming the file:line or flag, then
    a ``hint:`` line); 130 interrupted.

    ``post-render`` run by Helm (on the process's own stderr) also copies its messages to
    Helm's stderr when Helm would swallow them (see ``kotsrewrite._helmio``).
    """
    if stderr is None:
        from ._helmio import helm_stderr

        helm = helm_stderr(list(sys.argv[1:] if argv is None else argv), sys.stderr)
        if helm is not None:
            code = _main(argv, stdout, cast(TextIO, helm))
            helm.finish(code)
            return code
    return _main(argv, stdout, stderr)


def _main(argv: Sequence[str] | None, stdout: TextIO | None, stderr: TextIO | None) -> int:
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    parser = build_parser()
    try:
        # argparse prints --help and usage errors on sys.stdout/sys.stderr: send them to ours.
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args, extra = parser.parse_known_args(argv)
            if extra:  # reported by the subcommand's parser, so the hint names its --help
                _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse: --help (0) or usage error (2)
        return int(exc.code or 0)
    if args.quiet and args.verbose:
        err.write(
            "kotsrewrite: error: --quiet and --verbose together\n"
            "hint: choose one of --quiet and --verbose\n"
        )
        return 2
    if args.quiet:
        err = _QuietStream(err)
    run: _Runner = args.run
    from ._progress import verbose_logging

    try:
        with verbose_logging(err, enabled=args.verbose):
            return run(args, out, err)
    except KotsRewriteError as exc:
        _report_error(exc, err)
        return exc.exit_code
    except KeyboardInterrupt:
        err.write("kotsrewrite: interrupted\n")
        return 130
    except Exception as exc:  # a bug: say so in one line, the traceback only with --verbose
        if args.verbose:
            import traceback

            err.write(_scrub(traceback.format_exc(), args))
        what = _scrub(f"{type(exc).__name__}: {exc}", args)
        err.write(f"kotsrewrite: error: internal error: {what}\n")
        hint = "this is a bug in kotsrewrite; please report it with the command line"
        if not args.verbose:
            hint += " and the traceback printed by --verbose"
        err.write(f"hint: {hint}\n")
        return 1
    finally:
        err.flush()
