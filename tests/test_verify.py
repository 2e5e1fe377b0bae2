"""``kotsrewrite verify`` and ``rewrite --verify``: real kubectl kustomize, golden midstreams
(ok) and deliberately broken ones (exit 1 naming the problem)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

import kotsrewrite
from kotsrewrite._cli import main

from .test_rewrite_golden import CASES, _run_case

pytestmark = [
    pytest.mark.kustomize,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed"),
]


def _verify(directory: Path, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["verify", str(directory), *extra], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("case", CASES)
def test_golden_midstreams_verify(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, spec = _run_case(case, tmp_path, monkeypatch)
    args = spec["args"]
    # The secret without a namespace is in the app namespace: verify is told which one.
    told = ["--namespace", args[args.index("--namespace") + 1]] if "--namespace" in args else []
    code, stdout, stderr = _verify(out, *told)
    assert (code, stdout) == (0, ""), stderr
    assert ": ok:" in stderr


def _registries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    out, _ = _run_case("registries", tmp_path, monkeypatch)
    return out


def test_removed_patch_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _registries(tmp_path, monkeypatch)
    k = out / "kustomization.yaml"
    text = k.read_text()
    k.write_text(text[: text.index("patches:")])
    code, stdout, _ = _verify(out)
    assert code == 1
    assert "Deployment acme/api spec.template.spec: pulls proxy.replicated.com/" in stdout
    assert "imagePullSecrets lacks acme-registry" in stdout


def test_duplicated_secret_entry_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _registries(tmp_path, monkeypatch)
    k = out / "kustomization.yaml"
    text = k.read_text()
    # A second patch appending the secret again.
    k.write_text(
        text
        + "- target: {group: apps, version: v1, kind: Deployment, name: api}\n"
        + "  patch: |\n"
        + "    - op: add\n"
        + "      path: /spec/template/spec/imagePullSecrets/-\n"
        + "      value: {name: acme-registry}\n"
    )
    code, stdout, _ = _verify(out)
    assert code == 1
    assert "imagePullSecrets lists acme-registry 2 times" in stdout


def test_duplicated_secret_object_fails_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _registries(tmp_path, monkeypatch)
    shutil.copy(out / "pull-secret.yaml", out / "pull-secret-copy.yaml")
    k = out / "kustomization.yaml"
    k.write_text(
        k.read_text().replace(
            "- pull-secret.yaml\n", "- pull-secret.yaml\n- pull-secret-copy.yaml\n"
        )
    )
    code, stdout, _ = _verify(out)
    assert code == 1
    assert stdout.startswith("kustomize cannot build the midstream:")


def test_lost_tag_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _registries(tmp_path, monkeypatch)
    k = out / "kustomization.yaml"
    text = k.read_text()
    # A newTag collapses every tag of the repository (the KOTS pitfall we avoid).
    k.write_text(
        text.replace(
            "newName: proxy.replicated.com/proxy/acme/quay.io/acme/api\n",
            "newName: proxy.replicated.com/proxy/acme/quay.io/acme/api\n  newTag: latest\n",
        )
    )
    code, stdout, _ = _verify(out)
    assert code == 1
    assert ":latest, expected proxy.replicated.com/proxy/acme/quay.io/acme/api:" in stdout


def _drop_api_entry(k: Path) -> None:
    lines = k.read_text().splitlines(keepends=True)
    i = next(n for n, line in enumerate(lines) if line.startswith("- name: quay.io/acme/api"))
    k.write_text("".join(lines[:i] + lines[i + 2 :]))


def test_missing_rename_and_license_never_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _registries(tmp_path, monkeypatch)
    _drop_api_entry(out / "kustomization.yaml")
    (out / "pull-secret.yaml").write_text(
        (out / "pull-secret.yaml").read_text().replace("dockerconfigjson\n", "opaque\n", 1)
    )
    code, stdout, stderr = _verify(out)
    assert code == 1
    assert "was not renamed" not in stdout  # without the entry, nothing says it should be
    assert "type is 'kubernetes.io/opaque', not kubernetes.io/dockerconfigjson" in stdout
    assert "LIC-reg" not in stdout + stderr
    # With the plan, the decision itself is checked.
    result = kotsrewrite.rewrite(
        tmp_path / "work" / "base",
        kotsrewrite.RewriteOptions(app_slug="acme", license_id="LIC-reg", namespace="acme"),
        out=tmp_path / "other",
        known_images=kotsrewrite.load_known_images(
            Path(__file__).parent / "fixtures/midstream/registries/known-images.yaml"
        ),
        offline=True,
    )
    _drop_api_entry(result.output / "kustomization.yaml")
    checked = kotsrewrite.verify_midstream(result.output, result.plan)
    assert not checked.ok
    assert any("quay.io/acme/api" in p and "was not renamed" in p for p in checked.problems)
    assert all("LIC-reg" not in p for p in checked.problems)


def test_rewrite_verify_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _registries(tmp_path, monkeypatch)
    err = io.StringIO()
    argv = ["rewrite", str(tmp_path / "work" / "base"), "--app-slug", "acme"]
    argv += ["--license-id", "LIC-reg", "--namespace", "acme", "--offline", "--verify"]
    argv += [
        "--known-images",
        str(Path(__file__).parent / "fixtures/midstream/registries/known-images.yaml"),
    ]
    argv += ["--out", str(out)]
    assert main(argv, stdout=io.StringIO(), stderr=err) == 0, err.getvalue()
    assert "verify:" in err.getvalue() and ": ok:" in err.getvalue()


def test_usage_errors_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, stderr = _verify(tmp_path / "missing")
    assert code == 2 and "hint:" in stderr
    code, _, stderr = _verify(tmp_path)
    assert code == 2 and "no kustomization.yaml" in stderr
    out = _registries(tmp_path, monkeypatch)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, _, stderr = _verify(out)
    assert code == 2
    assert "neither kubectl nor kustomize" in stderr and "hint: install kubectl" in stderr
