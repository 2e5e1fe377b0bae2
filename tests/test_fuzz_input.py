"""Fuzzing the input side: the YAML loader, image discovery, ImageRef.parse and ``images``.

Properties (hypothesis, derandomized and bounded so the file runs in ~10 s):

* ``load_manifests`` + ``find_images`` on random bytes, random YAML-ish text and mutated real
  manifests never raise anything but :class:`~kotsrewrite.InputError` (of which
  :class:`~kotsrewrite.InvalidReferenceError` is one); every error names the file, and a line
  within the file whenever it is about the content.
* ``ImageRef.parse`` on any text raises only ``InvalidReferenceError``; what it accepts
  re-parses to the same value.
* ``kotsrewrite images`` on fuzzed files exits 0 or 2 with no traceback, in-process and as a
  subprocess.
"""

from __future__ import annotations

import io
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kotsrewrite import ImageRef, InputError, InvalidReferenceError, find_images, load_manifests
from kotsrewrite._cli import main

FIXTURES = Path(__file__).parent / "fixtures"
REAL = sorted(
    p
    for sub in ("images", "midstream")
    for p in (FIXTURES / sub).rglob("*")
    if p.suffix in (".yaml", ".json") and p.is_file() and p.stat().st_size < 20_000
)
REAL_TEXTS = [p.read_bytes() for p in REAL]

FUZZ = settings(
    derandomize=True,
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)

_BREAKS = str.maketrans(dict.fromkeys("\r\x85\u2028\u2029", "\n"))
# Errors that are about the file as a whole and so carry no line.
_WHOLE_FILE = ("file too large", "cannot read", "no manifests")

_YAML_BITS = [
    "apiVersion: v1\n", "kind: Pod\n", "kind: List\n", "items:\n", "metadata:\n", "  name: x\n",
    "spec:\n", "  containers:\n", "  - name: c\n", "    image: ", "nginx", "quay.io/a/b:1",
    "@sha256:" + "a" * 64, "{{ .Values.x }}", "repl{{ x }}", "$(X)", "&a ", "*a", "<<: *a\n",
    "---\n", "...\n", "[", "]", "{", "}", ", ", ": ", "- ", "? ", "|\n", ">-\n", "'", '"', "#",
    "!!str ", "!!binary ", "!custom ", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "\t", "\n", "  ",
    "~", "null", "yes", "1.10", "0x1F", "\ufeff", "\x85", "\u2028", "\x07", "é", "😀",
]  # fmt: skip


def _check_load(path: Path, data: bytes) -> None:
    """Load ``data`` from ``path``; then find images. Only InputError, well located."""
    path.write_bytes(data)
    try:
        base = load_manifests(path)
        find_images(base)
    except InputError as exc:
        assert exc.file == str(path), (exc.file, exc)  # named as given
        assert exc.message and exc.hint, repr(exc)
        # YAML's line breaks: \n, \r, \r\n, and (decoded) NEL, LS and PS.
        text = data.decode("utf-8", "replace")
        lines = len(text.replace("\r\n", "\n").translate(_BREAKS).split("\n"))
        if exc.line is None:
            assert any(w in exc.message for w in _WHOLE_FILE) or "YAML error" in exc.message, repr(
                exc
            )
        else:
            assert 1 <= exc.line <= lines + 1, (exc.line, lines, repr(exc))


@FUZZ
@given(data=st.binary(max_size=600))
def test_loader_on_random_bytes(data: bytes) -> None:
    _check_load(_tmp() / "f.yaml", data)


@FUZZ
@given(parts=st.lists(st.sampled_from(_YAML_BITS), max_size=60))
def test_loader_on_yamlish_text(parts: list[str]) -> None:
    _check_load(_tmp() / "f.yaml", "".join(parts).encode("utf-8", "surrogatepass"))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(REAL_TEXTS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup", "bits"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.sampled_from(_YAML_BITS)).encode()
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 20))]
        elif op == "dup":
            data[at:at] = data[at : at + draw(st.integers(1, 200))]
        elif data:
            data[at] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@FUZZ
@given(data=mutated())
def test_loader_on_mutated_real_manifests(data: bytes) -> None:
    _check_load(_tmp() / "m.yaml", data)


@FUZZ
@given(text=st.text(max_size=300))
def test_loader_on_stdin_text(text: str) -> None:
    try:
        find_images(load_manifests("-", stdin=io.StringIO(text)))
    except InputError as exc:
        assert exc.file == "<stdin>", repr(exc)


# -- ImageRef.parse ---------------------------------------------------------------------------

_SUFFIXES = ["", ":1", ":latest", "@sha256:" + "a" * 64, ":v1@sha256:" + "0" * 64]
_SUFFIXES += ["@ha256:" + "a" * 64, "@sha512:" + "b" * 128, "@md5:" + "c" * 32, "@x:y"]
_REF_ALPHABET = "abcAZ09._-/:@+ \t\n\x00é"


@settings(derandomize=True, deadline=None, max_examples=400, database=None)
@given(
    text=st.one_of(
        st.text(max_size=80),
        st.text(_REF_ALPHABET, max_size=80),
        st.builds(
            lambda a, b, c: a + b + c,
            st.sampled_from(["", "localhost:5000/", "quay.io/", "docker.io/", "[::1]:5000/"]),
            st.text("abc-_./", min_size=0, max_size=30),
            st.sampled_from(_SUFFIXES),
        ),
    )
)
@example(text="ghcr.io/acme/worker@ha256:" + "0" * 64)  # was an uncaught DigestUnsupported
@example(text="a@md5:" + "0" * 32)
def test_parse_raises_only_invalid_reference(text: str) -> None:
    try:
        ref = ImageRef.parse(text)
    except InvalidReferenceError as exc:
        assert exc.message
        return
    again = ImageRef.parse(ref.original)
    assert again == ref
    assert ImageRef.parse(ref.normalized).normalized == ref.normalized
    assert ref.api_host and ref.repository and ref.manifest_reference
    assert ref.hub_spellings is not None and str(ref) == ref.original


# -- the CLI ------------------------------------------------------------------------------------


@FUZZ
@given(data=st.one_of(mutated(), st.binary(max_size=300)))
def test_images_cli_exits_0_or_2(data: bytes) -> None:
    path = _tmp() / "c.yaml"
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    code = main(["images", str(path), "--format", "json"], stdout=out, stderr=err)
    assert code in (0, 2), err.getvalue()
    if code == 2:
        assert err.getvalue().startswith(f"kotsrewrite: error: {path}"), err.getvalue()
        assert "\nhint: " in err.getvalue() and out.getvalue() == ""


def test_images_cli_subprocess_on_fuzzed_files(tmp_path: Path) -> None:
    # The same as a real process (no traceback on stderr, no crash) on seeded mutations.
    rng = random.Random(88)
    files = []
    for i in range(12):
        data = bytearray(rng.choice(REAL_TEXTS))
        for _ in range(rng.randint(1, 5)):
            at = rng.randrange(max(1, len(data)))
            data[at:at] = rng.choice(_YAML_BITS).encode()
        path = tmp_path / f"f{i}.yaml"
        path.write_bytes(bytes(data))
        files.append(path)
    script = (
        "import sys\nfrom kotsrewrite._cli import main\n"
        "for f in sys.argv[1:]:\n"
        "    print(f, main(['images', f, '--format', 'json'], stdout=open('/dev/null', 'w')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    codes = [int(line.rsplit(" ", 1)[1]) for line in proc.stdout.splitlines()]
    assert len(codes) == 12 and set(codes) <= {0, 2}
    assert 2 in codes  # the mutations do break some files
    for path in files[:1]:  # and through `python -m kotsrewrite` itself
        proc = subprocess.run(
            [sys.executable, "-m", "kotsrewrite", "images", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr, proc.stderr


_TMP: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def _scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One scratch directory for the module (hypothesis runs many examples per test)."""
    _TMP.append(tmp_path_factory.mktemp("fuzz"))
    yield
    _TMP.clear()


def _tmp() -> Path:
    return _TMP[0]
