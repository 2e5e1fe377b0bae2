"""What a user sees: usage errors, input errors, exit codes, --quiet, --verbose, internal errors.

Every error a user can cause prints ``kotsrewrite: error: ...`` naming the file:line or the
flag, then one ``hint:`` line, and exits 2 (usage, input) or 1 (policy).
"""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kotsrewrite._cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "acme"
LICENSE_ID = "2kQ9fakeLicenseId"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def assert_error(err: str, *, where: str, hint: str) -> None:
    """One error line naming ``where``, then exactly one hint line containing ``hint``."""
    lines = err.strip().splitlines()
    errors = [i for i, line in enumerate(lines) if "error:" in line]
    assert len(errors) == 1, err
    i = errors[0]
    assert where in lines[i], err
    assert i + 1 < len(lines) and lines[i + 1].startswith("hint: "), err
    assert hint in lines[i + 1], err
    assert lines[-1] == lines[i + 1], f"the hint must be the last line:\n{err}"


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    d = tmp_path / "manifests"
    d.mkdir()
    (d / "app.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n"
        "  containers:\n  - name: c\n    image: quay.io/acme/api:1\n"
    )
    return d


def test_unknown_flag_names_it_and_the_subcommand_help(
    capsys: pytest.CaptureFixture[str], manifests: Path
) -> None:
    code, out, err = run("rewrite", str(manifests), "--app-slg", "x")
    assert code == 2
    assert out == ""
    assert_error(err, where="--app-slg", hint="kotsrewrite rewrite --help")
    # argparse wrote to the stream given to main, not to the process's stderr
    assert capsys.readouterr() == ("", "")


def test_bad_choice_names_the_flag() -> None:
    code, _, err = run("probe", "nginx", "--on-unknown", "maybe")
    assert code == 2
    assert_error(err, where="--on-unknown", hint="kotsrewrite probe --help")


def test_help_goes_to_the_given_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run("rewrite", "--help")
    assert code == 0
    assert out.startswith("usage: kotsrewrite rewrite")
    assert "--quiet" in out and "--verbose" in out
    assert err == ""
    assert capsys.readouterr() == ("", "")


def test_missing_app_slug(manifests: Path) -> None:
    code, _, err = run("rewrite", str(manifests), "--license-id", LICENSE_ID, "--offline")
    assert code == 2
    assert_error(err, where="--app-slug", hint="--license FILE")


def test_missing_license_id(manifests: Path) -> None:
    code, _, err = run("rewrite", str(manifests), "--app-slug", "acme", "--offline")
    assert code == 2
    assert_error(err, where="--license-id", hint="--license FILE")


def test_missing_license_file(manifests: Path, tmp_path: Path) -> None:
    code, _, err = run("rewrite", str(manifests), "--license", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert_error(err, where="nope.yaml", hint="")


@pytest.mark.parametrize("command", ["images", "rewrite"])
def test_bad_image_field(command: str, manifests: Path) -> None:
    extra = ["--app-slug", "a", "--license-id", LICENSE_ID] if command == "rewrite" else []
    code, _, err = run(command, str(manifests), *extra, "--image-field", "no-path")
    assert code == 2
    assert_error(err, where="--image-field", hint="KIND:PATH")


def test_nonexistent_path(tmp_path: Path) -> None:
    code, _, err = run("images", str(tmp_path / "missing"))
    assert code == 2
    assert_error(err, where="missing", hint="directory")


def test_yaml_error_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n")
    code, _, err = run("images", str(bad))
    assert code == 2
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "bad.yaml:" in lines[0], err
    line_no = lines[0].split("bad.yaml:")[1].split(":")[0]
    assert line_no.isdigit() and 1 <= int(line_no) <= 5, err
    assert err.strip().splitlines()[-1].startswith("hint: ")


def test_invalid_reference_in_probe_names_the_argument() -> None:
    code, _, err = run("probe", "nginx", "Quay.io/ACME/API")
    assert code == 2
    assert_error(err, where="IMAGE argument 2", hint="lowercase")


def test_on_unknown_fail_exits_1(manifests: Path) -> None:
    # Offline with no known images: the image has no verdict, and "fail" refuses it.
    code, _, err = run(
        "rewrite",
        str(manifests),
        "--app-slug",
        "acme",
        "--license-id",
        LICENSE_ID,
        "--offline",
        "--on-unknown",
        "fail",
        "--dry-run",
    )
    assert code == 1, err
    assert "quay.io/acme/api:1" in err
    assert err.strip().splitlines()[-1].startswith("hint: ")
    assert LICENSE_ID not in err


def test_quiet_and_verbose_together_is_a_usage_error() -> None:
    code, _, err = run("-q", "images", ".", "--verbose")
    assert code == 2
    assert_error(err, where="--quiet and --verbose", hint="choose one")


def _rewrite_acme(
    tmp_path: Path, before: tuple[str, ...] = (), after: tuple[str, ...] = ()
) -> tuple[int, str, str]:
    """rewrite a copy of examples/acme, with flags ``before`` and ``after`` the subcommand."""
    import shutil

    acme = tmp_path / "acme"
    shutil.copytree(EXAMPLES, acme)
    return run(
        *before,
        "rewrite",
        str(acme / "manifests"),
        "--license",
        str(acme / "kots" / "license.yaml"),
        "--known-images",
        str(acme / "kots" / "installation.yaml"),
        "--offline",
        *after,
    )


def test_summary_names_counts_and_output(tmp_path: Path) -> None:
    code, out, err = _rewrite_acme(tmp_path)
    assert code == 0, err
    assert out == ""
    summary = [line for line in err.splitlines() if "images:" in line]
    assert len(summary) == 1, err
    line = summary[0]
    assert "10 images: 4 private, 5 public, 0 unknown" in line
    assert str(tmp_path / "acme" / "midstream") in line
    assert LICENSE_ID not in err


@pytest.mark.parametrize("position", ["global", "subcommand"])
def test_quiet_silences_all_but_errors(tmp_path: Path, position: str) -> None:
    if position == "global":
        code, out, err = _rewrite_acme(tmp_path, before=("-q",))
    else:
        code, out, err = _rewrite_acme(tmp_path, after=("--quiet",))
    assert code == 0
    assert (out, err) == ("", "")
    assert (tmp_path / "acme" / "midstream" / "kustomization.yaml").is_file()


def test_quiet_keeps_errors(tmp_path: Path) -> None:
    code, _, err = run("--quiet", "images", str(tmp_path / "missing"))
    assert code == 2
    assert_error(err, where="missing", hint="directory")


class _Registry(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(200 if "/public/" in self.path else 404)
        self.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("position", ["global", "subcommand"])
def test_verbose_logs_each_request(registry: str, position: str) -> None:
    images = [f"{registry}/public/app:1", f"{registry}/gone/app:1"]
    flags = ["--insecure-registry", registry]
    if position == "global":
        code, out, err = run("--verbose", "probe", *images, *flags)
        assert "public/app" in out
    else:
        code, _, err = run("probe", *images, *flags, "-v")
    assert code == 0, err
    requests = [line for line in err.splitlines() if line.startswith("kotsrewrite: probe: ")]
    assert len(requests) == 2, err
    assert any(
        f"HEAD http://{registry}/v2/public/app/manifests/1 -> 200 (" in r for r in requests
    ), err
    assert any(f"HEAD http://{registry}/v2/gone/app/manifests/1 -> 404 (" in r for r in requests)
    assert all(r.endswith(" ms)") for r in requests)
    # without --verbose: no request lines, and no progress (stderr is not a terminal)
    code, _, err = run("probe", *images, *flags)
    assert "kotsrewrite: probe:" not in err
    assert "\r" not in err and "probing" not in err


def test_internal_error_is_one_line_and_hides_the_license(
    monkeypatch: pytest.MonkeyPatch, manifests: Path
) -> None:
    def boom(*args: object, **kwargs: object) -> object:
        raise RuntimeError(f"unexpected state for {LICENSE_ID}")

    monkeypatch.setattr("kotsrewrite._rewrite.rewrite", boom)
    argv = ["rewrite", str(manifests), "--app-slug", "a", "--license-id", LICENSE_ID]
    code, _, err = run(*argv, "--offline")
    assert code == 1
    assert_error(err, where="internal error: RuntimeError", hint="please report")
    assert "Traceback" not in err
    assert LICENSE_ID not in err
    code, _, err = run(*argv, "--offline", "--verbose")
    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert LICENSE_ID not in err


def test_progress_is_drawn_on_a_terminal_only() -> None:
    from kotsrewrite import ProbeResult, Verdict, parse_image
    from kotsrewrite._model import Evidence
    from kotsrewrite._progress import ProbeProgress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    refs = [parse_image("quay.io/a/b:1"), parse_image("nginx:1")]
    for stream, drawn in ((Tty(), True), (io.StringIO(), False)):
        with ProbeProgress(refs, stream) as progress:
            for ref in refs:
                progress(
                    ProbeResult(image=ref, verdict=Verdict.PUBLIC, evidence=Evidence(reason="test"))
                )
        assert progress.done == 2
        assert ("probing" in stream.getvalue()) is drawn
