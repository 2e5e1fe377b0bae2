"""Issue 13: nothing lost, nothing invalid. One test (or more) per reproduction of the issue,
each failing on the code before its fix; the slow-pipe and property tests are in
``test_slow_pipe.py`` and ``test_roundtrip_props.py``."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml as pyyaml

from kotsrewrite import _render
from kotsrewrite._cli import main

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
SLUG = ["--app-slug", "acme", "--license-id", "LIC-13-SECRET-ID"]


def _run(argv: list[str], stdin: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    if stdin is not None:
        old = sys.stdin
        sys.stdin = io.StringIO(stdin)
    try:
        code = main(argv, stdout=out, stderr=err)
    finally:
        if stdin is not None:
            sys.stdin = old
    return code, out.getvalue(), err.getvalue()


def _cli(*args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    """``python -m kotsrewrite ARGS`` as a user runs it (real stdout, real exit code)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "kotsrewrite", *args], env=env, check=False, **kwargs
    )


def _known(path: Path, body: str) -> Path:
    path.write_text(
        "apiVersion: kots.io/v1beta1\nkind: Installation\nmetadata: {name: x}\n"
        "spec:\n  knownImages:\n" + body
    )
    return path


def _pod(name: str, image: str, namespace: str | None = None) -> str:
    ns = f"\n  namespace: {namespace}" if namespace else ""
    return (
        f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}{ns}\n"
        f"spec:\n  containers:\n  - name: c\n    image: {image}\n"
    )


# --------------------------------------------------------------------------------------------
# 2. post-render changes long string values (double-quoted scalar folding)

# A Grafana dashboard as monitoring charts ship it: long JSON on one line whose regular
# expressions hold backslashes (``\\d``), tabs between its tokens (valid JSON whitespace), so
# YAML must double quote it. ruamel folded it at its width right after an escape, and the
# fold read back as an extra space inside the escape: "Invalid \escape" in the dashboard.
_DASHBOARD = json.dumps(
    {
        "panels": [
            {
                "targets": [{"expr": 'sum(rate(x{path=~"\\d+ \\w+ \\\\"}[5m])) by (pod) '}],
                "title": f"panel {i}",
            }
            for i in range(60)
        ]
    },
    separators=(",\t", ": "),
)


# Where a fold lands depends on the column the value starts at: keys of 12 lengths.
_DATA = {f"k{'x' * n}": _DASHBOARD for n in range(12)}


def test_dump_yaml_keeps_long_backslash_runs() -> None:
    text = _render.dump_yaml({"data": _DATA})
    back = pyyaml.safe_load(text)["data"]
    assert back == _DATA
    for value in back.values():
        json.loads(value)


def test_post_render_keeps_a_grafana_dashboard_intact() -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "dashboards"},
        "data": {**_DATA, "spaces": "  a\\ b  " * 700},
    }
    code, out, err = _run(["post-render", *SLUG, "--offline"], stdin=json.dumps(config_map))
    assert code == 0, err
    (built,) = [d for d in pyyaml.safe_load_all(out) if d and d["kind"] == "ConfigMap"]
    assert built["data"] == config_map["data"]


# --------------------------------------------------------------------------------------------
# 3. a private image on a registry with a port (offline; the lab test is in test_rewrite_e2e)


def test_registry_with_a_port_refused_public_with_a_port_kept(tmp_path: Path) -> None:
    base = tmp_path / "app.yaml"
    base.write_text(
        _pod("a", "registry.example.com:5000/team/app:1.0")
        + "---\n"
        + _pod("b", "localhost:5000/tools/pub:2")
    )
    known = _known(
        tmp_path / "known.yaml",
        "  - {image: 'registry.example.com:5000/team/app:1.0', isPrivate: true}\n"
        "  - {image: 'localhost:5000/tools/pub:2', isPrivate: false}\n",
    )
    out = tmp_path / "mid"
    argv = ["rewrite", str(base), *SLUG, "--offline", "--known-images", str(known)]
    code, _, err = _run([*argv, "--out", str(out)])
    assert code == 2
    line, hint = err.splitlines()
    assert line.startswith(f"kotsrewrite: error: {base}:8: registry.example.com:5000/team/app:1.0")
    assert "not a valid image reference" in line and hint.startswith("hint: ")
    assert not out.exists()

    # The public image with a port alone is fine, and kept as it is.
    base.write_text(_pod("b", "localhost:5000/tools/pub:2"))
    code, _, err = _run([*argv, "--out", str(out)])
    assert code == 0, err
    assert "newName" not in (out / "kustomization.yaml").read_text()


# --------------------------------------------------------------------------------------------
# 4. verify: the distribution grammar on every built image; the secret's namespace


def _midstream(tmp_path: Path, new_name: str, namespace: str | None) -> Path:
    """A midstream as rewrite writes one: base copied, images entry, patch, secret."""
    mid = tmp_path / "mid"
    (mid / "base").mkdir(parents=True)
    (mid / "base" / "app.yaml").write_text(_pod("web", "quay.io/acme/web:1.0", namespace))
    (mid / "base" / "kustomization.yaml").write_text("resources:\n- app.yaml\n")
    auth = "TElDRU5TRV9JRDpMSUMtMTMtU0VDUkVULUlE"  # LICENSE_ID:LIC-13-SECRET-ID
    config = {
        "auths": {
            host: {"username": "LICENSE_ID", "password": "LIC-13-SECRET-ID", "auth": auth}
            for host in ("proxy.replicated.com", "registry.replicated.com")
        }
    }
    import base64

    blob = base64.b64encode(json.dumps(config).encode()).decode()
    (mid / "pull-secret.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: acme-registry\n"
        f"type: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {blob}\n"
    )
    target = f"    namespace: {namespace}\n" if namespace else ""
    (mid / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources:\n- base\n- pull-secret.yaml\n"
        "commonAnnotations:\n  kots.io/app-slug: acme\n"
        f"images:\n- name: quay.io/acme/web\n  newName: {new_name}\n"
        "patches:\n- target:\n    version: v1\n    kind: Pod\n    name: web\n"
        + target
        + "  patch: |\n    - op: add\n      path: /spec/imagePullSecrets\n"
        "      value:\n      - name: acme-registry\n"
    )
    return mid


@needs_kubectl
def test_verify_rejects_an_invalid_reference(tmp_path: Path) -> None:
    bad = "proxy.replicated.com/proxy/acme/registry.example.com:5000/team/web"
    code, out, err = _run(["verify", str(_midstream(tmp_path, bad, None))])
    assert code == 1, err
    assert f"Pod web spec.containers[0].image: '{bad}:1.0' is not a valid image reference" in out, (
        out
    )
    assert "LIC-13-SECRET-ID" not in out + err


@needs_kubectl
def test_verify_checks_the_secret_in_the_pods_own_namespace(tmp_path: Path) -> None:
    """The overlay of issue 13 (4): workloads moved to ``staging`` by ``namespace:``, the
    secret written without a namespace: applied with no ``-n`` (``default``) or with the
    app namespace, ``staging`` has no secret."""
    mid = _midstream(tmp_path, "proxy.replicated.com/proxy/acme/quay.io/acme/web", "staging")
    code, out, err = _run(["verify", str(mid)])
    assert code == 1, err
    assert out == (
        "Pod staging/web spec: no pull secret acme-registry in namespace staging where it runs\n"
    )
    code, out, err = _run(["verify", str(mid), "--namespace", "prod"])
    assert code == 1 and "in namespace staging" in out
    # Told that the app namespace is staging (kubectl apply -n staging), it is right.
    code, out, err = _run(["verify", str(mid), "--namespace", "staging"])
    assert (code, out) == (0, ""), out + err
    # A namespace-less Pod is in the namespace verify is told, `default` unless told.
    mid2 = _midstream(tmp_path / "2", "proxy.replicated.com/proxy/acme/quay.io/acme/web", None)
    assert _run(["verify", str(mid2)])[0] == 0
    assert _run(["verify", str(mid2), "--namespace", "apps"])[0] == 0


# --------------------------------------------------------------------------------------------
# 5 (and issue 21 a, b). known-images files fail closed, with FILE:LINE and a hint


@pytest.mark.parametrize(
    ("entry", "line", "message", "hint"),
    [
        (
            "  - image: quay.io/acme/web:1.0\n    private: true\n",
            7,
            "unknown key 'private' in a knownImages entry",
            "did you mean isPrivate?",
        ),
        (
            '  - image: quay.io/acme/web:1.0\n    isPrivate: "true"\n',
            7,
            "quay.io/acme/web:1.0: isPrivate must be true or false, not the string 'true'",
            "write isPrivate: true or isPrivate: false, without quotes",
        ),
        (
            "  - image: quay.io/acme/web:1.0\n",
            6,
            "quay.io/acme/web:1.0: knownImages entry has no isPrivate",
            "add isPrivate: true (pulled through the proxy) or isPrivate: false",
        ),
        (
            "  - image: quay.io/acme/web:1.0\n    isPrivate: true\n"
            "  - image: quay.io/Shopco/x:1\n    isPrivate: true\n",
            8,
            "invalid image reference 'quay.io/Shopco/x:1': repository name must be lowercase",
            None,
        ),
    ],
    ids=["typo-key", "string-bool", "missing-isPrivate", "invalid-reference"],
)
def test_known_images_file_is_validated(
    tmp_path: Path, entry: str, line: int, message: str, hint: str | None
) -> None:
    base = tmp_path / "app.yaml"
    base.write_text(_pod("web", "quay.io/acme/web:1.0"))
    known = _known(tmp_path / "known.yaml", entry)
    argv = ["rewrite", str(base), *SLUG, "--offline", "--known-images", str(known), "--dry-run"]
    code, out, err = _run(argv)
    assert code == 2, err
    assert err.splitlines()[0] == f"kotsrewrite: error: {known}:{line}: {message}"
    assert err.splitlines()[1].startswith("hint: ")
    if hint is not None:
        assert err.splitlines()[1] == f"hint: {hint}"
    assert out == ""


def test_report_entries_are_validated(tmp_path: Path) -> None:
    base = tmp_path / "app.yaml"
    base.write_text(_pod("web", "quay.io/acme/web:1.0"))
    report = tmp_path / "report.json"
    data = {"schemaVersion": 1, "images": [{"image": "quay.io/acme/web:1.0", "verdit": "public"}]}
    report.write_text(json.dumps(data, indent=2))
    argv = ["rewrite", str(base), *SLUG, "--offline", "--known-images", str(report), "--dry-run"]
    code, _, err = _run(argv)
    assert code == 2
    assert err.splitlines() == [
        f"kotsrewrite: error: {report}:5: unknown key 'verdit' in a report images entry",
        "hint: did you mean verdict?",
    ]


def test_expired_known_images_are_named_with_age_and_ttl(tmp_path: Path) -> None:
    """Issue 21 (b): an entry older than --cache-ttl is not 'not in the known images'."""
    base = tmp_path / "app.yaml"
    base.write_text(_pod("web", "quay.io/acme/web:1.0"))
    report = tmp_path / "report.json"
    entry = {
        "image": "quay.io/acme/web:1.0",
        "verdict": "private",
        "evidence": {"probedAt": "2020-01-01T00:00:00Z"},
    }
    report.write_text(json.dumps({"schemaVersion": 1, "images": [entry]}))
    argv = ["rewrite", str(base), *SLUG, "--offline", "--known-images", str(report)]
    code, out, err = _run([*argv, "--cache-ttl", "86400", "--dry-run"])
    assert code == 0, err
    (warning,) = [line for line in err.splitlines() if "warning" in line]
    assert "not in the known images" not in warning
    assert f"its known-images entry in {report} expired: probed " in warning
    assert "ago, at 2020-01-01T00:00:00Z; --cache-ttl is 86400 s (1d 0h)" in warning
    # Without the TTL the same entry is a verdict.
    code, out, err = _run([*argv, "--dry-run"])
    assert code == 0 and "warning" not in err and "proxy       private" in out


# --------------------------------------------------------------------------------------------
# 6. output streams: a closed pipe ends quietly; a full disk is one error line


def _big_base(tmp_path: Path, n: int = 1500) -> tuple[Path, Path]:
    base = tmp_path / "base"
    base.mkdir()
    (base / "all.yaml").write_text(
        "---\n".join(_pod(f"p{i}", f"quay.io/acme/img{i}:1.0") for i in range(n))
    )
    known = _known(
        tmp_path / "known.yaml",
        "".join(f"  - {{image: quay.io/acme/img{i}:1.0, isPrivate: true}}\n" for i in range(n)),
    )
    return base, known


def test_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    base, known = _big_base(tmp_path)
    argv = ["rewrite", str(base), *SLUG, "--offline", "--known-images", str(known), "--dry-run"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kotsrewrite", *argv, "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # what `| head -1` reads, then it goes away
    proc.stdout.close()
    err = proc.stderr.read()
    code = proc.wait(60)
    assert first.startswith(b"# would write ")
    assert err == b""
    assert code in (0, 141)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_full_disk_is_one_error_line(tmp_path: Path) -> None:
    base, known = _big_base(tmp_path, 300)
    argv = ["rewrite", str(base), *SLUG, "--offline", "--known-images", str(known), "--dry-run"]
    with open("/dev/full", "wb") as full:
        proc = _cli(*argv, "-q", stdout=full, stderr=subprocess.PIPE)
    assert proc.returncode == 1
    assert proc.stderr.decode().splitlines() == [
        "kotsrewrite: error: cannot write the output to stdout: No space left on device"
    ]


# --------------------------------------------------------------------------------------------
# 7. --out DIR --force never deletes the run's own inputs


def test_force_never_deletes_the_runs_inputs(tmp_path: Path) -> None:
    out = tmp_path / "work"
    out.mkdir()
    base = out / "app.yaml"
    base.write_text(_pod("web", "quay.io/acme/web:1.0"))
    license_file = out / "license.yaml"
    license_file.write_text(
        "apiVersion: kots.io/v1beta1\nkind: License\n"
        "spec: {licenseID: LIC-13-SECRET-ID, appSlug: acme}\n"
    )
    known = _known(out / "known.yaml", "  - {image: quay.io/acme/web:1.0, isPrivate: true}\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    outside = tmp_path / "app.yaml"
    outside.write_text(base.read_text())
    for flag, path in (("--license", license_file), ("--known-images", known)):
        argv = ["rewrite", str(outside), "--app-slug", "acme", "--license-id", "LIC-13-x"]
        argv += ["--offline", "--out", str(out), "--force", flag, str(path)]
        code, _, err = _run(argv)
        assert code == 2, err
        assert f"holding the input {path}" in err and "hint: move" in err
    # the base itself inside DIR, too
    argv = ["rewrite", str(base), *SLUG, "--offline", "--out", str(out), "--force"]
    code, _, err = _run(argv)
    assert code == 2 and f"holding the input {base}" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# --------------------------------------------------------------------------------------------
# 8. unquoted Helm templates get the unrendered-template message


@pytest.mark.parametrize(
    ("text", "line", "action"),
    [
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
            "  - name: c\n    image: {{ .Values.image }}\n",
            7,
            "image: {{ .Values.image }}",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
            "{{- if .Values.x }}\n  - name: c\n    image: nginx\n{{- end }}\n",
            6,
            "{{- if .Values.x }}",
        ),
        (
            "{{- if .Values.enabled }}\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
            "{{- end }}\n",
            1,
            "{{- if .Values.enabled }}",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels:\n"
            '    {{- include "chart.labels" . | nindent 4 }}\n',
            6,
            '{{- include "chart.labels" . | nindent 4 }}',
        ),
    ],
    ids=["image", "if-block", "leading-if", "include"],
)
def test_unquoted_templates_are_named(tmp_path: Path, text: str, line: int, action: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    code, _, err = _run(["images", str(path)])
    assert code == 2
    assert err.splitlines() == [
        f"kotsrewrite: error: {path}:{line}: unrendered template: {action!r} (not YAML until"
        " rendered)",
        "hint: render the chart or KOTS templates first (helm template, kots pull), then run"
        " kotsrewrite on the output",
    ]


# --------------------------------------------------------------------------------------------
# 9. usage errors never echo the license ID


@pytest.mark.parametrize(
    "argv",
    [
        ["rewrite", "x", "--license-id", "LIC-13-SECRET-ID", "--bogus", "LIC-13-SECRET-ID"],
        ["rewrite", "x", "--licence-id", "LIC-13-SECRET-ID"],
        ["images", "x", "--license-id", "LIC-13-SECRET-ID"],
        ["probe", "nginx", "--license-id=LIC-13-SECRET-ID"],
        ["post-render", "--license-id", "LIC-13-SECRET-ID", "stray"],
        ["rewrite", "--lic=LIC-13-SECRET-ID", "x"],
    ],
    ids=["after-unknown-flag", "misspelt", "images", "equals-form", "stray", "ambiguous"],
)
def test_usage_errors_never_echo_the_license_id(argv: list[str]) -> None:
    code, out, err = _run(argv)
    assert code == 2
    assert "LIC-13-SECRET-ID" not in out + err
    assert err.startswith("kotsrewrite ") and "error:" in err and "hint:" in err


# --------------------------------------------------------------------------------------------
# 1. a write to a full pipe that returns short loses nothing


INTERRUPTED_CHILD = """
import signal, sys
# A signal every 20 ms interrupts each blocking write to the full pipe: write(2) then returns
# the bytes written so far (as libuv's io_uring task work did after uvloop probed).
signal.signal(signal.SIGALRM, lambda *_: None)
signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
from kotsrewrite._cli import main
code = main(sys.argv[1:])
signal.setitimer(signal.ITIMER_REAL, 0)
sys.exit(code)
"""


def test_short_writes_to_a_slow_pipe_lose_nothing(tmp_path: Path) -> None:
    """The mechanism of issue 13 (1), made deterministic: with ``PYTHONUNBUFFERED=1`` Python's
    text stdout ignored a short write's count and dropped the rest, exit 0."""
    base, _ = _big_base(tmp_path, 800)
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_CHILD, "images", str(base), "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    chunks = []
    while chunk := (time.sleep(0.05), os.read(proc.stdout.fileno(), 64 * 1024))[1]:
        chunks.append(chunk)
    err = proc.stderr.read()
    assert proc.wait(60) == 0, err
    out = b"".join(chunks)
    assert len(out) > 4 * 64 * 1024
    assert len(json.loads(out)["images"]) == 800


@needs_kubectl
def test_verify_catches_the_overlay_of_the_issue(tmp_path: Path) -> None:
    """Issue 13 (4) as reported: ``rewrite`` of an overlay with ``namespace: staging`` writes
    the secret without a namespace; ``verify`` (no --namespace: ``default``) must say so."""
    (tmp_path / "base").mkdir()
    (tmp_path / "overlay").mkdir()
    (tmp_path / "base" / "d.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n"
        "  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n"
        "    spec:\n      containers: [{name: web, image: quay.io/acme/web:1.0}]\n"
    )
    (tmp_path / "base" / "kustomization.yaml").write_text("resources: [d.yaml]\n")
    (tmp_path / "overlay" / "kustomization.yaml").write_text(
        "namespace: staging\nresources: [../base]\n"
    )
    known = _known(tmp_path / "known.yaml", "  - {image: quay.io/acme/web:1.0, isPrivate: true}\n")
    mid = tmp_path / "mid"
    argv = ["rewrite", str(tmp_path / "overlay"), *SLUG, "--offline", "--known-images"]
    code, _, err = _run([*argv, str(known), "--out", str(mid)])
    assert code == 0, err
    # Since issue 14 rewrite reads the overlay as built: the secret is in staging, verify ok.
    assert "namespace: staging" in (mid / "pull-secret-staging.yaml").read_text()
    code, out, err = _run(["verify", str(mid)])
    assert code == 0, out + err
    # The midstream as the issue reported it (no secret in staging): verify must say so.
    kustomization = mid / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("- pull-secret-staging.yaml\n", ""))
    code, out, err = _run(["verify", str(mid)])
    assert code == 1, err
    assert "Deployment staging/web spec.template.spec: no pull secret acme-registry in" in out
