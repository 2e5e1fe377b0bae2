"""Hostile input through the real CLI in a subprocess: time, peak memory, exit code, message.

Each case runs ``python -m kotsrewrite images|rewrite ...`` and measures the child's own peak
RSS with ``tests/peak_rss.py`` (the kernel's ``ru_maxrss`` of exactly that process, not inflated by
the test process's own size). Every case must end
with either a clear error (exit 2, ``kotsrewrite: error: FILE[:LINE]: ...`` then ``hint:``, no
traceback) or a bounded, correct result, within the time and memory bounds asserted here.
(tests/test_images_cli.py covers the same limits in-process; this file adds what only a
separate process can show: crashes, hangs and memory.)
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest

from kotsrewrite._cli import main

from .peak_rss import run_measured

#: Peak RSS of ``kotsrewrite images`` on a tiny file (interpreter + imports) is ~40 MB.
SMALL_RSS_MB = 150
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"


@attrs.frozen
class Run:
    code: int
    out: str
    err: str
    seconds: float
    rss_mb: float
    cpu: float = 0.0
    """User + system CPU seconds of the child (robust on a loaded machine, unlike ``seconds``)."""


def run_cli(
    argv: Sequence[str], tmp: Path, *, stdin: bytes | None = None, timeout: float = 30.0
) -> Run:
    """Run ``python -m kotsrewrite ARGV``; kill it after ``timeout`` (and fail)."""
    out_path, err_path, in_path = tmp / ".out", tmp / ".err", tmp / ".in"
    in_path.write_bytes(stdin or b"")
    with out_path.open("wb") as out, err_path.open("wb") as err, in_path.open("rb") as inp:
        measured = run_measured(
            [sys.executable, "-m", "kotsrewrite", *argv],
            stdin=inp,
            stdout=out,
            stderr=err,
            cwd=tmp,
            timeout=timeout,
        )
    assert measured.returncode >= 0, f"crashed with signal {-measured.returncode}"
    return Run(
        code=measured.returncode,
        out=out_path.read_text(errors="replace"),
        err=err_path.read_text(errors="replace"),
        seconds=measured.seconds,
        rss_mb=measured.peak_mb,
        cpu=measured.cpu,
    )


def test_peak_rss_is_the_childs_own_not_the_test_processs(tmp_path: Path) -> None:
    # Regression (CI): children forked from a big pytest process inherited its high-water
    # mark through execve, so every case here "used" 277 MB. Grow this process past the
    # bound, then measure a tiny child.
    ballast = bytearray(2 * SMALL_RSS_MB * 1024 * 1024)
    for page in range(0, len(ballast), 4096):
        ballast[page] = 1
    (tmp_path / "a.yaml").write_text(CM.format(name="a"))
    run = images(tmp_path / "a.yaml", tmp_path)
    assert run.code == 0 and json.loads(run.out)["images"] == [], run
    assert run.rss_mb < SMALL_RSS_MB / 2, run
    del ballast


def clear_error(run: Run, where: str, *needles: str) -> None:
    """Exit 2 with ``kotsrewrite: error: WHERE: ...`` naming every needle, a hint, no traceback."""
    assert run.code == 2, run.err
    assert "Traceback" not in run.err
    first, _, rest = run.err.partition("\n")
    assert first.startswith(f"kotsrewrite: error: {where}: "), run.err
    for needle in needles:
        assert needle in run.err, (needle, run.err)
    assert rest.startswith("hint: "), run.err


def images(path: Path | str, tmp: Path, *flags: str, stdin: bytes | None = None) -> Run:
    """``kotsrewrite images PATH`` run in ``tmp``, with PATH relative to it as a user types it
    (so errors name ``f.yaml``, or ``base/f.yaml`` for a file of the directory ``base``)."""
    if isinstance(path, Path) and path.is_relative_to(tmp):
        path = path.relative_to(tmp)
    return run_cli(["images", str(path), "--format", "json", *flags], tmp, stdin=stdin)


# -- alias bombs ---------------------------------------------------------------------------


def _bomb_lines(kind: str, levels: int, fan: int) -> list[str]:
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata: {name: lol}", "data:"]
    if kind == "flow-seq":
        lines.append("  l0: &l0 [" + ",".join(['"lol"'] * fan) + "]")
        for i in range(1, levels):
            lines.append(f"  l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * fan) + "]")
    elif kind == "block-map":
        lines += ["  l0: &l0", *(f"    k{j}: lol" for j in range(fan))]
        for i in range(1, levels):
            lines += [f"  l{i}: &l{i}", *(f"    k{j}: *l{i - 1}" for j in range(fan))]
    else:  # block sequences of mappings
        lines += ["  l0: &l0", *(f"  - {{k{j}: lol}}" for j in range(fan))]
        for i in range(1, levels):
            lines += [f"  l{i}: &l{i}", *(f"  - k: *l{i - 1}" for _ in range(fan))]
    return lines


@pytest.mark.parametrize("kind", ["flow-seq", "block-map", "block-seq-of-maps"])
def test_alias_bomb_is_refused_fast_and_small(tmp_path: Path, kind: str) -> None:
    # 10^12 nodes if expanded; composing shares nodes, the walk counts what expansion visits.
    (tmp_path / "bomb.yaml").write_text("\n".join(_bomb_lines(kind, 12, 10)) + "\n")
    run = images(tmp_path / "bomb.yaml", tmp_path)
    assert run.code == 2 and "alias bomb" in run.err and "Traceback" not in run.err
    assert run.err.startswith("kotsrewrite: error: bomb.yaml:"), run.err
    assert run.cpu < 5 and run.seconds < 30 and run.rss_mb < SMALL_RSS_MB, run


def test_aliased_pod_specs_give_a_bounded_correct_result(tmp_path: Path) -> None:
    # A container list anchored once and aliased 2,000 times (under the alias limit): every
    # use is found, in bounded time and memory.
    head = (
        "apiVersion: example.com/v1\nkind: Fleet\nmetadata: {name: f}\nspec:\n"
        "  base:\n    containers: &c\n"
        "    - name: a\n      image: quay.io/acme/a:1\n"
        "    - name: b\n      image: quay.io/acme/b:2\n"
    )
    body = "".join(f"  p{i}:\n    containers: *c\n" for i in range(2000))
    (tmp_path / "one.yaml").write_text(head + body)
    run = images(tmp_path / "one.yaml", tmp_path)
    assert run.code == 0, run.err
    (a, b) = json.loads(run.out)["images"]
    assert (a["image"], len(a["locations"])) == ("quay.io/acme/a:1", 2001)
    assert (b["image"], len(b["locations"])) == ("quay.io/acme/b:2", 2001)
    assert run.cpu < 10 and run.seconds < 60 and run.rss_mb < SMALL_RSS_MB, run


# -- size and count limits -------------------------------------------------------------------


def test_100_mb_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as fh:  # sparse: costs nothing to create
        fh.truncate(100 * 1024 * 1024)
    run = images(big, tmp_path)
    clear_error(run, "big.yaml", "file too large (104,857,600 bytes", "--max-file-bytes")
    assert run.cpu < 5 and run.seconds < 30 and run.rss_mb < SMALL_RSS_MB, run
    # The same through `rewrite`, whose hint names a flag it really has.
    run = run_cli(
        ["rewrite", "big.yaml", "--app-slug", "a", "--license-id", "x", "--offline"], tmp_path
    )
    clear_error(run, "big.yaml", "--max-file-bytes")
    # Raised, it is read (100 MB of NULs): then refused as binary, memory ~ one copy.
    run = images(big, tmp_path, "--max-file-bytes", str(200 * 1024 * 1024))
    clear_error(run, "big.yaml:1", "binary file")
    assert run.cpu < 10 and run.seconds < 60 and run.rss_mb < 400, run


def test_stdin_over_the_limit(tmp_path: Path) -> None:
    run = images("-", tmp_path, "--max-file-bytes", "1000", stdin=b"a: b\n" * 1000)
    clear_error(run, "<stdin>", "file too large", "--max-file-bytes")


@pytest.mark.slow
def test_100001_documents_default_limit_and_the_flag(tmp_path: Path) -> None:
    # Tiny documents (empty ones count too) keep it fast; one real object at the end.
    text = "---\n" * 100_001 + "---\n" + CM.format(name="last")
    (tmp_path / "many.yaml").write_text(text)
    run = images(tmp_path / "many.yaml", tmp_path)
    clear_error(run, "many.yaml:100002", "more than 100,000 YAML documents", "--max-documents")
    assert run.cpu < 10 and run.seconds < 60 and run.rss_mb < SMALL_RSS_MB, run
    run = images(tmp_path / "many.yaml", tmp_path, "--max-documents", "100003")
    assert run.code == 0 and run.out.startswith("{"), run.err
    # rewrite has the flag too (it used to name a flag only `images` had).
    argv = ["rewrite", "many.yaml", "--app-slug", "a", "--license-id", "x"]
    argv += ["--offline", "--dry-run"]
    run = run_cli(argv, tmp_path)
    clear_error(run, "many.yaml:100002", "--max-documents")
    run = run_cli([*argv, "--max-documents", "100003"], tmp_path)
    assert run.code == 0, run.err


# -- nesting ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("flow", "spec: " + "[" * 100_000, 3),
        ("flow-map", "spec: " + "{a: " * 100_000, 3),
        ("block-map", "spec:\n" + "".join(" " * i + "a:\n" for i in range(1, 400)), 203),
        ("block-seq", "spec:\n" + "".join(" " * i + "-\n" for i in range(1, 400)), 203),
        ("json", '"spec": ' + '{"a": ' * 5_000 + "1" + "}" * 5_000, 3),
    ],
)
def test_deep_nesting_is_refused_without_crashing(
    tmp_path: Path, name: str, text: str, line: int
) -> None:
    (tmp_path / "deep.yaml").write_text("apiVersion: v1\nkind: X\n" + text + "\n")
    run = images(tmp_path / "deep.yaml", tmp_path)
    clear_error(run, f"deep.yaml:{line}", "nesting deeper than")
    assert run.cpu < 5 and run.seconds < 30 and run.rss_mb < SMALL_RSS_MB, run


def test_unbalanced_brackets_in_many_scripts_are_not_nesting(tmp_path: Path) -> None:
    # Regression: the pre-parse bracket count added up over documents, so 2,100 ConfigMaps
    # with one '[' each in a block scalar were refused as "nesting deeper than 200 levels".
    doc = "---\n" + CM + "data:\n  run.sh: |\n    echo [starting\n"
    (tmp_path / "cms.yaml").write_text("".join(doc.format(name=f"c{i}") for i in range(2100)))
    run = images(tmp_path / "cms.yaml", tmp_path)
    assert run.code == 0, run.err


# -- encodings and binary --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "where", "needle"),
    [
        ("utf16le", "apiVersion: v1\nkind: A\n".encode("utf-16"), "f.yaml:1", "UTF-16 text"),
        ("utf16be", b"\xfe\xff" + "kind: A\n".encode("utf-16-be"), "f.yaml:1", "UTF-16 text"),
        ("utf32", "kind: A\n".encode("utf-32"), "f.yaml:1", "UTF-32 text"),
        ("nul", (CM.format(name="a") + "data:\n  x: a\x00b\n").encode(), "f.yaml:6", "NUL"),
        ("latin1", (CM.format(name="caf\xe9")).encode("latin-1"), "f.yaml:4", "not valid UTF-8"),
        ("random", bytes(range(256)) * 64, "f.yaml:1", "binary file"),
        ("elf", b"\x7fELF\x02\x01\x01" + b"\xff" * 4000, "f.yaml:1", "not valid UTF-8"),
    ],
)
def test_binary_and_bad_encodings(
    tmp_path: Path, name: str, data: bytes, where: str, needle: str
) -> None:
    # In-process: these are plain reads (the subprocess cases above cover crashes and memory).
    (tmp_path / "f.yaml").write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    code = main(["images", str(tmp_path / "f.yaml")], stdout=out, stderr=err)
    where = f"{tmp_path}/{where}"  # named as given: here an absolute path
    clear_error(Run(code, out.getvalue(), err.getvalue(), 0.0, 0.0), where, needle)


def test_bad_encodings_on_stdin(tmp_path: Path) -> None:
    clear_error(images("-", tmp_path, stdin=b"kind: A\n\xff\xfe"), "<stdin>:2", "not valid UTF-8")
    clear_error(images("-", tmp_path, stdin=b"kind: A\n\x00"), "<stdin>:2", "NUL")


def test_a_bad_file_in_a_directory_is_named_as_the_user_can_open_it(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "sub").mkdir(parents=True)
    (base / "a.yaml").write_text(CM.format(name="a"))
    (base / "sub" / "b.yaml").write_bytes(b"kind: A\n\n\xc3\x28\n")
    clear_error(images(base, tmp_path), "base/sub/b.yaml:3", "not valid UTF-8 (byte 0xc3")


# -- odd file system objects -----------------------------------------------------------------


def test_symlink_loops_in_a_directory_base(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "a.yaml").write_text(CM.format(name="a"))
    (base / "self").symlink_to(".")  # a directory loop: not followed
    (base / "up").symlink_to("..")
    run = images(base, tmp_path)
    assert run.code == 0 and run.cpu < 5 and run.seconds < 30, run.err
    (base / "x.yaml").symlink_to("y.yaml")  # a file loop: an error naming it
    (base / "y.yaml").symlink_to("x.yaml")
    clear_error(images(base, tmp_path), "base/x.yaml", "Too many levels of symbolic links")


def test_symlink_loop_in_a_kustomize_base(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "loop").symlink_to("loop")
    (base / "kustomization.yaml").write_text("resources:\n- loop\n")
    clear_error(images(base, tmp_path), "base/kustomization.yaml:2", "does not exist")


def test_fifo_and_device_in_a_directory_do_not_hang(tmp_path: Path) -> None:
    # Regression: opening a FIFO named *.yaml blocked forever; /dev/zero read 64 MB.
    base = tmp_path / "base"
    base.mkdir()
    (base / "a.yaml").write_text(CM.format(name="a"))
    os.mkfifo(base / "p.yaml")
    run = images(base, tmp_path)
    clear_error(run, "base/p.yaml", "not a regular file")
    assert run.cpu < 5 and run.seconds < 30
    os.unlink(base / "p.yaml")
    (base / "z.yaml").symlink_to("/dev/zero")
    run = images(base, tmp_path)
    clear_error(run, "base/z.yaml", "not a regular file")
    assert run.rss_mb < SMALL_RSS_MB


def test_a_named_pipe_given_explicitly_is_read(tmp_path: Path) -> None:
    # `kotsrewrite images <(helm template ...)` passes /dev/fd/N: a pipe the user named.
    fifo = tmp_path / "in.yaml"
    os.mkfifo(fifo)
    text = CM.format(name="a").encode()

    def feed() -> None:
        with fifo.open("wb") as fh:
            fh.write(text)

    writer = threading.Thread(target=feed)
    writer.start()
    run = images(fifo, tmp_path)
    writer.join(5)
    assert run.code == 0, run.err


@pytest.mark.slow
def test_directory_of_10000_small_files(tmp_path: Path) -> None:
    base = tmp_path / "base"
    for d in range(10):
        (base / f"d{d}").mkdir(parents=True)
    pod = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p{i}\nspec:\n  containers:\n"
        "  - name: c\n    image: quay.io/acme/app{j}:1.0\n"
    )
    for i in range(10_000):
        (base / f"d{i % 10}" / f"f{i:05}.yaml").write_text(pod.format(i=i, j=i % 50))
    run = images(base, tmp_path)
    assert run.code == 0, run.err
    data = json.loads(run.out)
    assert len(data["images"]) == 50
    assert sum(len(i["locations"]) for i in data["images"]) == 10_000
    assert run.cpu < 20 and run.seconds < 120 and run.rss_mb < 400, run
