"""End to end: real registries from the lab (tests/conftest.py), the CLI, and kubectl kustomize."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from kotsrewrite._cli import main
from tests import lab

pytestmark = [pytest.mark.registry, pytest.mark.kustomize]


def _deployment(name: str, images: list[str]) -> str:
    containers = "".join(
        f'      - name: c{i}\n        image: "{img}"\n' for i, img in enumerate(images)
    )
    return (
        "apiVersion: apps/v1\nkind: Deployment\n"
        f"metadata:\n  name: {name}\n"
        f"spec:\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n"
        f"    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n{containers}"
    )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_rewrite_with_real_registries(
    tmp_path: Path,
    anon_registry: lab.Registry,
    basic_registry: lab.Registry,
    token_registry: lab.Registry,
) -> None:
    public = token_registry.ref("public/app", "1.0")
    private = token_registry.ref("private/app", "1.0")
    refused = token_registry.ref("refused/app", "1.0")
    basic = basic_registry.ref("app", "1.0")
    anon = anon_registry.ref("app", "1.0")
    missing = anon_registry.ref("missing", "9")
    base = tmp_path / "base"
    base.mkdir()
    (base / "a.yaml").write_text(_deployment("a", [public, private, anon]))
    (base / "b.yaml").write_text(_deployment("b", [refused, basic, missing]))
    out, report = tmp_path / "mid", tmp_path / "report.json"
    argv = ["rewrite", str(base), "--app-slug", "lab", "--license-id", "LIC-E2E-SECRET"]
    argv += ["--out", str(out), "--report", str(report)]
    for reg in (anon_registry, basic_registry, token_registry):
        argv += ["--insecure-registry", reg.host]
    err = io.StringIO()
    assert main(argv, stdout=io.StringIO(), stderr=err) == 0, err.getvalue()
    data = json.loads(report.read_text())
    verdicts = {e["image"]: (e["verdict"], e["action"]) for e in data["images"]}
    assert verdicts == {
        public: ("public", "keep"),
        private: ("private", "proxy"),
        refused: ("private", "proxy"),
        basic: ("private", "proxy"),
        anon: ("public", "keep"),
        missing: ("not_found", "proxy"),
    }
    assert f"warning: {missing}: not_found" in err.getvalue()
    assert "6 images: 3 private, 2 public, 1 unknown" in err.getvalue()
    assert "LIC-E2E-SECRET" not in report.read_text() + err.getvalue()
    assert all(e["evidence"]["probedAt"] for e in data["images"])

    built = subprocess.run(
        ["kubectl", "kustomize", str(out)], capture_output=True, text=True, check=True
    ).stdout
    assert f"image: proxy.replicated.com/proxy/lab/{private}\n" in built
    assert f"image: {public}\n" in built and f"image: {anon}\n" in built
    assert built.count("- name: lab-registry") == 2

    # The report is a cache: offline, nothing probed, the same midstream.
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    argv2 = [*argv, "--offline", "--known-images", str(report)]
    argv2[argv2.index("--report") + 1] = str(tmp_path / "r2.json")
    err2 = io.StringIO()
    assert main(argv2, stdout=io.StringIO(), stderr=err2) == 0, err2.getvalue()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    again = json.loads((tmp_path / "r2.json").read_text())
    sources = {e["image"]: e["evidence"]["source"] for e in again["images"]}
    assert sources[private] == "known-images"
    assert sources[missing] == "skipped"  # not_found is not cached: no verdict offline
