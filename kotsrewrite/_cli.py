"""The ``kotsrewrite`` command line: a thin layer over the library.

Exit codes: 0 ok, 1 policy failure, 2 bad input or usage. Errors print one line with the
file:line or flag and what went wrong, then a ``hint:`` line saying what to do.

Each subcommand owns one ``_add_<name>`` (arguments) and one ``_run_<name>`` (behaviour)
function below; the shared plumbing (parser, error handling) is at the top and bottom.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from ._errors import KotsRewriteError

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
    p.set_defaults(run=_run_images)


def _run_images(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    raise NotImplementedError


# --------------------------------------------------------------------------------------------
# kotsrewrite probe


def _add_probe(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("probe", help="probe images anonymously and print verdicts")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(run=_run_probe)


def _run_probe(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    raise NotImplementedError


# --------------------------------------------------------------------------------------------
# kotsrewrite rewrite


def _add_rewrite(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("rewrite", help="write the midstream kustomization")
    p.add_argument("path", help="directory, file, or - for stdin")
    p.set_defaults(run=_run_rewrite)


def _run_rewrite(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    raise NotImplementedError


# --------------------------------------------------------------------------------------------
# plumbing


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``kotsrewrite`` command (used to check the README)."""
    parser = _Parser(
        prog="kotsrewrite",
        description="Find images in rendered manifests, probe them anonymously, and write a"
        " midstream kustomization that pulls private images through the proxy.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_images(sub)
    _add_probe(sub)
    _add_rewrite(sub)
    return parser


def _report_error(exc: KotsRewriteError, err: TextIO) -> None:
    err.write(f"kotsrewrite: error: {exc}\n")
    if exc.hint:
        err.write(f"hint: {exc.hint}\n")


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run the command line; returns the exit code (never calls ``sys.exit`` itself)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or usage error (2)
        return int(exc.code or 0)
    run: _Runner = args.run
    try:
        return run(args, out, err)
    except KotsRewriteError as exc:
        _report_error(exc, err)
        return exc.exit_code
    except KeyboardInterrupt:
        err.write("kotsrewrite: interrupted\n")
        return 130
