"""The ``kotsrewrite`` command line: a thin layer over the library.

Exit codes: 0 ok, 1 policy failure, 2 bad input or usage. Errors print one line with the
file:line or flag and what went wrong, then a ``hint:`` line saying what to do.

Each subcommand owns one ``_add_<name>`` (arguments) and one ``_run_<name>`` (behaviour)
function below; the shared plumbing (parser, error handling) is at the top and bottom.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import select
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TextIO, cast

from ._errors import KotsRewriteError
from ._plan import RewriteOptions

_Runner = Callable[[argparse.Namespace, TextIO, TextIO], int]


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with a one-line reason and a hint on usage errors."""

    #: The subcommands' parsers by name (set on each of them by :func:`build_parser`).
    siblings: dict[str, argparse.ArgumentParser] | None = None

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = f"run '{self.prog} --help'"
        misplaced = self._misplaced(message)
        guess = self._guess(message)
        if misplaced:
            hint = f"{misplaced} ({hint})"
        elif guess:
            hint = f"did you mean {guess}? ({hint})"
        self.exit(2, f"{self.prog}: error: {message}\nhint: {hint}\n")

    def _misplaced(self, message: str) -> str | None:
        """For an unrecognized option: given before the command, or another command's."""
        if not message.startswith("unrecognized arguments:"):
            return None
        for token in message.partition(":")[2].split():
            name = token.partition("=")[0]
            if not name.startswith("-"):
                continue
            if name in self._option_string_actions:
                return f"{name} goes after the command: {self.prog} ... {name}"
            owners = [
                command
                for command, parser in (self.siblings or {}).items()
                if name in parser._option_string_actions
            ]
            if owners:
                which = " and ".join([", ".join(owners[:-1]), owners[-1]] if owners[1:] else owners)
                return f"{name} is an option of {which}, not of this command"
        return None

    def _guess(self, message: str) -> str | None:
        """The option or choice closest to a mistyped one in ``message``, if any is close."""
        import difflib
        import re

        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options: list[str] = re.findall(r"'([^']*)'", choice.group(2))
            found = difflib.get_close_matches(choice.group(1), options, n=1, cutoff=0.6)
            return found[0] if found else None
        if message.startswith("unrecognized arguments:"):
            known = [o for o in self._option_string_actions if o.startswith("--")]
            for token in message.partition(":")[2].split():
                if token.startswith("--"):
                    name = token.partition("=")[0]
                    found = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
                    if found:
                        return found[0]
        return None


# --------------------------------------------------------------------------------------------
# kotsrewrite images


def _add_images(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "images",
        help="list every image and where it is used",
        description="List every image in rendered manifests and where it is used (file:line,"
        " object, container), then the image fields kotsrewrite finds but does not rewrite"
        " (with the --image-field that would manage each). Probes nothing, writes nothing.",
    )
    p.add_argument("path", help="directory, kustomize base, file, or - for stdin")
    p.add_argument(
        "--format", choices=("table", "json"), default="table", help="output (default: table)"
    )
    p.add_argument(
        "--image-field",
        action="append",
        default=[],
        metavar="KIND:PATH",
        help=_IMAGE_FIELD_HELP,
    )
    _add_limit_options(p)
    p.set_defaults(run=_run_images)


_IMAGE_FIELD_HELP = (
    "also manage this image field, e.g. MyApp:spec/image, '*:spec/steps[]/image', or as"
    " warnings print it, ConfigMap:data.image (repeatable; default: none)"
)


def _add_limit_options(p: argparse.ArgumentParser) -> None:
    """``--max-file-bytes``/``--max-documents`` (their defaults are :class:`Limits`')."""
    p.add_argument(
        "--max-file-bytes",
        type=_positive_int,
        default=None,
        metavar="N",
        help="refuse a file (or stdin) larger than N bytes (default: 67108864, 64 MiB)",
    )
    p.add_argument(
        "--max-documents",
        type=_positive_int,
        default=None,
        metavar="N",
        help="refuse a base of more than N YAML documents (default: 100000)",
    )


def _stdin_not_a_terminal(path: str, example: str) -> None:
    """Refuse to wait for manifests typed at a terminal: say how to pipe them in."""
    if path == "-" and sys.stdin is not None and sys.stdin.isatty():
        from ._errors import InputError

        raise InputError(
            "reads manifests from stdin, but stdin is a terminal",
            file="<stdin>",
            hint=f"pipe rendered manifests in, e.g. {example}",
        )


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


def _json_scalar(value: Any) -> str:
    """``value`` as ``json.dumps`` writes it, fast for the types a location holds."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is str:
        return _encode_str(value)
    if kind is int:
        return int.__repr__(value)
    return json.dumps(value)


def _json_item(item: Any, pad: str) -> str:
    """``json.dumps(item, indent=2)`` with every line after the first indented by ``pad``; a
    mapping of scalars (a location) is written without json's slow indenting encoder."""
    if type(item) is dict and item and all(type(v) in _FLAT for v in item.values()):
        inner = ",\n".join(f"{pad}  {_encode_str(k)}: {_json_scalar(v)}" for k, v in item.items())
        return f"{{\n{inner}\n{pad}}}"
    return json.dumps(item, indent=2).replace("\n", "\n" + pad)


def _json_list(items: Iterable[Any], pad: str) -> Iterator[str]:
    """The text of a list at indent ``pad`` (after its key), item by item."""
    empty = True
    for item in items:
        yield f"{'[' if empty else ','}\n{pad}  {_json_item(item, pad + '  ')}"
        empty = False
    yield "[]" if empty else f"\n{pad}]"


def _images_json(inventory: Any) -> Iterator[str]:
    """The ``--format json`` document in pieces: the text ``json.dumps(..., indent=2)`` gives
    for ``{"images": [...], "unmanaged": [...], "warnings": [...]}``, one location at a time,
    so that neither the whole document nor its text is ever held."""
    groups: dict[str, list[Any]] = {}
    for use in inventory.uses:
        groups.setdefault(use.ref.original, []).append(use)
    yield '{\n  "images": '
    if not groups:
        yield "[]"
    for n, image in enumerate(sorted(groups)):
        uses = groups[image]
        yield (
            f'{"," if n else "["}\n    {{\n      "image": {_encode_str(image)},'
            f'\n      "normalized": {_encode_str(uses[0].ref.normalized)},'
            '\n      "locations": '
        )
        yield from _json_list(
            ({**u.location.to_json(), "slot": str(u.slot)} for u in uses), "      "
        )
        yield "\n    }"
    if groups:
        yield "\n  ]"
    yield ',\n  "unmanaged": '
    yield from _json_list(
        (
            {"image": u.ref.original, **u.location.to_json()}
            for u in sorted(inventory.unmanaged, key=lambda u: u.ref.original)
        ),
        "  ",
    )
    yield ',\n  "warnings": '
    yield from _json_list(inventory.warnings, "  ")
    yield "\n}\n"


_encode_str: Callable[[str], str] = json.encoder.encode_basestring_ascii
_FLAT = frozenset((str, int, type(None)))


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
            rows.append(["  " + f"{inventory.shown(loc.file)}:{loc.line}", _object_name(loc), what])
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
            where = f"{inventory.shown(loc.file)}:{loc.line}"
            rows.append([use.ref.original, where, _object_name(loc)])
            rows.append(["  " + loc.field, "", ""])
        out += _table(("IMAGE / FIELD", "WHERE", "OBJECT"), rows)
    return "\n".join(out) + "\n"


def _run_images(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ._discovery import parse_image_field, scan_manifests

    fields = [parse_image_field(text) for text in args.image_field]
    _stdin_not_a_terminal(args.path, "helm template REL CHART | kotsrewrite images -")
    # Only the locations are needed: no node tree outlives its document.
    _, inventory = scan_manifests(
        args.path, limits=_load_limits(args), image_fields=fields, keep="none"
    )
    for warning in inventory.warnings:
        err.write(f"kotsrewrite: warning: {warning}\n")
    # The inventory lives to the end and holds no garbage: keep the collector from rescanning
    # it, again and again, as the output's many small containers come and go (json's indenting
    # encoder leaves a reference cycle per call, so the collector must keep running).
    gc.freeze()
    try:
        if args.format == "json":
            for piece in _images_json(inventory):
                out.write(piece)
        else:
            out.write(_images_table(inventory))
    finally:
        gc.unfreeze()
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
    p.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image reference, e.g. quay.io/acme/api:1.0"
    )
    p.add_argument(
        "--format", choices=("table", "json"), default="table", help="output (default: table)"
    )
    _add_transport_options(p)
    p.add_argument(
        "--on-unknown",
        choices=["private", "public", "fail"],
        default="private",
        help="not_found/rate_limited/unreachable: warn (private, public) or exit 1 (fail)"
        " (default: private)",
    )
    p.set_defaults(run=_run_probe)


def _add_transport_options(p: argparse.ArgumentParser) -> None:
    """How registries are reached; shared by ``probe``, ``rewrite`` and ``post-render``."""
    p.add_argument(
        "--insecure-registry",
        metavar="HOST",
        action="append",
        default=[],
        help="reach HOST[:PORT] over plain HTTP (repeatable; default: none, every registry"
        " over https)",
    )
    p.add_argument(
        "--ca-file",
        metavar="FILE",
        help="extra CA certificates (PEM) to trust (default: the system's only)",
    )
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
    options = ProbeOptions(
        insecure_registries=frozenset(args.insecure_registry), ca_file=args.ca_file, **tuning
    )
    if args.ca_file is not None:
        # Checked here, so that the error names the flag (the library names the file).
        from ._errors import InputError
        from ._registry._pools import ssl_context

        try:
            ssl_context(options)
        except InputError as exc:
            raise InputError(
                f"{args.ca_file}: {exc.message}", file="--ca-file", hint=exc.hint
            ) from None
    return options


def _write_cause_hints(evidence: Sequence[Any], err: TextIO) -> None:
    """One ``hint:`` line per actionable cause the evidence records (e.g. a registry that
    answered plain HTTP: the flag that reaches it so, named only as a hint)."""
    from ._model import ProbeCause

    causes = dict.fromkeys(cause for ev in evidence for cause in ev.causes())
    for cause, host in causes:
        if cause is ProbeCause.PLAIN_HTTP:
            err.write(
                f"hint: {host} answered plain HTTP, not TLS; if that registry is meant to be"
                f" reached without TLS, pass --insecure-registry {host}\n"
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
    unknown = [r for r in results if not r.verdict.is_known]
    how = {"private": "treated as private", "public": "left alone", "fail": "refused"}
    warnings = [
        {
            "code": "unknown-verdict",
            "message": f"{r.image.original}: {r.verdict}"
            f" ({how[args.on_unknown]} under --on-unknown {args.on_unknown})",
            "image": r.image.original,
            "verdict": str(r.verdict),
            "onUnknown": args.on_unknown,
            "reason": r.evidence.reason,
            "causes": [{"cause": str(c), "host": h} for c, h in r.evidence.causes()],
        }
        for r in unknown
    ]
    if args.format == "json":
        doc = {
            "images": [
                {
                    "image": r.image.original,
                    "verdict": str(r.verdict),
                    "evidence": r.evidence.to_json(),
                }
                for r in results
            ],
            "warnings": warnings,
        }
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        width = max(len(r.image.original) for r in results)
        out.write(f"{'VERDICT':<13}{'IMAGE':<{width + 2}}REASON\n")
        for r in results:
            out.write(f"{r.verdict!s:<13}{r.image.original:<{width + 2}}{r.evidence.reason}\n")
    for warning in warnings:
        err.write(f"kotsrewrite: warning: {warning['message']}\n")
    _write_cause_hints([r.evidence for r in unknown], err)
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
    p.add_argument(
        "--app-slug", metavar="SLUG", help="app slug (required unless --license gives it)"
    )
    p.add_argument(
        "--license-id", metavar="ID", help="license ID (required unless --license gives it)"
    )
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
        help="also create the pull secret in NS ('*': every namespace seen); repeatable"
        " (default: none)",
    )
    p.add_argument(
        "--proxy-host",
        metavar="H",
        default="proxy.replicated.com",
        help="the Replicated proxy, or its custom domain: private images are renamed to"
        " H/proxy/SLUG/IMAGE (default: proxy.replicated.com)",
    )
    p.add_argument(
        "--replicated-registry",
        metavar="H",
        default="registry.replicated.com",
        help="the Replicated registry, or its custom domain: its images keep their names and"
        " get the pull secret (default: registry.replicated.com)",
    )
    p.add_argument(
        "--known-images",
        metavar="FILE",
        help="KOTS Installation YAML or a kotsrewrite report: verdicts used instead of probing"
        " (default: none, every image is probed)",
    )
    p.add_argument(
        "--cache-ttl",
        metavar="SECONDS",
        type=_positive_float,
        default=None,
        help="with a report as --known-images: ignore verdicts probed longer ago than this"
        " (default: no limit)",
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
        help=_IMAGE_FIELD_HELP,
    )
    p.add_argument(
        "--on-unplaced",
        choices=["warn", "fail"],
        default="warn",
        help="a custom resource whose CRD keeps the pull secret nowhere: warn (default) or"
        " exit 1 (fail)",
    )
    _add_transport_options(p)
    _add_limit_options(p)


def _add_rewrite(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "rewrite",
        help="write the midstream kustomization",
        description="Find every image, probe it anonymously, and write a midstream"
        " kustomization that pulls private images through the proxy with the license secret.",
    )
    p.add_argument("path", help="directory, kustomize base, file, or - for stdin")
    _add_plan_options(p, namespace_help="app namespace (default: default)")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="output directory (default: midstream/ beside the base directory or file;"
        " ./midstream for stdin)",
    )
    p.add_argument("--force", action="store_true", help="replace a directory not written by us")
    p.add_argument("--report", metavar="FILE|-", help="write the JSON report to FILE or - (stdout)")
    p.add_argument(
        "--dry-run", action="store_true", help="print the files and the plan; write nothing"
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="after writing, build the midstream with kustomize and check it (exit 1 if wrong)",
    )
    p.add_argument(
        "--pull",
        action="store_true",
        help="with --verify: also ask the proxy (and every registry the pull secrets cover)"
        " for each image's manifest with the secret's credentials (exit 1 unless all pullable)",
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
    from ._discovery import parse_image_field
    from ._errors import InputError
    from ._kots import load_application, load_license
    from ._model import OnUnknown

    slug, license_id = args.app_slug, args.license_id
    if args.license:
        lic = load_license(args.license)
        slug = slug or lic.app_slug
        license_id = license_id or lic.license_id
        args.license_id = license_id  # so that an internal error's message is scrubbed of it
    additional = list(args.additional_namespace)
    proxy_all = bool(args.proxy_all)
    if args.application:
        app = load_application(args.application)
        additional += [ns for ns in app.additional_namespaces if ns not in additional]
        proxy_all = proxy_all or app.proxy_public_images
    if not slug and args.license:
        raise InputError(
            "the License has no spec.appSlug",
            file=args.license,
            hint="pass --app-slug SLUG, or give the License file from the vendor portal",
        )
    if not slug:
        raise InputError(
            "no app slug", file="--app-slug", hint="pass --app-slug SLUG or --license FILE"
        )
    if not license_id and args.license:
        raise InputError(
            "the License has no spec.licenseID",
            file=args.license,
            hint="pass --license-id ID, or give the License file from the vendor portal",
        )
    if not license_id:
        raise InputError(
            "no license ID", file="--license-id", hint="pass --license-id ID or --license FILE"
        )
    fields = [parse_image_field(text) for text in args.image_field]
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
        on_unplaced=args.on_unplaced,
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
        raise OutputError(
            f"{path}: cannot write the report: {exc.strerror}", hint=_REPORT_HINT
        ) from None


_REPORT_HINT = "give a file in an existing, writable directory, e.g. --report report.json"


def _check_report_path(path: str | None) -> None:
    """Refuse a --report that cannot be written before any work (and any output) is done."""
    import os

    from ._errors import OutputError

    if path is None or path == "-":
        return
    parent = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise OutputError(f"{path}: cannot write the report: is a directory", hint=_REPORT_HINT)
    if not os.path.isdir(parent):
        raise OutputError(
            f"{path}: cannot write the report: no directory {parent}", hint=_REPORT_HINT
        )


def _run_rewrite(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:

    from ._report import dump_report, load_known_images
    from ._rewrite import rewrite

    options, _ = _rewrite_options(args)
    _check_report_path(args.report)
    _stdin_not_a_terminal(args.path, "helm template REL CHART | kotsrewrite rewrite - ...")
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
        inputs=[f for f in (args.license, args.application, args.known_images, args.ca_file) if f],
    )
    for warning in result.warnings:
        err.write(f"kotsrewrite: warning: {warning}\n")
    _write_cause_hints([d.evidence for d in result.plan.decisions if d.unknown], err)
    if args.dry_run:
        # With --report -, stdout carries the JSON report alone: the listing goes to stderr.
        listing = err if args.report == "-" else out
        listing.write(f"# would write {result.output}\n")
        for name in result.files:
            listing.write(f"{name}\n")
        for d in result.plan.decisions:
            verdict = "-" if d.verdict is None else str(d.verdict)
            target = f" -> {d.new_image}" if d.new_name else ""
            listing.write(f"{d.action:<11} {verdict:<12} {d.image.original}{target}\n")
        for patch in result.plan.patches:
            t = patch.target
            ns = f" -n {t.namespace}" if t.namespace else ""
            rules = ", ".join(sorted({str(p.placement) for p in patch.placements}))
            listing.write(
                f"patch       {t.kind}/{t.name}{ns}: imagePullSecrets += {options.secret_name}"
                + (f" ({rules})" if rules else "")
                + "\n"
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
    if getattr(args, "pull", False) and not getattr(args, "verify", False):
        err.write("kotsrewrite: warning: --pull does nothing without --verify\n")
    if getattr(args, "verify", False) and result.written:
        from ._verify import verify_midstream

        checked = verify_midstream(result.output, result.plan)
        if args.pull:
            return _verify_and_pull(checked, args, probe_options, None, out, err)
        return _print_verify(checked, out, err)
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
        p,
        namespace_help="the release namespace (its pull secret has no metadata.namespace;"
        " default: default)",
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
    _check_report_path(args.report)
    _stdin_not_a_terminal(
        "-", "helm install REL CHART --post-renderer kotsrewrite --post-renderer-args post-render"
    )
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
    gc.freeze()  # as in rewrite: the base's node trees need no rescanning
    try:
        text = helm_post_render(result.base, result.plan)
    finally:
        gc.unfreeze()
    for warning in result.warnings:
        err.write(f"kotsrewrite: warning: {warning}\n")
    _write_cause_hints([d.evidence for d in result.plan.decisions if d.unknown], err)
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
        " of the base's, tag and digest intact (others untouched), and a valid reference"
        " (distribution grammar); every PodSpec pulling from a host of the pull secret lists"
        " the secret exactly once (custom resources whose CRD is in the build: the secret"
        " survives the CRD's pruning, or the ServiceAccount the PodSpec runs as holds it);"
        " every PodSpec given the secret finds it in its own namespace (objects without one"
        " are in --namespace); each secret a dockerconfigjson with correct auths; the"
        " kots.io/app-slug annotation on every object. Prints one line per problem."
        " Exit 0 ok, 1 problems found, 2 usage.",
    )
    p.add_argument("directory", metavar="DIR", help="the midstream directory (rewrite --out)")
    p.add_argument(
        "--namespace",
        metavar="NS",
        default=None,
        help="the namespace of objects without one, as kubectl apply -n (default: default)",
    )
    p.add_argument(
        "--base",
        metavar="PATH",
        default=None,
        help="the base the midstream was made from: report files added, changed or removed"
        " since (or a midstream made from another base)",
    )
    p.add_argument(
        "--pull",
        action="store_true",
        help="also ask the proxy and the Replicated registry (and every registry whose"
        " credentials a PodSpec's pull secret holds) for each built image's manifest with"
        " those credentials: pullable, denied, not_found, rate_limited or unreachable"
        " (exit 1 unless all pullable)",
    )
    p.add_argument(
        "--license-id",
        metavar="ID",
        help="with --pull: the license to pull with (username LICENSE_ID) instead of the"
        " pull secret's",
    )
    p.add_argument(
        "--license", metavar="FILE", help="with --pull: KOTS License YAML giving the license ID"
    )
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="pull results as a table or JSON (default: table)",
    )
    _add_transport_options(p)
    p.set_defaults(run=_run_verify)


def _print_verify(result: Any, out: TextIO, err: TextIO) -> int:
    for problem in result.problems:
        out.write(f"{problem}\n")
    err.write(f"kotsrewrite: verify: {result.summary()}\n")
    return 0 if result.ok else 1


def _run_verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ._verify import verify_midstream

    license_id = _license_id(args)
    if args.license and not license_id:
        from ._errors import InputError

        raise InputError(
            "the License has no spec.licenseID",
            file=args.license,
            hint="pass --license-id ID, or give the License file from the vendor portal",
        )
    if (license_id or args.format == "json") and not args.pull:
        err.write("kotsrewrite: warning: --license-id, --license and --format need --pull\n")
    options = _probe_options(args)
    result = verify_midstream(args.directory, namespace=args.namespace, base=args.base)
    if not args.pull:
        return _print_verify(result, out, err)
    return _verify_and_pull(result, args, options, license_id, out, err)


def _verify_and_pull(
    result: Any,
    args: argparse.Namespace,
    options: Any,
    license_id: str | None,
    out: TextIO,
    err: TextIO,
) -> int:
    """Print verify's problems, then check each image's pull with the pull secrets' (or the
    given license's) credentials; 1 when a problem was found or an image is not pullable."""
    from ._registry._pull import PullCredentials, pull_check_sync

    credentials = result.pull_credentials
    if license_id:
        credentials = PullCredentials.for_license(license_id, result.pull_hosts).merged(credentials)
    results = pull_check_sync(result.pull_images, credentials, options)
    bad = [r for r in results if not r.pullable]
    if getattr(args, "format", "table") == "json":
        doc = {
            "directory": str(result.directory),
            "ok": result.ok and not bad,
            "problems": list(result.problems),
            "pull": [r.to_json() for r in results],
        }
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        for problem in result.problems:
            out.write(f"{problem}\n")
        if results:
            width = max(len(r.image.original) for r in results)
            out.write(f"{'PULL':<13}{'IMAGE':<{width + 2}}REASON\n")
            for r in results:
                out.write(f"{r.status!s:<13}{r.image.original:<{width + 2}}{r.evidence.reason}\n")
    err.write(f"kotsrewrite: verify: {result.summary()}\n")
    err.write(
        f"kotsrewrite: verify --pull: {len(results) - len(bad)} of {len(results)} image(s)"
        " pullable with the pull secret's credentials\n"
    )
    _write_cause_hints([r.evidence for r in bad], err)
    return 0 if result.ok and not bad else 1


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
    from ._relocate import CopyPlan

    plan = CopyPlan.load(args.plan)
    license_id = _license_id(args)
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


def _version() -> str:
    from . import __version__

    return f"kotsrewrite {__version__}"


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
    parser.add_argument(
        "--version", action="version", version=_version(), help="print the version and exit"
    )
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
        if isinstance(subparser, _Parser):
            subparser.siblings = dict(sub.choices)
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


class _OutputClosed(Exception):
    """The reader of our standard output went away (a closed pipe)."""


class _OutputFailed(Exception):
    """Writing our standard output failed for another reason (e.g. a full disk)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error.strerror or str(error))


class _Output(io.TextIOBase):
    """The command's output stream: every byte written, or a clear failure.

    Writes to a file descriptor go straight to ``os.write`` in a loop until all of it is
    written: a write to a pipe may return short (a signal, or io_uring task work, interrupts
    it), and CPython's unbuffered text stdout (``PYTHONUNBUFFERED=1``) drops what a short write
    left unwritten. The descriptor is made blocking before each flush (an event loop, or
    another process sharing the pipe, may have made it non-blocking). A closed pipe raises
    :class:`_OutputClosed`, any other error :class:`_OutputFailed`. Other streams (tests) are
    written through, with the same two errors.
    """

    _CHUNK = 64 * 1024

    def __init__(self, target: TextIO, fd: int | None) -> None:
        self._target = target
        self._fd = fd
        self._pending = bytearray()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._target.isatty()

    def write(self, text: str) -> int:
        if self._fd is None:
            self._guard(lambda: self._target.write(text))
            return len(text)
        self._pending += text.encode("utf-8")
        if len(self._pending) >= self._CHUNK:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self._fd is None:
            self._guard(self._target.flush)
            return
        self._guard(self._drain)

    def _drain(self) -> None:
        assert self._fd is not None
        if self._pending and not os.get_blocking(self._fd):
            os.set_blocking(self._fd, True)
        view = memoryview(self._pending)
        done = 0
        try:
            while done < len(view):
                try:
                    done += os.write(self._fd, view[done:])
                except BlockingIOError:  # made non-blocking again meanwhile: wait for room
                    select.select([], [self._fd], [])
        finally:
            view.release()
            del self._pending[:done]

    @staticmethod
    def _guard(action: Callable[[], object]) -> None:
        try:
            action()
        except BrokenPipeError:
            raise _OutputClosed() from None
        except OSError as exc:
            raise _OutputFailed(exc) from None

    @classmethod
    def for_stdout(cls) -> _Output:
        """``sys.stdout`` as an :class:`_Output` (by its descriptor when it has one)."""
        stream = sys.stdout
        try:
            stream.flush()
            fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        return cls(stream, fd)


def _license_values(arguments: Sequence[str]) -> list[str]:
    """Values given to anything that looks like ``--license-id`` (misspelt, abbreviated, or on
    a command without it), as ``--flag VALUE`` or ``--flag=VALUE``."""
    values: list[str] = []
    for i, token in enumerate(arguments):
        name, sep, value = token.partition("=")
        name = name.lower()
        if not name.startswith("--lic"):
            continue
        if sep:
            values.append(value)  # --license=FILE too: harmless to hide, and may be an ID
        elif not "--license".startswith(name) and i + 1 < len(arguments):
            values.append(arguments[i + 1])
    return [v for v in values if v]


def _scrub_argv(text: str, arguments: Sequence[str]) -> str:
    """``text`` without the license ID values found in ``arguments``."""
    for value in sorted(_license_values(arguments), key=len, reverse=True):
        text = text.replace(value, "<license ID>")
    return text


def _license_id(args: argparse.Namespace) -> str | None:
    """``--license-id``, else the ``--license`` file's ``spec.licenseID`` (None when neither
    gives one); kept in ``args`` so that an internal error's message is scrubbed of it too."""
    license_id: str | None = args.license_id
    if args.license and not license_id:
        from ._kots import load_license

        license_id = args.license_id = load_license(args.license).license_id
    return license_id


def _scrub(text: str, args: argparse.Namespace) -> str:
    secret = getattr(args, "license_id", None)
    return text.replace(secret, "<license ID>") if secret else text


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run the command line; returns the exit code (never calls ``sys.exit`` itself).

    Exit codes: 0 ok; 1 policy failure (``--on-unknown fail``, ``verify`` found problems), an
    error writing stdout (one ``kotsrewrite: error:`` line), or an internal error (a bug: one
    line asking for a report, the traceback with ``--verbose``); 2 bad input or usage (one
    ``kotsrewrite: error:`` line naming the file:line or flag, then a ``hint:`` line); 130
    interrupted; 141 stdout closed by its reader (e.g. ``| head``; nothing printed), as a
    process ended by SIGPIPE.

    ``post-render`` run by Helm (on the process's own stderr) also copies its messages to
    Helm's stderr when Helm would swallow them (see ``kotsrewrite._helmio``).
    """
    if stderr is None:
        from ._helmio import helm_stderr

        helm = helm_stderr(list(sys.argv[1:] if argv is None else argv), sys.stderr)
        if helm is not None:
            code = _guarded(argv, stdout, cast(TextIO, helm))
            helm.finish(code)
            return code
    return _guarded(argv, stdout, stderr)


def _guarded(argv: Sequence[str] | None, stdout: TextIO | None, stderr: TextIO | None) -> int:
    """:func:`_main` with its output stream guarded (see :class:`_Output`)."""
    out = _Output(stdout, None) if stdout is not None else _Output.for_stdout()
    err = stderr if stderr is not None else sys.stderr
    try:
        code = _main(argv, out, err)
        out.flush()
        return code
    except _OutputClosed:  # the reader is gone (`| head`): end quietly, as SIGPIPE would
        return 141
    except _OutputFailed as exc:
        with contextlib.suppress(OSError):
            err.write(f"kotsrewrite: error: cannot write the output to stdout: {exc}\n")
        return 1
    finally:
        with contextlib.suppress(OSError):
            err.flush()


def _main(argv: Sequence[str] | None, out: Any, err: Any) -> int:
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    usage = io.StringIO()
    try:
        # argparse prints --help and usage errors on sys.stdout/sys.stderr: send them to ours,
        # the errors through a buffer, scrubbed of license IDs (argparse echoes arguments).
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(usage):
            args, extra = parser.parse_known_args(arguments)
            if extra:  # reported by the subcommand's parser, so the hint names its --help
                _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse: --help (0) or usage error (2)
        err.write(_scrub_argv(usage.getvalue(), arguments))
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
    except (_OutputClosed, _OutputFailed):
        raise
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
