"""Golden relocation cases (``rewrite --registry``), built with real ``kubectl kustomize``.

One base (``tests/fixtures/relocate/base``) holds every kind of image a relocation must
rename: Docker Hub short names and two spellings of one repository, tag+digest, digest only,
no tag at all, a source registry with a port, a Replicated registry image, an image already
on the proxy, an ephemeral container (renamed through a ``configurations`` file), and two
repositories named ``api`` on different registries (a collision in ``flat``). Each case under
``cases/<name>/`` gives the flags (``case.json``) and the midstream expected byte for byte
(``expected/``, ``copy-plan.json`` included). Regenerate after an intended change with::

    KOTSREWRITE_REGEN=1 .venv/bin/pytest tests/test_relocate_golden.py
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from kotsrewrite import ImageRef
from kotsrewrite._cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "relocate"
CASES = sorted(p.name for p in (FIXTURES / "cases").iterdir() if (p / "case.json").is_file())
REGEN = os.environ.get("KOTSREWRITE_REGEN") == "1"
KUBECTL = shutil.which("kubectl")
LICENSE = "LIC-relocate-9f2"
PASSWORD = "s3cr3t-pw"  # in tests/fixtures/relocate/auth.json for reg.example.com[:5443]
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _rewrite(args: list[str], tmp: Path) -> tuple[Path, str, str]:
    shutil.copytree(FIXTURES / "base", tmp / "base")
    out = tmp / "midstream"
    argv = [
        "rewrite",
        str(tmp / "base"),
        "--app-slug",
        "acme",
        "--license-id",
        LICENSE,
        "--known-images",
        str(FIXTURES / "known-images.yaml"),
        "--offline",
        "--registry-auth",
        str(FIXTURES / "auth.json"),
        "--out",
        str(out),
        "--report",
        "-",
        *args,
    ]
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(argv, stdout=stdout, stderr=stderr)
    assert code == 0, stderr.getvalue()
    return out, stdout.getvalue(), stderr.getvalue()


def _build(directory: Path) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    proc = subprocess.run(
        [KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in YAML(typ="safe", pure=True).load_all(proc.stdout) if d]


def _containers(node: Any, path: str = "") -> dict[str, tuple[str, dict[str, Any] | None]]:
    """``{path of the image: (image, the PodSpec holding it)}`` for every container."""
    found: dict[str, tuple[str, dict[str, Any] | None]] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            if key in CONTAINER_LISTS and isinstance(value, list):
                for i, c in enumerate(value):
                    found[f"{path}/{key}/{i}"] = (c["image"], node)
            else:
                found |= _containers(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found |= _containers(value, f"{path}/{i}")
    return found


def _key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']}/{meta.get('namespace', '')}/{meta['name']}"


@pytest.mark.kustomize
@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
@pytest.mark.parametrize("case", CASES)
def test_relocation_golden(case: str, tmp_path: Path) -> None:
    spec = json.loads((FIXTURES / "cases" / case / "case.json").read_text())
    out, report_text, stderr = _rewrite(spec["args"], tmp_path)
    got = _tree(out)
    expected_dir = FIXTURES / "cases" / case / "expected"
    if REGEN:
        shutil.rmtree(expected_dir, ignore_errors=True)
        for rel, text in got.items():
            (expected_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (expected_dir / rel).write_text(text, encoding="utf-8")
    assert got == _tree(expected_dir)
    for rel in got:  # the pull secrets hold the customer's password: 0600
        if rel.startswith("pull-secret"):
            assert (out / rel).stat().st_mode & 0o777 == 0o600, rel
    for secret in (LICENSE, PASSWORD):  # never printed, never in the report or the copy plan
        assert secret not in stderr and secret not in report_text
        assert secret not in got["copy-plan.json"]

    registry = spec["args"][spec["args"].index("--registry") + 1]
    host = registry.partition("/")[0]
    flat = "flat" in spec["args"]
    plan = json.loads(got["copy-plan.json"])
    assert plan["registry"] == registry and plan["layout"] == ("flat" if flat else "nested")
    destination = {s: e["destination"] for e in plan["images"] for s in e["sources"]}

    # verify accepts a relocated midstream: the customer's login, not the license, in the secret.
    verify_out, verify_err = io.StringIO(), io.StringIO()
    assert main(["verify", str(out)], stdout=verify_out, stderr=verify_err) == 0, (
        verify_out.getvalue() + verify_err.getvalue()
    )

    # The built midstream, object by object and container by container, against the base.
    base = {_key(o): o for o in _build(out / "base")}  # the snapshot of the input
    built = {_key(o): o for o in _build(out)}
    seen: set[str] = set()
    for key, obj in base.items():
        before = _containers(obj)
        after = _containers(built[key])
        assert before.keys() == after.keys()
        for path, (source, _) in before.items():
            image, pod_spec = after[path]
            seen.add(source)
            ref, src = ImageRef.parse(image), ImageRef.parse(source)  # the grammar accepts it
            assert image == destination[source], (key, path)
            assert ref.domain == host and image.startswith(registry + "/")
            assert (ref.tag, ref.digest) == (src.tag, src.digest), image  # kept exactly
            assert pod_spec is not None
            names = [s["name"] for s in pod_spec.get("imagePullSecrets") or []]
            assert names.count("acme-registry") == 1, (key, path)
    assert seen == set(destination)  # the plan lists exactly the images used

    # Names: nested keeps host and path (Docker Hub fully qualified); flat one level, with a
    # stable suffix on the two colliding `api` repositories only.
    if flat:
        for source in ("quay.io/a/api", "ghcr.io/b/api"):
            full = next(s for s in destination if s.startswith(source))
            suffix = hashlib.sha256(source.encode()).hexdigest()[:6]
            assert ImageRef.parse(destination[full]).name == f"{registry}/api-{suffix}"
        assert destination["nginx:1.27"] == f"{registry}/nginx:1.27"
        assert destination["busybox"] == f"{registry}/busybox"
    else:
        assert destination["nginx:1.27"] == f"{registry}/docker.io/library/nginx:1.27"
        assert destination["docker.io/library/nginx:1.26"].startswith(
            f"{registry}/docker.io/library/nginx:"
        )
        assert destination["localhost:5000/tools/migrate:1"] == (
            f"{registry}/localhost_5000/tools/migrate:1"
        )
    digest_only = next(s for s in destination if s.startswith("ghcr.io/b/api@"))
    assert ImageRef.parse(destination[digest_only]).tag is None

    # One secret per namespace that runs a relocated image, holding the customer's
    # credentials for the registry host and nothing else.
    secrets = [o for o in built.values() if o["kind"] == "Secret"]
    assert sorted(o["metadata"].get("namespace", "") for o in secrets) == ["", "tools"]
    for secret in secrets:
        assert secret["type"] == "kubernetes.io/dockerconfigjson"
        config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
        assert list(config["auths"]) == [host]
        entry = config["auths"][host]
        assert (entry["username"], entry["password"]) == ("customer", PASSWORD)
        assert base64.b64decode(entry["auth"]).decode() == f"customer:{PASSWORD}"

    # Pull sources: private images through the proxy with the license, public ones from
    # where they are, Replicated hosts with the license.
    pulls = {e["source"]: (e["pullFrom"], e["pullAuth"]) for e in plan["images"]}
    quay = next(s for s in pulls if s.startswith("quay.io/a/api"))
    assert pulls[quay] == ("proxy.replicated.com/proxy/acme/" + quay, "license")
    assert pulls["nginx:1.27"] == ("docker.io/library/nginx:1.27", "default")
    assert pulls["registry.replicated.com/acme/reporter:1.0"][1] == "license"


@pytest.mark.kustomize
def test_relocation_is_deterministic(tmp_path: Path) -> None:
    args = ["--registry", "reg.example.com/acme", "--registry-layout", "flat"]
    first, _, _ = _rewrite(args, tmp_path / "a")
    second, _, _ = _rewrite(args, tmp_path / "b")
    assert _tree(first) == _tree(second)
