"""Writing the midstream atomically.

The files are written into a fresh temporary directory beside the destination, then renamed
into place. An existing destination written by kotsrewrite (it holds :data:`MARKER_FILE`) is
replaced: renamed aside, the new directory renamed in, the old one deleted. Any other
non-empty destination is refused unless ``force`` is given. Nothing is left behind on failure.

On Linux the old and new directories are swapped with one ``renameat2(RENAME_EXCHANGE)``, so a
process killed at any point leaves the destination holding either the complete old output or
the complete new one. (Elsewhere, two renames: a kill between them leaves the destination
missing, and the next run puts the old output back before writing.) Temporary directories are
named ``.<name>.tmp-<pid>-*`` and ``.<name>.old-<pid>-*`` beside the destination; those of a
process that no longer runs are removed by the next write.

Test hook: ``KOTSREWRITE_TEST_WRITE_DELAY`` (seconds, read only here) sleeps after each file
written and after the swap, so tests can kill the process at chosen points of writing.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ._errors import OutputError

__all__ = ["MARKER_FILE", "MARKER_TEXT", "write_output"]

#: Present in every directory kotsrewrite writes; marks it as safe to replace.
MARKER_FILE = ".kotsrewrite"
MARKER_TEXT = (
    "This directory was written by kotsrewrite and is replaced on every run.\n"
    "Do not edit it: change the base or the options and run kotsrewrite again.\n"
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _test_delay() -> None:
    """Sleep ``KOTSREWRITE_TEST_WRITE_DELAY`` seconds (a test hook; unset in real use)."""
    delay = os.environ.get("KOTSREWRITE_TEST_WRITE_DELAY")
    if delay:
        time.sleep(float(delay))


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2``); False when not supported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    c_int, c_path = ctypes.c_int, ctypes.c_char_p
    renameat2.argtypes = [c_int, c_path, c_int, c_path, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _clean_stale(dest: Path) -> None:
    """Remove temporary directories of dead writers of ``dest``; restore a lost old output."""
    pattern = re.compile(rf"\.{re.escape(dest.name)}\.(tmp|old)-(\d+)-")
    try:
        entries = list(dest.parent.iterdir())
    except OSError:
        return
    for entry in sorted(entries):
        match = pattern.match(entry.name)
        if match is None or not entry.is_dir() or entry.is_symlink():
            continue
        if _alive(int(match.group(2))):
            continue
        kept = entry / "old"
        if match.group(1) == "old" and not dest.exists() and (kept / MARKER_FILE).is_file():
            with contextlib.suppress(OSError):
                os.rename(kept, dest)
        shutil.rmtree(entry, ignore_errors=True)


def _check_destination(out: Path, protected: Path | None, force: bool) -> bool:
    """True when ``out`` exists and is to be replaced."""
    if protected is not None:
        resolved = out.resolve()
        prot = protected.resolve()
        if resolved == prot or resolved in prot.parents:
            raise OutputError(
                f"{out}: refusing to write over the directory holding the input",
                hint="choose another --out directory",
            )
    if not out.exists() and not out.is_symlink():
        return False
    if not out.is_dir() or out.is_symlink():
        raise OutputError(
            f"{out}: exists and is not a directory", hint="remove it or choose another --out"
        )
    if (out / MARKER_FILE).is_file():
        return True
    if not any(out.iterdir()):
        return True
    if force:
        return True
    raise OutputError(
        f"{out}: directory is not empty and was not written by kotsrewrite",
        hint="choose another --out directory, or pass --force to replace it",
    )


def write_output(
    files: Mapping[str, str],
    out: str | os.PathLike[str],
    *,
    force: bool = False,
    private: Callable[[str], bool] = lambda _path: False,
    protected: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``files`` (``{relative path: text}``) as directory ``out``, atomically.

    ``private(path)`` selects files written mode 0600 (the pull secrets); others get 0644
    and directories 0755, both less the umask. ``protected`` (the input's directory) may not
    be ``out`` or inside it. A :data:`MARKER_FILE` is added. Returns the absolute path
    written. Raises :class:`~kotsrewrite.OutputError` when ``out`` cannot be replaced.
    """
    dest = Path(out).absolute()
    _clean_stale(dest)
    replace = _check_destination(dest, Path(protected) if protected else None, force)
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise OutputError(f"{dest}: cannot create: {exc.strerror}") from None
    mask = _umask()
    try:
        for rel, text in {**files, MARKER_FILE: MARKER_TEXT}.items():
            path = tmp / rel
            if path.resolve().parent != tmp.resolve() and tmp.resolve() not in (
                path.resolve().parents
            ):
                raise OutputError(f"{rel}: path escapes the output directory")
            path.parent.mkdir(parents=True, exist_ok=True)
            mode = 0o600 if private(rel) else 0o644 & ~mask
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
            os.chmod(path, mode)
            _test_delay()
        for directory in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
            os.chmod(directory, 0o755 & ~mask)
        if replace and _exchange(tmp, dest):
            _test_delay()
            shutil.rmtree(tmp, ignore_errors=True)  # now the old output
        elif replace:
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-{os.getpid()}-", dir=parent))
            os.rename(dest, old / "old")
            try:
                os.rename(tmp, dest)
            except OSError:
                os.rename(old / "old", dest)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, dest)
    except OSError as exc:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise OutputError(f"{dest}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    return dest
