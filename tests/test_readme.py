"""The README cannot drift: its CLI reference equals ``--help``, its Python example runs, and
every public name has a docstring.

Regenerate the help blocks after changing an option::

    .venv/bin/python -m tests.test_readme --update
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import kotsrewrite
from kotsrewrite._cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
COMMANDS = ("", "images", "probe", "rewrite", "post-render", "verify", "copy")
_HELP_BLOCK = re.compile(r"(<!-- help:(?P<cmd>[a-z-]*) -->\n```text\n)(?P<body>.*?)(```\n)", re.S)


@contextlib.contextmanager
def _columns(n: int) -> Iterator[None]:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(n)
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def help_text(command: str) -> str:
    """``kotsrewrite [COMMAND] --help`` as printed with COLUMNS=100."""
    out = io.StringIO()
    with _columns(100):
        code = main([*([command] if command else []), "--help"], stdout=out, stderr=out)
    assert code == 0
    return out.getvalue()


def readme_blocks(text: str, marker: str) -> list[str]:
    """The fenced blocks right after ``<!-- test:MARKER -->`` lines."""
    pattern = re.compile(rf"<!-- test:{marker} -->\n```[a-z]*\n(.*?)```\n", re.S)
    return pattern.findall(text)


def update(text: str) -> str:
    """The README with every help block regenerated."""
    return _HELP_BLOCK.sub(
        lambda m: m.group(1) + help_text(m.group("cmd")) + m.group(4),
        text,
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_help_block_matches(command: str) -> None:
    blocks = {m.group("cmd"): m.group("body") for m in _HELP_BLOCK.finditer(README.read_text())}
    assert command in blocks, f"README has no <!-- help:{command} --> block"
    assert blocks[command] == help_text(command), (
        f"README's help for {command or 'kotsrewrite'!r} is out of date:"
        " run .venv/bin/python -m tests.test_readme --update (argparse's layout also differs"
        " between Python versions; the README is generated with the project's Python)"
    )


def test_every_subcommand_is_documented() -> None:
    blocks = {m.group("cmd") for m in _HELP_BLOCK.finditer(README.read_text())}
    top = help_text("")
    listed = set(re.findall(r"^    ([a-z-]+) ", top, re.M))
    assert listed == set(COMMANDS) - {""}
    assert blocks == set(COMMANDS)


def test_setup_commands_stay_first() -> None:
    text = README.read_text()
    first = text.index("```sh\n")
    block = text[first : text.index("```\n", first + 6)]
    assert "scripts/setup" in block and "scripts/test" in block


def test_ci_runs_exactly_the_readme_commands() -> None:
    """.ci/run is the README's two commands, nothing more and nothing less."""
    text = README.read_text()
    first = text.index("```sh\n")
    block = text[first + 6 : text.index("```\n", first + 6)]
    readme = [line.split("#")[0].split() for line in block.splitlines()]
    readme = [words for words in readme if words]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line.split() for line in ci if line.startswith("bash ")]
    assert [words[1:] for words in commands] == readme


def test_python_example_runs(tmp_path: Path) -> None:
    (code,) = readme_blocks(README.read_text(), "python")
    demo = tmp_path / "demo" / "acme"
    shutil.copytree(ROOT / "examples" / "acme", demo, ignore=shutil.ignore_patterns("midstream"))
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "10 images: 4 private, 5 public, 0 unknown" in run.stdout
    assert (
        "proxy       quay.io/acme/api:2.4.1  "
        "proxy.replicated.com/proxy/acme-platform/quay.io/acme/api:2.4.1"
    ) in run.stdout
    assert (tmp_path / "demo" / "api-midstream" / "kustomization.yaml").is_file()


def test_every_public_name_has_a_docstring() -> None:
    missing = []
    for name in kotsrewrite.__all__:
        obj = getattr(kotsrewrite, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj) or callable(obj)):
            continue
        doc = inspect.getdoc(obj)
        if not doc or (inspect.isclass(obj) and doc == inspect.getdoc(obj.__mro__[1])):
            missing.append(name)
    assert not missing, f"public names without a docstring of their own: {missing}"
    assert kotsrewrite.__doc__ and "rewrite" in kotsrewrite.__doc__


def test_help_of_the_package_reads_well() -> None:
    text = subprocess.run(
        [
            sys.executable,
            "-c",
            "import kotsrewrite, pydoc; print(pydoc.render_doc(kotsrewrite,"
            " renderer=pydoc.plaintext))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    # Each public callable gets an entry of its own: a top-level line of pydoc's help (four
    # spaces in) "class Name(", "name(" or "async name(" (a mere mention such as "probe("
    # inside "probe_sync(", a method of a class, or "FieldSpec(" in a default value does not
    # count).
    missing = [
        name
        for name in kotsrewrite.__all__
        if callable(getattr(kotsrewrite, name))
        and not re.search(rf"^    (class |async )?{re.escape(name)}\(", text, re.MULTILINE)
    ]
    assert not missing, f"public names without an entry in pydoc's help: {missing}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        old = README.read_text()
        new = update(old)
        README.write_text(new)
        print("README.md help blocks", "updated" if new != old else "already up to date")
    else:
        print("usage: python -m tests.test_readme --update", file=sys.stderr)
        sys.exit(2)
