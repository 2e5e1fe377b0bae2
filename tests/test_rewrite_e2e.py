"""End to end: real registries from the lab (tests/conftest.py), the CLI, and kubectl kustomize."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kotsrewrite._cli import main
from tests import lab
from tests.name_proxy import NameProxy

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


@pytest.fixture()
def named_lab(
    monkeypatch: pytest.MonkeyPatch,
    anon_registry: lab.Registry,
    basic_registry: lab.Registry,
    token_registry: lab.Registry,
) -> Iterator[dict[str, lab.Registry]]:
    """The lab registries also as ``anon.lab``, ``basic.lab``, ``token.lab`` (no port: a
    proxied name cannot hold one), reached through a loopback proxy from the environment."""
    registries = {"anon.lab": anon_registry, "basic.lab": basic_registry}
    registries["token.lab"] = token_registry
    with NameProxy({name: reg.host for name, reg in registries.items()}) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        for name in ("http_proxy", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        yield registries


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_rewrite_with_real_registries(
    tmp_path: Path, named_lab: dict[str, lab.Registry], anon_registry: lab.Registry
) -> None:
    public = "token.lab/public/app:1.0"
    private = "token.lab/private/app:1.0"
    refused = "token.lab/refused/app:1.0"
    basic = "basic.lab/app:1.0"
    anon = anon_registry.ref("app", "1.0")  # public with a port: kept as it is
    missing = "anon.lab/missing:9"
    base = tmp_path / "base"
    base.mkdir()
    (base / "a.yaml").write_text(_deployment("a", [public, private, anon]))
    (base / "b.yaml").write_text(_deployment("b", [refused, basic, missing]))
    out, report = tmp_path / "mid", tmp_path / "report.json"
    argv = ["rewrite", str(base), "--app-slug", "lab", "--license-id", "LIC-E2E-SECRET"]
    argv += ["--out", str(out), "--report", str(report)]
    for host in (anon_registry.host, *named_lab):
        argv += ["--insecure-registry", host]
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


def test_private_image_on_a_registry_with_a_port_is_refused(
    tmp_path: Path, basic_registry: lab.Registry
) -> None:
    """Issue 13 (3): a private image on ``HOST:PORT`` would become
    ``proxy.replicated.com/proxy/SLUG/HOST:PORT/...``, which kubelet refuses (a ``:`` in a
    path component). Refused with FILE:LINE and a hint, exit 2, nothing written."""
    private = basic_registry.ref("team/app", "1.0")  # 401 Basic: private
    base = tmp_path / "base"
    base.mkdir()
    (base / "a.yaml").write_text(_deployment("a", ["nginx:1.27", private]))
    out = tmp_path / "mid"
    argv = ["rewrite", str(base), "--app-slug", "lab", "--license-id", "LIC-E2E-SECRET"]
    argv += ["--out", str(out), "--insecure-registry", basic_registry.host]
    argv += ["--known-images", str(_known(tmp_path, {"nginx:1.27": False}))]
    err = io.StringIO()
    assert main(argv, stdout=io.StringIO(), stderr=err) == 2, err.getvalue()
    first, hint = err.getvalue().splitlines()[-2:]
    assert first.startswith(
        f"kotsrewrite: error: {base / 'a.yaml'}:16: {private}: cannot be pulled"
    ), first
    assert "has a port" in first and hint.startswith("hint: ")
    assert not out.exists() and not (base / "kustomization.yaml").exists()


def _known(tmp_path: Path, images: dict[str, bool]) -> Path:
    path = tmp_path / "known.yaml"
    entries = "".join(
        f"  - image: {image}\n    isPrivate: {str(private).lower()}\n"
        for image, private in images.items()
    )
    path.write_text(
        "apiVersion: kots.io/v1beta1\nkind: Installation\nmetadata: {name: x}\n"
        f"spec:\n  knownImages:\n{entries}"
    )
    return path
