"""`kotsrewrite probe` end to end against the lab registries."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from kotsrewrite._cli import main
from tests import lab

pytestmark = pytest.mark.registry


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_probe_json_contract(token_registry: lab.Registry, anon_registry: lab.Registry) -> None:
    images = [
        token_registry.ref("public/app", "1.0"),
        token_registry.ref("private/app", "1.0"),
        anon_registry.ref("missing", "1.0"),
        anon_registry.ref("app", "1.0"),
    ]
    code, out, err = _cli(
        "probe",
        *images,
        "--format",
        "json",
        "--insecure-registry",
        token_registry.host,
        "--insecure-registry",
        anon_registry.host,
    )
    assert code == 0, err
    doc = json.loads(out)
    assert [i["image"] for i in doc["images"]] == images
    assert [i["verdict"] for i in doc["images"]] == ["public", "private", "not_found", "public"]
    ev = doc["images"][1]["evidence"]
    assert set(ev) >= {"reason", "steps", "elapsedMs", "source", "probedAt"}
    assert ev["steps"][-1]["status"] == 401 and ev["steps"][-1]["step"] == "manifest"
    assert "missing:1.0: not_found" in err and "warning" in err


def test_probe_table_and_on_unknown_fail(anon_registry: lab.Registry) -> None:
    ok, missing = anon_registry.ref("app", "1.0"), anon_registry.ref("missing", "1.0")
    code, out, _ = _cli("probe", ok, "--insecure-registry", anon_registry.host)
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["VERDICT", "IMAGE", "REASON"]
    assert row.startswith("public") and ok in row
    code, out, err = _cli(
        "probe", ok, missing, "--insecure-registry", anon_registry.host, "--on-unknown", "fail"
    )
    assert code == 1
    assert "neither public nor private" in err


def test_invalid_reference_exits_2() -> None:
    code, out, err = _cli("probe", "nginx:1.25", "Bad/Upper:1")
    assert code == 2 and out == ""
    first, hint = err.splitlines()
    assert first.startswith("kotsrewrite: error: IMAGE argument 2: invalid image reference")
    assert hint.startswith("hint: ")


@pytest.mark.parametrize("flag", [["--timeout", "0"], ["--concurrency", "-1"]])
def test_bad_flags_exit_2(flag: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli("probe", "nginx", *flag)  # usage errors go to main's stderr stream
    assert capsys.readouterr().err == ""
    assert code == 2 and "must be positive" in err and "hint:" in err


def test_bad_ca_file_exits_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    code, _, err = _cli("probe", "nginx", "--ca-file", str(bad))
    assert code == 2
    assert "--ca-file" in err and "hint:" in err


def test_console_entry_point(tls_registry: lab.Registry, lab_ca_file) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kotsrewrite",
            "probe",
            tls_registry.ref("app", "1.0"),
            "--ca-file",
            str(lab_ca_file),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["images"][0]["verdict"] == "public"
