"""Getting ``post-render``'s messages to the person running Helm (CLI plumbing, I/O).

Helm captures a post-renderer's stderr and mostly throws it away:

* Helm 4 (``postrenderer/v1`` plugin, subprocess runtime) buffers the plugin's stderr and
  never prints it, even with ``--debug``; a failure shows only ``plugin "kotsrewrite" exited
  with error``. Helm 4 sets ``HELM_PLUGIN_NAME`` and ``HELM_PLUGIN_DIR`` for the plugin.
* Helm 3 (``--post-renderer`` executable) prints the captured stderr only when the
  post-renderer fails; warnings of a successful run are lost.

So when Helm runs ``post-render`` on Linux, what would be lost is also written to Helm's own
stderr, reached through ``/proc/<helm's pid>/fd/2``: everything under Helm 4, the messages of
a successful run under Helm 3. Elsewhere nothing changes (the README says how to see them).
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import TextIO

__all__ = ["HelmStderr", "helm_stderr"]

_O_APPEND = 0o2000


def _helm_major() -> int | None:
    """4 when run as a Helm 4 plugin, 3 when the parent process is a Helm binary, else None."""
    if os.environ.get("HELM_PLUGIN_NAME") and os.environ.get("HELM_PLUGIN_DIR"):
        return 4
    try:
        parent = Path(os.readlink(f"/proc/{os.getppid()}/exe")).name
    except OSError:
        return None
    return 3 if parent.startswith("helm") else None


def _open_parent_stderr(own: TextIO) -> TextIO | None:
    """Helm's stderr, when it is a terminal, a pipe, or a file opened for appending (writing
    to a file Helm writes at its own offset would overwrite); None when it is ours already."""
    ppid = os.getppid()
    path = f"/proc/{ppid}/fd/2"
    try:
        target = os.stat(path)
        try:
            mine = os.fstat(own.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            mine = None
        if mine is not None and (mine.st_dev, mine.st_ino) == (target.st_dev, target.st_ino):
            return None
        if stat.S_ISREG(target.st_mode):
            flags = Path(f"/proc/{ppid}/fdinfo/2").read_text()
            line = next((x for x in flags.splitlines() if x.startswith("flags:")), "flags: 0")
            if not int(line.split()[1], 8) & _O_APPEND:
                return None
        elif not (stat.S_ISFIFO(target.st_mode) or stat.S_ISCHR(target.st_mode)):
            return None
        return open(path, "a", encoding="utf-8", errors="replace")
    except (OSError, ValueError, StopIteration, IndexError):
        return None


class HelmStderr(io.TextIOBase):
    """stderr for ``post-render`` under Helm: passes everything to the real stderr and keeps a
    copy; :meth:`finish` hands the copy to Helm's stderr when Helm would not show it."""

    def __init__(self, target: TextIO, major: int) -> None:
        self._target = target
        self._major = major
        self._copy: list[str] = []

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        self._copy.append(text)
        return self._target.write(text)

    def flush(self) -> None:
        self._target.flush()

    def finish(self, exit_code: int) -> None:
        """Copy the messages to Helm's stderr: always under Helm 4; under Helm 3 only after
        success (Helm 3 prints a failing post-renderer's stderr itself)."""
        text = "".join(self._copy)
        if not text or (self._major == 3 and exit_code != 0):
            return
        helm = _open_parent_stderr(self._target)
        if helm is None:
            return
        with helm:
            helm.write(text)


def helm_stderr(argv: list[str], stderr: TextIO) -> HelmStderr | None:
    """A :class:`HelmStderr` around ``stderr`` when ``argv`` runs ``post-render`` under Helm."""
    if "post-render" not in argv:
        return None
    major = _helm_major()
    return HelmStderr(stderr, major) if major is not None else None
