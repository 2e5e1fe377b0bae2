"""Run a command and measure *its own* peak RSS and CPU, whatever the caller's size.

Why a launcher: on Linux, ``execve`` folds the exec'ing process's old address-space high-water
mark into the new program's ``ru_maxrss``. ``subprocess`` forks (or vforks) the caller, so a
child started from a 300 MB pytest process reports at least 300 MB however little it uses
itself: the measurement depends on what ran earlier in the same process. (CI caught this: the
hostile-input cases reported 277 MB for a run that peaks at 40.)

So this file is also a script: the caller starts it (a small interpreter, ~10 MB after its own
exec), it starts the measured command from its small address space, waits with ``os.wait4``
and writes the command's exit status and resource usage as JSON to a file. The command's
``ru_maxrss`` is then the command's own, plus at most the launcher's ~10 MB floor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import attrs


@attrs.frozen
class Measured:
    """What one measured run did."""

    returncode: int
    """The command's exit code (negative: killed by that signal)."""
    seconds: float
    """Wall time, launcher start to report."""
    peak_mb: float
    """The command's own peak resident set size, MiB (``ru_maxrss``)."""
    cpu: float
    """User + system CPU seconds of the command (and of children it waited for)."""


def run_measured(
    argv: Sequence[str],
    *,
    stdin: IO[bytes] | int | None = None,
    stdout: IO[bytes] | int | None = None,
    stderr: IO[bytes] | int | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Measured:
    """Run ``argv`` through the launcher; raise ``TimeoutError`` after ``timeout`` seconds."""
    with tempfile.TemporaryDirectory(prefix="peak-rss-") as tmp:
        report = Path(tmp) / "report.json"
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, __file__, str(report), *argv],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=env,
            start_new_session=True,  # one process group: a timeout kills the command too
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise TimeoutError(f"killed after {timeout} s: {list(argv)}") from None
        seconds = time.monotonic() - start
        if not report.exists():
            raise RuntimeError(f"launcher failed (exit {proc.returncode}) for {list(argv)}")
        data = json.loads(report.read_text())
    return Measured(
        returncode=os.waitstatus_to_exitcode(data["status"]),
        seconds=seconds,
        peak_mb=data["maxrss_kib"] / 1024,
        cpu=data["cpu"],
    )


def _launch(report: str, argv: list[str]) -> int:
    child = subprocess.Popen(argv)
    _, status, usage = os.wait4(child.pid, 0)
    cpu = usage.ru_utime + usage.ru_stime
    Path(report).write_text(
        json.dumps({"status": status, "maxrss_kib": usage.ru_maxrss, "cpu": cpu})
    )
    return 0


if __name__ == "__main__":
    sys.exit(_launch(sys.argv[1], sys.argv[2:]))
