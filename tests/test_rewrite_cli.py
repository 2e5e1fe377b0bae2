"""`kotsrewrite rewrite` errors, refusals, dry run and policy (offline, no registries)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from kotsrewrite._cli import main

FIX = Path(__file__).parent / "fixtures" / "midstream" / "registries"
ARGS = ["--app-slug", "acme", "--license-id", "LIC-SECRET-9", "--offline"]
KNOWN = ["--known-images", str(FIX / "known-images.yaml")]


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A copy of the fixture base (a plain directory, snapshotted into each midstream)."""
    return Path(shutil.copytree(FIX / "base", tmp_path / "base"))


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_bad_input_writes_nothing_and_names_file_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = tmp_path / "base"
    base.mkdir()
    (base / "ok.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n")
    (base / "bad.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec:\n  containers:\n"
        '  - name: c\n    image: "Quay.io/UPPER/Case:1"\n'
    )
    code, _, err = _run(["rewrite", "base", *ARGS, "--out", str(tmp_path / "mid")])
    assert code == 2
    # Named as the user can open it from where they ran the command, not within the base.
    assert err.startswith("kotsrewrite: error: base/bad.yaml:7:"), err
    assert not (tmp_path / "mid").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]  # no temp dir left
    assert sorted(p.name for p in base.iterdir()) == ["bad.yaml", "ok.yaml"]  # no kustomization


def test_refuses_foreign_directory_without_force(tmp_path: Path, base: Path) -> None:
    out = tmp_path / "mid"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    code, _, err = _run(["rewrite", str(base), *ARGS, *KNOWN, "--out", str(out)])
    assert code == 2 and "not written by kotsrewrite" in err and "--force" in err
    assert (out / "mine.txt").read_text() == "keep me"
    code, _, err = _run(["rewrite", str(base), *ARGS, *KNOWN, "--out", str(out), "--force"])
    assert code == 0, err
    assert not (out / "mine.txt").exists() and (out / ".kotsrewrite").is_file()


def test_refuses_to_overwrite_the_input(tmp_path: Path, base: Path) -> None:
    code, _, err = _run(["rewrite", str(tmp_path / "base"), *ARGS, *KNOWN, "--out", str(tmp_path)])
    assert code == 2 and "holding the input" in err
    assert (tmp_path / "base" / "svc.yml").is_file()
    assert not (base / "kustomization.yaml").exists()
    assert sorted(p.name for p in base.iterdir()) == ["apps", "svc.yml"]


def test_dry_run_prints_plan_and_writes_nothing(tmp_path: Path, base: Path) -> None:
    out = tmp_path / "mid"
    code, stdout, err = _run(["rewrite", str(base), *ARGS, *KNOWN, "--out", str(out), "--dry-run"])
    assert code == 0, err
    assert not out.exists()
    assert not (base / "kustomization.yaml").exists()
    assert f"(base copied with its own kustomization into {out}/base)" in err
    assert "base kustomization" not in err
    assert "kustomization.yaml\n" in stdout and "pull-secret.yaml\n" in stdout
    assert "base/apps/api.yaml\n" in stdout and "base/svc.yml\n" in stdout
    assert (
        "proxy       private      quay.io/acme/api:1.2.3 ->"
        " proxy.replicated.com/proxy/acme/quay.io/acme/api:1.2.3" in stdout
    )
    assert "keep        public       quay.io/prometheus/node-exporter:v1.8.0" in stdout
    assert "LIC-SECRET-9" not in stdout + err


def test_on_unknown_fail_exits_1_and_public_keeps(tmp_path: Path, base: Path) -> None:
    out = tmp_path / "mid"
    code, _, err = _run(["rewrite", str(base), *ARGS, "--out", str(out), "--on-unknown", "fail"])
    assert code == 1 and "quay.io/acme/api:1.2.3 (no verdict)" in err
    assert not out.exists()
    assert not (base / "kustomization.yaml").exists()
    code, _, err = _run(["rewrite", str(base), *ARGS, "--out", str(out), "--on-unknown", "public"])
    assert code == 0 and "treated as public" in err
    assert "images:" not in (out / "kustomization.yaml").read_text()


def test_license_and_application_files(tmp_path: Path, base: Path) -> None:
    lic = tmp_path / "license.yaml"
    lic.write_text(
        "apiVersion: kots.io/v1beta1\nkind: License\nmetadata: {name: l}\n"
        "spec:\n  licenseID: LIC-FROM-FILE\n  appSlug: fromfile\n"
    )
    app = tmp_path / "app.yaml"
    app.write_text(
        "apiVersion: kots.io/v1beta1\nkind: Application\nmetadata: {name: a}\n"
        "spec:\n  additionalNamespaces: [extra]\n  proxyPublicImages: true\n"
    )
    out = tmp_path / "mid"
    code, stdout, err = _run(
        [
            "rewrite",
            str(base),
            "--license",
            str(lic),
            "--application",
            str(app),
            "--out",
            str(out),
            "--offline",
            "--report",
            "-",
        ]
    )
    assert code == 0, err
    assert '"action": "keep"' not in stdout  # proxyPublicImages: every image proxied
    assert (out / "pull-secret-extra.yaml").is_file()
    assert "fromfile-registry" in (out / "pull-secret.yaml").read_text()
    assert "LIC-FROM-FILE" not in stdout + err


def test_missing_license_is_usage_error(tmp_path: Path, base: Path) -> None:
    code, _, err = _run(["rewrite", str(base), "--app-slug", "acme"])
    assert code == 2 and "--license-id: no license ID" in err and "hint:" in err
