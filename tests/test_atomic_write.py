"""Output written by a process killed at any point is either the old output or the new one.

``python -m kotsrewrite rewrite`` runs as a subprocess with the test hook
``KOTSREWRITE_TEST_WRITE_DELAY`` (see kotsrewrite/_write.py: a sleep after each file written
and after the swap) so writing takes measurable time; it is killed with SIGKILL after a seeded
random delay. After every kill the output directory must equal, file for file and mode for
mode, either the complete old output or the complete new output. Temporary directories left
by the killed process must be dot-named ``.midstream.tmp-<pid>-*``/``.midstream.old-<pid>-*``
and removed by the next run.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kotsrewrite import write_output
from kotsrewrite._cli import main
from kotsrewrite._write import MARKER_FILE, _clean_stale

NAMESPACES = [f"ns{i:02}" for i in range(12)]
POD = (
    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p{i}\n  namespace: {ns}\nspec:\n"
    "  containers:\n  - name: c\n    image: quay.io/acme/app{i}:1.0\n"
)
KNOWN = (
    "apiVersion: kots.io/v1beta1\nkind: Installation\nmetadata: {name: x}\nspec:\n  knownImages:\n"
)


def _setup(tmp: Path) -> tuple[Path, Path, Path]:
    base = tmp / "base"
    base.mkdir()
    known = KNOWN
    pods = []
    for i, ns in enumerate(NAMESPACES):
        pods.append(POD.format(i=i, ns=ns))
        known += f"  - image: quay.io/acme/app{i}:1.0\n    isPrivate: true\n"
    # One file: the midstream's snapshot of the base adds two files (it and a kustomization),
    # so the writing window, and the odds of a kill landing after the swap, stay as they were.
    (base / "pods.yaml").write_text("---\n".join(pods))
    (tmp / "known.yaml").write_text(known)
    return base, tmp / "known.yaml", tmp / "midstream"


def _argv(base: Path, known: Path, out: Path, slug: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kotsrewrite",
        "rewrite",
        str(base),
        "--app-slug",
        slug,
        "--license-id",
        f"LIC-{slug}",
        "--known-images",
        str(known),
        "--offline",
        "--out",
        str(out),
    ]


def _snapshot(out: Path) -> dict[str, tuple[int, str]] | None:
    if not out.exists():
        return None
    return {
        p.relative_to(out).as_posix(): (stat.S_IMODE(p.stat().st_mode), p.read_text())
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def _run(argv: list[str], delay: float = 0.0) -> None:
    env = {**os.environ, "KOTSREWRITE_TEST_WRITE_DELAY": str(delay)} if delay else None
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".midstream"))


class _Child:
    """``python -m kotsrewrite ARGV`` (``exec``) or a fork running ``main(ARGV)`` (``fork``:
    the same code without interpreter start-up, so more kills land while writing)."""

    def __init__(self, argv: list[str], delay: float, how: str) -> None:
        self.how = how
        if how == "exec":
            env = {**os.environ, "KOTSREWRITE_TEST_WRITE_DELAY": str(delay)}
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            self.pid = self.proc.pid
            return
        self.proc = None
        self.pid = os.fork()
        if self.pid == 0:
            code = 70
            try:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.dup2(null, 2)
                os.environ["KOTSREWRITE_TEST_WRITE_DELAY"] = str(delay)
                code = main(argv[3:])
            finally:
                os._exit(code)

    def kill(self) -> int:
        """SIGKILL; the exit code (negative: the signal)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        if self.proc is not None:
            return self.proc.wait(10)
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)


def _kill_run(
    argv: list[str], delay: float, how: str, after: float, parent: Path
) -> tuple[int, int]:
    """Start a run, wait until it starts writing (its temp dir appears), then kill it
    ``after`` seconds later. Anchoring on the temp dir, not on wall time since start, keeps
    the kill points inside the writing window on a loaded machine."""
    child = _Child(argv, delay, how)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(f"-{child.pid}-" in name for name in _leftovers(parent)):
            break
        time.sleep(0.002)
    time.sleep(after)
    return child.pid, child.kill()


def _timed(argv: list[str], delay: float, how: str) -> float:
    start = time.monotonic()
    child = _Child(argv, delay, how)
    if child.proc is not None:
        assert child.proc.wait(60) == 0
    else:
        _, status = os.waitpid(child.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    return time.monotonic() - start


@pytest.mark.slow
@pytest.mark.parametrize(("how", "kills"), [("fork", 20), ("exec", 3)])
def test_killed_at_random_points_leaves_old_or_new(tmp_path: Path, how: str, kills: int) -> None:
    base, known, out = _setup(tmp_path)
    argv = {slug: _argv(base, known, out, slug) for slug in ("old", "new")}
    _run(argv["new"])
    new = _snapshot(out)
    _run(argv["old"])
    old = _snapshot(out)
    # kustomization, marker, a secret per namespace + 1; the base snapshot: pods + kustomization
    assert old and new and old != new and len(old) == len(NAMESPACES) + 3 + 2

    # How long a slowed-down run takes; the last `writing` seconds of it are the writing.
    delay = 0.03
    slow = _timed(argv["new"], delay, how)
    assert _snapshot(out) == new and _leftovers(tmp_path) == []
    writing = delay * (len(new) + 1)  # a sleep per file, then one after the swap
    assert slow > writing

    rng = random.Random(8)
    state, outcomes, mid_write, killed = "new", {"old": 0, "new": 0}, 0, set()
    for _ in range(kills):
        target = "old" if state == "new" else "new"
        after = rng.uniform(0.0, writing + 0.02)
        pid, code = _kill_run(argv[target], delay, how, after, tmp_path)
        killed.add(pid)
        got = _snapshot(out)
        assert got in (old, new), "a mix of old and new output (or none)"
        state = "old" if got == old else "new"
        outcomes[state] += 1
        left = _leftovers(tmp_path)
        for name in left:  # only killed processes', clearly named
            match = re.fullmatch(r"\.midstream\.(?:tmp|old)-(\d+)-\w+", name)
            assert match is not None and int(match.group(1)) in killed, name
        if code == -signal.SIGKILL and any(f"-{pid}-" in n for n in left):
            mid_write += 1
    print(f"{how}: {kills} kills: {outcomes}, {mid_write} left a temp dir (killed mid-write)")
    if how == "fork":  # many kills, cheap start: they did land while writing, both ends seen
        assert mid_write >= 3, (mid_write, outcomes)
        assert outcomes["old"] >= 1 and outcomes["new"] >= 1, outcomes

    # Whatever was left behind, the next complete run removes it.
    _run(argv["old"])
    assert _snapshot(out) == old and _leftovers(tmp_path) == []


def test_temp_dirs_of_a_live_writer_are_kept(tmp_path: Path) -> None:
    out = tmp_path / "midstream"
    # The current process (alive) and a parent that is alive: not stale.
    mine = tmp_path / f".midstream.tmp-{os.getpid()}-abc"
    parent = tmp_path / f".midstream.tmp-{os.getppid()}-abc"
    dead = tmp_path / ".midstream.tmp-999999999-abc"
    other = tmp_path / ".other.tmp-999999999-abc"
    for d in (mine, parent, dead, other):
        d.mkdir()
    write_output({"a.yaml": "a: 1\n"}, out)
    assert mine.exists() and parent.exists() and other.exists() and not dead.exists()


def test_fallback_two_renames_killed_between_them_is_restored(tmp_path: Path) -> None:
    # Without renameat2 (other systems), the old output is renamed aside first: a kill right
    # then leaves no output; the next run puts the old output back before anything else.
    out = tmp_path / "midstream"
    write_output({"a.yaml": "old\n"}, out)
    pid = os.fork()
    if pid == 0:  # child: die between the two renames
        import kotsrewrite._write as w

        real = os.rename
        calls = []

        def rename(a: object, b: object) -> None:
            calls.append(a)
            real(a, b)  # type: ignore[arg-type]
            if len(calls) == 1:
                os._exit(9)

        w._exchange = lambda a, b: False  # type: ignore[assignment]
        w.os.rename = rename  # type: ignore[assignment]
        try:
            write_output({"a.yaml": "new\n"}, out)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 9
    assert not out.exists()
    (kept,) = [p for p in tmp_path.iterdir() if p.name.startswith(f".midstream.old-{pid}-")]
    assert (kept / "old" / "a.yaml").read_text() == "old\n"
    _clean_stale(out)
    assert (out / "a.yaml").read_text() == "old\n" and (out / MARKER_FILE).is_file()
    assert _leftovers(tmp_path) == []
    write_output({"a.yaml": "new\n"}, out)
    assert (out / "a.yaml").read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["midstream"]


def test_exchange_swaps_directories(tmp_path: Path) -> None:
    from kotsrewrite._write import _exchange

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f").write_text("b")
    if not _exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("renameat2(RENAME_EXCHANGE) not supported here")
    assert (tmp_path / "a" / "f").read_text() == "b" and (tmp_path / "b" / "f").read_text() == "a"
    with pytest.raises(OSError):
        _exchange(tmp_path / "a", tmp_path / "missing")
