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

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import lab

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
