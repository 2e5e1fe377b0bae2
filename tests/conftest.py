"""Shared fixtures: the registry lab (tests/lab.py), each registry started once per session.

Registries (all on 127.0.0.1, plain HTTP unless noted), each with images already pushed:

* ``anon_registry``: no auth. ``app:1.0``.
* ``basic_registry``: htpasswd (``Basic`` challenge). ``app:1.0``.
* ``token_registry``: token auth through ``lab_token_server``, whose policy makes
  ``public/*`` granted, ``private/*`` an empty grant (401 insufficient_scope) and
  ``refused/*`` refused at the token endpoint. ``public/app:1.0``, ``private/app:1.0``,
  ``refused/app:1.0``.
* ``tls_registry``: anonymous over https with a certificate from ``lab_ca`` (trustme);
  ``lab_ca_file`` is the CA's PEM path for ``--ca-file``. ``app:1.0``.

``registry.pushed`` maps ``repo:tag`` to the manifest digest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import lab

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".cache" / "bin"
# kubectl from scripts/setup, for machines without one (a kubectl on PATH comes first).
if (TOOLS / "kubectl").exists():
    os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), str(TOOLS)])

TOKEN_POLICY = {"public/*": "grant", "private/*": "empty", "refused/*": "refuse"}


def _need_registry() -> None:
    if not lab.have_registry():
        pytest.skip("docker-registry is not installed")


@pytest.fixture(scope="session")
def lab_ca() -> Any:
    """A trustme CA for TLS registries."""
    import trustme

    return trustme.CA()


@pytest.fixture(scope="session")
def lab_ca_file(lab_ca: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PEM file of :func:`lab_ca` (what ``--ca-file`` takes)."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    lab_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def lab_token_server() -> Iterator[lab.TokenServer]:
    """The session's token server (policy: see the module docstring)."""
    with lab.token_server(policy=TOKEN_POLICY, default="grant") as ts:
        yield ts


@pytest.fixture(scope="session")
def anon_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab.Registry]:
    """Anonymous registry with ``app:1.0``."""
    _need_registry()
    with lab.registry(workdir=tmp_path_factory.mktemp("anon")) as reg:
        reg.push("app", "1.0")
        yield reg


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab.Registry]:
    """htpasswd registry with ``app:1.0``."""
    _need_registry()
    with lab.registry(auth="htpasswd", workdir=tmp_path_factory.mktemp("basic")) as reg:
        reg.push("app", "1.0")
        yield reg


@pytest.fixture(scope="session")
def token_registry(
    lab_token_server: lab.TokenServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[lab.Registry]:
    """Token-auth registry with public, empty-grant and refused repositories."""
    _need_registry()
    with lab.registry(
        auth="token", token_server=lab_token_server, workdir=tmp_path_factory.mktemp("token")
    ) as reg:
        for repo in ("public/app", "private/app", "refused/app"):
            reg.push(repo, "1.0")
        yield reg


@pytest.fixture(scope="session")
def tls_registry(lab_ca: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab.Registry]:
    """Anonymous registry over https (trustme certificate) with ``app:1.0``."""
    _need_registry()
    with lab.registry(tls=lab_ca, workdir=tmp_path_factory.mktemp("tls")) as reg:
        reg.push("app", "1.0")
        yield reg


class Helm:
    """A real Helm binary from scripts/setup, with homes of its own (Helm 4: the
    ``helm-plugin/`` post-renderer plugin installed) and this checkout's ``kotsrewrite``
    first on PATH."""

    def __init__(self, major: int, binary: Path, home: Path) -> None:
        self.major = major
        self.binary = binary
        self.env = {
            **os.environ,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
            "HELM_DATA_HOME": str(home / "data"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
        }

    def run(self, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
        )


@pytest.fixture(scope="session", params=[3, 4], ids=["helm3", "helm4"])
def helm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """Real Helm 3.19 and Helm 4.3 (each test runs under both). Absent: skipped, except in CI
    (``CI=true``), where scripts/setup must have installed them."""
    major: int = request.param
    binary = TOOLS / f"helm{major}"
    if not binary.exists():
        message = f"{binary.relative_to(ROOT)} is missing: run scripts/setup"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    helm = Helm(major, binary, tmp_path_factory.mktemp(f"helm{major}-home"))
    if major == 4:
        proc = helm.run("plugin", "install", ROOT / "helm-plugin")
        assert proc.returncode == 0, proc.stderr
    return helm
