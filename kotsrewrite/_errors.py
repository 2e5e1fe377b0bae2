"""Exceptions raised by kotsrewrite.

Every error a user can cause is an :class:`InputError` (the CLI exits 2) and carries where it
happened (file and 1-based line, or the flag) plus a hint saying what to do. A
:class:`PolicyError` is a deliberate refusal under the chosen policy (the CLI exits 1).

No exception message or repr ever contains the license ID.
"""

from __future__ import annotations

import os
import posixpath


class KotsRewriteError(Exception):
    """Base class of every error kotsrewrite raises on purpose."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InputError(KotsRewriteError):
    """Bad input: a manifest, reference, option or file the user gave.

    ``file`` is the path as the user can open it from where they ran the command (the base
    they gave joined with the file's path in it, see :func:`shown_path`; ``<stdin>`` for
    standard input, or ``--flag`` for an option); ``line`` is 1-based, or ``None`` when the
    problem is not tied to a line.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.file = file
        self.line = line

    @property
    def where(self) -> str:
        """``file:line``, ``file`` or the empty string."""
        if self.file is None:
            return ""
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}"

    def __str__(self) -> str:
        where = self.where
        return f"{where}: {self.message}" if where else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, file={self.file!r}, line={self.line!r})"

    def within(self, base_dir: str | None) -> InputError:
        """This error with its file, relative to the base directory ``base_dir`` (as the user
        gave it), shown as the user can open it (:func:`shown_path`). Returns ``self``."""
        if self.file is not None:
            self.file = shown_path(base_dir, self.file)
        return self


def shown_path(base_dir: str | None, file: str) -> str:
    """A file of a base named as the user can open it from where they ran the command.

    ``file`` is relative to the base directory, and ``base_dir`` is that directory as the user
    gave it (``bad1``, ``./app/``, ``/abs/dir``; ``None`` or ``""`` for the current directory
    or for stdin): the result is both joined and normalized (``bad1/backend.yaml``). Names
    that are not paths in the base (``<stdin>``, ``--flag``) and absolute paths are returned
    unchanged. The one place that decides how files of a base appear in messages.
    """
    if not base_dir or file.startswith(("<", "--")) or os.path.isabs(file):
        return file
    joined = posixpath.normpath(posixpath.join(base_dir.replace(os.sep, "/"), file))
    return joined


class InvalidReferenceError(InputError):
    """An image reference that the distribution reference grammar rejects."""


class OutputError(KotsRewriteError):
    """The output cannot be written as asked (e.g. an existing directory not written by us)."""

    exit_code = 2


class PolicyError(KotsRewriteError):
    """The run was refused by policy, e.g. ``--on-unknown fail`` with an unknown verdict."""

    exit_code = 1
