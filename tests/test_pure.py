"""The planner and the renderer are pure in fact: during ``build_plan`` and ``render_plan``
nothing opens, stats, lists or resolves a path (every way of touching the file system this
code could take raises), and what they need but cannot compute comes from the caller."""

from __future__ import annotations

import builtins
import io
import os
import pathlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

import kotsrewrite

ACME = Path(__file__).resolve().parent.parent / "examples" / "acme"
KUSTOMIZE_CASE = Path(__file__).parent / "fixtures" / "midstream" / "kustomize-staging" / "app"
OPTIONS = kotsrewrite.RewriteOptions(
    app_slug="acme-platform", license_id="fakeLicense", additional_namespaces=("acme-jobs",)
)


class TouchedFileSystem(AssertionError):
    """Raised by every patched file-system entry point."""


_OS_CALLS = (
    "open", "stat", "lstat", "listdir", "scandir", "getcwd", "readlink", "access", "walk",
)  # fmt: skip
_PATH_METHODS = (
    "open", "read_text", "read_bytes", "resolve", "stat", "lstat", "exists", "is_dir",
    "is_file", "iterdir", "glob", "rglob", "absolute", "readlink", "samefile", "cwd",
)  # fmt: skip


@contextmanager
def no_file_system() -> Iterator[list[str]]:
    """Make every file-system entry point raise (and record its name) inside the block."""
    touched: list[str] = []

    def trap(name: str) -> Any:
        def raising(*args: Any, **kwargs: Any) -> Any:
            touched.append(name)
            raise TouchedFileSystem(f"{name}{args!r}")

        return raising

    targets: list[tuple[Any, str]] = [(builtins, "open"), (io, "open")]
    targets += [(os, name) for name in _OS_CALLS]
    targets += [(pathlib.Path, name) for name in _PATH_METHODS]
    with pytest.MonkeyPatch.context() as patch:  # restores class attributes exactly
        for owner, name in targets:
            patch.setattr(owner, name, trap(f"{owner.__name__}.{name}"))
        yield touched


def test_the_guard_catches_reads_and_resolve(tmp_path: Path) -> None:
    """The guard itself: a read, a stat and a resolve each raise inside it, not after."""
    (tmp_path / "f").write_text("x")
    for touch in (
        lambda: open(tmp_path / "f").close(),
        lambda: (tmp_path / "f").read_text(),
        lambda: tmp_path.resolve(),
        lambda: os.stat(tmp_path),
    ):
        with no_file_system() as touched, pytest.raises(TouchedFileSystem):
            touch()
        assert touched
    assert (tmp_path / "f").read_text() == "x"


def _acme() -> tuple[kotsrewrite.Base, kotsrewrite.Inventory, list[kotsrewrite.ProbeResult]]:
    base = kotsrewrite.load_manifests(ACME / "manifests")
    inventory = kotsrewrite.find_images(base)
    known = kotsrewrite.load_known_images(ACME / "kots" / "installation.yaml")
    return base, inventory, known


def test_build_plan_touches_no_file() -> None:
    _, inventory, known = _acme()
    with no_file_system() as touched:
        plan = kotsrewrite.build_plan(inventory, known, OPTIONS)
    assert touched == []
    assert plan.renames, "the acme example renames private images"


def test_render_plan_of_a_directory_touches_no_file(tmp_path: Path) -> None:
    base, inventory, known = _acme()
    plan = kotsrewrite.build_plan(inventory, known, OPTIONS)
    texts = kotsrewrite.read_base_texts(base)
    with no_file_system() as touched:
        files = kotsrewrite.render_plan(plan, base, out_dir=tmp_path / "out", base_texts=texts)
    assert touched == []
    for name in base.files:
        assert files[f"base/{name}"] == (ACME / "manifests" / name).read_text(encoding="utf-8")
    assert "- base\n" in files["kustomization.yaml"]


def test_render_plan_snapshots_only_the_texts_given(tmp_path: Path) -> None:
    """What is copied into base/ is what the caller read, not what is on disk now."""
    base, inventory, known = _acme()
    plan = kotsrewrite.build_plan(inventory, known, OPTIONS)
    texts = {name: f"# given {name}\n" for name in base.files}
    files = kotsrewrite.render_plan(plan, base, out_dir=tmp_path, base_texts=texts)
    assert files["base/api.yaml"] == "# given api.yaml\n"


def test_render_plan_without_texts_says_what_to_pass(tmp_path: Path) -> None:
    base, inventory, known = _acme()
    plan = kotsrewrite.build_plan(inventory, known, OPTIONS)
    with no_file_system(), pytest.raises(ValueError, match=r"base_texts.*read_base_texts"):
        kotsrewrite.render_plan(plan, base, out_dir=tmp_path)
    partial = dict(kotsrewrite.read_base_texts(base))
    del partial["web.yaml"]
    with pytest.raises(ValueError, match=r"missing: web\.yaml"):
        kotsrewrite.render_plan(plan, base, out_dir=tmp_path, base_texts=partial)


def test_render_plan_of_stdin_touches_no_file(tmp_path: Path) -> None:
    text = (ACME / "manifests" / "api.yaml").read_text(encoding="utf-8")
    base = kotsrewrite.load_manifests("-", stdin=io.StringIO(text))
    inventory = kotsrewrite.find_images(base)
    plan = kotsrewrite.build_plan(inventory, [], kotsrewrite.RewriteOptions(
        app_slug="acme-platform", license_id="fakeLicense", proxy_all=True
    ))  # fmt: skip
    with no_file_system() as touched:
        files = kotsrewrite.render_plan(plan, base, out_dir="relative/is/fine")
    assert touched == []
    assert files["base/stdin.yaml"] == text


@pytest.mark.kustomize
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_render_plan_of_a_kustomization_uses_path_arithmetic_only(tmp_path: Path) -> None:
    shutil.copytree(KUSTOMIZE_CASE, tmp_path / "app")
    overlay = tmp_path / "app" / "overlays" / "staging"
    base = kotsrewrite.load_manifests(overlay)
    inventory = kotsrewrite.find_images(base)
    options = kotsrewrite.RewriteOptions(app_slug="acme", license_id="fake", proxy_all=True)
    plan = kotsrewrite.build_plan(inventory, [], options)
    absolute = attrs.evolve(base, root=overlay.resolve())
    out = (tmp_path / "deep" / "midstream").resolve()
    with no_file_system() as touched:
        files = kotsrewrite.render_plan(plan, absolute, out_dir=out)
    assert touched == []
    assert "- ../../app/overlays/staging\n" in files["kustomization.yaml"]
    # A relative path cannot be made relative to another without the current directory.
    with pytest.raises(ValueError, match="absolute"):
        kotsrewrite.render_plan(plan, base, out_dir="midstream")
    with pytest.raises(ValueError, match="absolute"):
        kotsrewrite.render_plan(plan, absolute, out_dir="midstream")
