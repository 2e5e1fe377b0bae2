"""Writing the midstream atomically.

The files are written into a fresh temporary directory beside the destination, then renamed
into place. An existing destination written by kotsrewrite (it holds :data:`MARKER_FILE`) is
replaced: renamed aside, the new directory renamed in, the old one deleted. Any other
non-empty destination is refused unless ``force`` is given. Nothing is left behind on failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
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
    replace = _check_destination(dest, Path(protected) if protected else None, force)
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=parent))
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
        for directory in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
            os.chmod(directory, 0o755 & ~mask)
        if replace:
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=parent))
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
