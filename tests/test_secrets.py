"""The license ID never leaks: not in stdout, stderr, the report, other files, errors or reprs.

Every golden midstream case (tests/fixtures/midstream/) is run with a distinctive license ID,
in-process (``kotsrewrite._cli.main``) and as a subprocess, with ``--report -``, with
``--dry-run``, with ``--verbose`` when the CLI has it, and with bad input that fails. The ID is
searched raw, in every base64 alignment (so a base64 blob that merely *contains* it is
caught), and inside every base64-looking token decoded up to twice (the pull secret's
``.dockerconfigjson`` is base64 of JSON that holds base64 ``auth``). The pull-secret files are
the one place it belongs: they must hold it (that also proves the detector works), mode 0600.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import kotsrewrite
from kotsrewrite._cli import build_parser, main
from kotsrewrite._render import is_secret_file

FIXTURES = Path(__file__).parent / "fixtures" / "midstream"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "case.json").is_file())
LICENSE = "2sQxLk9TqZ7mWvB4nR8cYdPfHj3"  # distinctive, 27 characters


def _rewrite_help() -> str:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return str(action.choices["rewrite"].format_help())
    raise AssertionError("no subcommands")


HAS_VERBOSE = "--verbose" in _rewrite_help()


def _cores(secret: str) -> list[str]:
    """Substrings present in any base64 encoding of any text containing ``secret``."""
    raw = secret.encode()
    cores = []
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * shift + raw).decode()
            skip = -(-shift * 4 // 3)  # characters touched by the padding bytes
            cores.append(text[skip + 1 : -4])
    return cores


CORES = _cores(LICENSE)
_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")


def leaks(text: str, depth: int = 2) -> bool:
    """Whether ``text`` reveals the license ID raw, base64-encoded, or base64 of base64."""
    if LICENSE in text or any(core in text for core in CORES):
        return True
    if depth == 0:
        return False
    for token in _TOKEN.findall(text):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                inner = decode(token + "=" * (-len(token) % 4)).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                continue
            if leaks(inner, depth - 1):
                return True
    return False


def test_the_detector_finds_every_form() -> None:
    auth = base64.b64encode(f"LICENSE_ID:{LICENSE}".encode()).decode()
    config = json.dumps({"auths": {"p": {"auth": auth, "password": LICENSE}}})
    assert leaks(LICENSE) and leaks(auth) and leaks(f"x{auth}y")
    assert leaks(base64.b64encode(config.encode()).decode())
    assert leaks(base64.b64encode(json.dumps({"auth": auth}).encode()).decode())
    assert leaks(base64.urlsafe_b64encode(b"ab" + LICENSE.encode()).decode())
    assert not leaks(LICENSE[:-1] + "X" + " " + base64.b64encode(b"LICENSE_ID:").decode())


def _args(case: str) -> tuple[dict[str, Any], list[str]]:
    spec = json.loads((FIXTURES / case / "case.json").read_text())
    args = list(spec["args"])
    args[args.index("--license-id") + 1] = LICENSE
    return spec, args


def _prepare(case: str, work: Path) -> tuple[str, str | None]:
    """Copy the case input into ``work``; (path argument, stdin text)."""
    src = FIXTURES / case
    spec = json.loads((src / "case.json").read_text())
    work.mkdir(parents=True, exist_ok=True)
    if "tree" in spec:  # a kustomization inside a tree of them
        shutil.copytree(src / spec["tree"], work / Path(spec["tree"]).name)
        return str(work / spec["input"]), None
    if spec["input"] == "-":
        return "-", (src / spec["stdin"]).read_text()
    if (src / spec["input"]).is_dir():
        shutil.copytree(src / spec["input"], work / "base")
        return str(work / "base"), None
    shutil.copy(src / spec["input"], work / spec["input"])
    return str(work / spec["input"]), None


def _check_tree(out: Path, root: Path | None = None) -> int:
    """No leak outside ``out``'s pull-secret files; those hold it, 0600; nothing world-writable.

    ``root`` (default ``out``) is walked: everything else under it must be clean too.
    """
    secrets = 0
    for path in sorted((root or out).rglob("*")):
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert not mode & 0o002, f"{path} is world-writable"
        if not path.is_file():
            continue
        rel = path.relative_to(out).as_posix() if path.is_relative_to(out) else str(path)
        text = path.read_text()
        if path.is_relative_to(out) and is_secret_file(rel):
            secrets += 1
            assert mode == 0o600, f"{rel}: {oct(mode)}"
            assert leaks(text), f"{rel} should hold the license (detector check)"
        else:
            assert not leaks(text), f"license ID in {rel}"
    return secrets


def _variants(case: str) -> list[list[str]]:
    # Every case writes with the report on stdout; a few also dry-run (and verbose, if any).
    extra = [["--report", "-", *(["--verbose"] if HAS_VERBOSE else [])]]
    if case in ("namespaces", "stdin", "custom-domain"):
        extra.append(["--dry-run", "--report", "-", *(["--verbose"] if HAS_VERBOSE else [])])
    return extra


@pytest.mark.parametrize("case", CASES)
def test_in_process_no_leak(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, args = _args(case)
    known = str(FIXTURES / case / "known-images.yaml")
    for i, extra in enumerate(_variants(case)):
        work = tmp_path / f"run{i}"
        path, stdin = _prepare(case, work)
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        out_dir = work / "midstream"
        argv = ["rewrite", path, *args, "--known-images", known, "--offline", "--out", str(out_dir)]
        out, err = io.StringIO(), io.StringIO()
        code = main([*argv, *extra], stdout=out, stderr=err)
        assert code == 0, err.getvalue()
        assert not leaks(out.getvalue()), f"stdout of {extra}"
        assert not leaks(err.getvalue()), f"stderr of {extra}"
        if "--report" in extra:
            report = json.loads(out.getvalue()[out.getvalue().index("{") :])
            assert report["images"], "the report was really written"
        if "--dry-run" in extra:
            assert not out_dir.exists()
        else:
            assert _check_tree(out_dir) >= 1
            assert _check_tree(out_dir, root=work) >= 1  # the base and its neighbours too


@pytest.mark.parametrize("case", ["namespaces", "stdin"])
def test_subprocess_no_leak_and_report_file(case: str, tmp_path: Path) -> None:
    _, args = _args(case)
    path, stdin = _prepare(case, tmp_path)
    report = tmp_path / "report.json"
    argv = [sys.executable, "-m", "kotsrewrite", "rewrite", path, *args]
    argv += ["--known-images", str(FIXTURES / case / "known-images.yaml"), "--offline"]
    argv += ["--out", str(tmp_path / "midstream"), "--report", str(report)]
    if HAS_VERBOSE:
        argv.append("--verbose")
    proc = subprocess.run(argv, input=stdin or "", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not leaks(proc.stdout) and not leaks(proc.stderr)
    assert not leaks(report.read_text()) and json.loads(report.read_text())["images"]
    assert _check_tree(tmp_path / "midstream") >= 1
    assert stat.S_IMODE(report.stat().st_mode) & 0o002 == 0


BAD_BASE = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - image: [\n"


@pytest.mark.parametrize(
    "trouble",
    ["syntax", "bad-image", "bad-out", "license-file", "bad-flag", "whitespace-id"],
)
def test_errors_do_not_leak(trouble: str, tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "p.yaml").write_text(
        BAD_BASE
        if trouble == "syntax"
        else f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {LICENSE.lower()}}}\nspec:\n"
        f"  containers:\n  - name: c\n    image: quay.io/acme/app:1\n"
    )
    argv = ["rewrite", str(base), "--app-slug", "acme", "--license-id", LICENSE, "--offline"]
    if trouble == "bad-image":
        (base / "p.yaml").write_text(
            f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n"
            f"  - name: c\n    image: quay.io/{LICENSE}/app:1\n"  # uppercase: invalid
        )
    elif trouble == "bad-out":
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "mine.txt").write_text("not ours")
        argv += ["--out", str(tmp_path / "out")]
    elif trouble == "license-file":
        lic = tmp_path / "license.yaml"
        lic.write_text(
            "apiVersion: kots.io/v1beta1\nkind: License\nspec:\n"
            f"  appSlug: acme\n  licenseID: {LICENSE}: [\n"
        )
        argv = ["rewrite", str(base), "--license", str(lic), "--offline"]
    elif trouble == "bad-flag":
        argv += ["--on-unknown", "sometimes"]
    elif trouble == "whitespace-id":
        argv[argv.index(LICENSE)] = LICENSE + " x"
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    assert code == 2, err.getvalue()
    assert "Traceback" not in err.getvalue()
    if trouble == "bad-image":
        assert LICENSE in "".join(argv)  # the image itself holds the text: not a secret leak
    else:
        assert not leaks(out.getvalue() + err.getvalue()), err.getvalue()
    if trouble not in ("syntax", "license-file"):
        return  # the rest as a real process too, for two of them
    proc = subprocess.run(
        [sys.executable, "-m", "kotsrewrite", *argv], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert not leaks(proc.stdout + proc.stderr), proc.stderr


def test_reprs_and_exceptions_do_not_leak(tmp_path: Path) -> None:
    case = "namespaces"
    path, _ = _prepare(case, tmp_path)
    options = kotsrewrite.RewriteOptions(
        app_slug="acme",
        license_id=LICENSE,
        namespace="acme",
        additional_namespaces=("extra", "*"),
    )
    known = kotsrewrite.load_known_images(FIXTURES / case / "known-images.yaml")
    result = kotsrewrite.rewrite(
        path, options, out=tmp_path / "midstream", known_images=known, offline=True
    )
    things: list[Any] = [options, result, result.plan, *result.plan.secrets]
    things += [*result.plan.decisions, *result.plan.patches, *known]
    for thing in things:
        assert not leaks(repr(thing)) and not leaks(str(thing)), type(thing).__name__
    assert not leaks(json.dumps(result.report))
    assert not leaks(result.summary())
    assert any(leaks(text) for name, text in result.files.items() if is_secret_file(name))
    assert not any(leaks(text) for name, text in result.files.items() if not is_secret_file(name))
    # An error raised while the options are in scope does not carry them.
    (tmp_path / "bad.yaml").write_text(BAD_BASE)
    with pytest.raises(kotsrewrite.InputError) as info:
        kotsrewrite.rewrite(tmp_path / "bad.yaml", options, offline=True, dry_run=True)
    assert not leaks(repr(info.value)) and not leaks(str(info.value))
    with pytest.raises(kotsrewrite.InputError) as info:
        kotsrewrite.RewriteOptions(app_slug="a", license_id=LICENSE + " x")
    assert not leaks(repr(info.value)) and not leaks(str(info.value))
    assert not leaks(repr(info.value.__context__)) and not leaks(repr(info.value.__cause__))


def test_secret_files_are_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    _, args = _args("namespaces")
    path, _ = _prepare("namespaces", tmp_path)
    argv = [sys.executable, "-m", "kotsrewrite", "rewrite", path, *args, "--offline"]
    argv += ["--known-images", str(FIXTURES / "namespaces" / "known-images.yaml")]
    argv += ["--out", str(tmp_path / "midstream")]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.umask(0o000),
    )
    assert proc.returncode == 0, proc.stderr
    assert _check_tree(tmp_path / "midstream") == 5


@pytest.mark.parametrize("command", ["rewrite", "verify", "copy"])
def test_internal_error_scrubs_a_license_read_from_the_license_file(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --license FILE (no --license-id), an internal error whose message holds the ID
    must not print it: the ID read from the file is scrubbed like the flag's."""
    lic = tmp_path / "license.yaml"
    lic.write_text(
        "apiVersion: kots.io/v1beta1\nkind: License\nmetadata: {name: l}\n"
        f"spec:\n  appSlug: acme\n  licenseID: {LICENSE}\n"
    )

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"something broke near {LICENSE}")

    if command == "rewrite":
        monkeypatch.setattr("kotsrewrite._rewrite.build_plan", boom)
        argv = ["rewrite", "-", "--license", str(lic), "--offline", "--dry-run"]
    elif command == "verify":
        monkeypatch.setattr("kotsrewrite._verify.verify_midstream", boom)
        argv = ["verify", str(tmp_path), "--license", str(lic), "--pull"]
    else:
        plan = Path(__file__).parent / "fixtures/relocate/cases/nested/expected/copy-plan.json"
        shutil.copy(plan, tmp_path / "copy-plan.json")
        monkeypatch.setattr("kotsrewrite._copy.copy_images", boom)
        argv = ["copy", str(tmp_path), "--license", str(lic)]
    monkeypatch.setattr(sys, "stdin", io.StringIO("apiVersion: v1\nkind: List\nitems: []\n"))
    for verbose in ([], ["--verbose"]):
        out, err = io.StringIO(), io.StringIO()
        code = main([*argv, *verbose], stdout=out, stderr=err)
        assert code == 1, err.getvalue()
        assert "internal error: RuntimeError: something broke near <license ID>" in err.getvalue()
        assert not leaks(out.getvalue() + err.getvalue())
