"""``kotsrewrite post-render`` under real Helm 3.19 and Helm 4.3 (``helm template``).

One command line for both majors: ``--post-renderer kotsrewrite --post-renderer-args
post-render ...``; Helm 3 runs the executable, Helm 4 the ``helm-plugin/`` plugin (installed
once per session by the ``helm`` fixture). The chart ``tests/fixtures/helm/acme`` has a
Deployment with an init container and the vendor's own pull secret, a CronJob, a second
namespace needing a secret, a third with public images only, and a pre-install hook Job.
Verdicts come from ``known-images.yaml``: no network.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from docker_image.regexp import ImageRegexps
from ruamel.yaml import YAML

from .conftest import Helm

pytestmark = pytest.mark.helm

HELM = Path(__file__).parent / "fixtures" / "helm"
LICENSE_ID = "LIC-helm-fixture-7f3a"
PROXY = "proxy.replicated.com/proxy/acme/"
DIGEST = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
SECRET = "acme-registry"
HOOK_SECRET = "acme-registry-hooks"
SOURCE = re.compile(r"^# Source: (.+)$", re.MULTILINE)


def _post_render(*extra: str, known: Path = HELM / "known-images.yaml") -> list[str]:
    args = ["post-render", f"--license={HELM / 'license.yaml'}", f"--known-images={known}"]
    args += ["--offline", *extra]
    out = ["--post-renderer", "kotsrewrite"]
    for arg in args:
        out += ["--post-renderer-args", arg]
    return out


def _template(helm: Helm, chart: str, *args: str, **kw: Any) -> tuple[str, list[dict[str, Any]]]:
    proc = helm.run("template", "rel", HELM / chart, *args, **kw)
    assert proc.returncode == 0, proc.stderr
    assert LICENSE_ID not in proc.stderr
    docs = [d for d in YAML(typ="safe", pure=True).load_all(proc.stdout) if d]
    return proc.stdout, docs


def _find(docs: list[dict[str, Any]], kind: str, name: str, ns: str | None = None) -> Any:
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and d["metadata"]["name"] == name
        and d["metadata"].get("namespace") == ns
    ]
    assert len(found) == 1, (kind, name, ns, len(found))
    return found[0]


def _images(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [v for k, v in node.items() if k == "image" and isinstance(v, str)]
        return out + [i for v in node.values() for i in _images(v)]
    if isinstance(node, list):
        return [i for v in node for i in _images(v)]
    return []


def _pull_secrets(obj: dict[str, Any]) -> list[str]:
    spec = obj["spec"]
    pod = spec["jobTemplate"]["spec"]["template"]["spec"] if "jobTemplate" in spec else None
    pod = pod or spec["template"]["spec"]
    return [s["name"] for s in pod.get("imagePullSecrets", [])]


def test_chart_rewritten_under_both_majors(helm: Helm) -> None:
    text, docs = _template(helm, "acme", *_post_render())
    for image in _images(docs):  # the distribution reference grammar, whole string
        assert ImageRegexps.REFERENCE_REGEXP.fullmatch(image), image

    web = _find(docs, "Deployment", "rel-web")
    pod = web["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["image"] == f"{PROXY}quay.io/acme/migrate:1.2@{DIGEST}"
    assert [c["image"] for c in pod["containers"]] == [
        f"{PROXY}quay.io/acme/web:1.4.2",
        "nginx:1.27",  # public: untouched
    ]
    assert _pull_secrets(web) == ["acme-vendor-pull", SECRET]  # the vendor's kept, ours added
    vendor = _find(docs, "Secret", "acme-vendor-pull")
    assert vendor["data"][".dockerconfigjson"] and "helm.sh/hook" not in str(vendor)

    cron = _find(docs, "CronJob", "rel-report")
    job_pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job_pod["containers"][0]["image"] == f"{PROXY}quay.io/acme/report:2.0"
    assert _pull_secrets(cron) == [SECRET]
    worker = _find(docs, "Deployment", "rel-worker", "acme-jobs")
    assert _images(worker) == [f"{PROXY}quay.io/acme/worker:3.1"]
    edge = _find(docs, "Deployment", "rel-edge", "acme-edge")
    assert _images(edge) == ["docker.io/library/busybox:1.36"]
    assert "imagePullSecrets" not in str(edge)

    # Secrets exactly where needed: the release namespace and acme-jobs, not acme-edge.
    ours = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == SECRET]
    assert sorted(d["metadata"].get("namespace", "") for d in ours) == ["", "acme-jobs"]
    for secret in ours:
        assert secret["type"] == "kubernetes.io/dockerconfigjson"
        assert "helm.sh/hook" not in secret["metadata"].get("annotations", {})

    # Every document keeps its source; Helm 4's bookkeeping annotation never leaks out.
    sources = SOURCE.findall(text)
    assert len(sources) == len(docs)
    assert sources.count("acme/templates/worker.yaml") == 2
    assert sources.count("acme/kotsrewrite/pull-secret.yaml") == 2
    assert "postrenderer.helm.sh" not in text

    hook = _find(docs, "Job", "rel-db-migrate")
    if helm.major == 3:
        # Helm 3 never post-renders hooks: the hook keeps its image (README: Hooks).
        assert _images(hook) == [f"quay.io/acme/migrate:1.2@{DIGEST}"]
        assert HOOK_SECRET not in text
    else:
        # Helm 4 does: the hook pulls through the proxy with a secret that is itself a hook of
        # its phases, weighted before it, so it exists when the hook's pod starts.
        assert _images(hook) == [f"{PROXY}quay.io/acme/migrate:1.2@{DIGEST}"]
        assert _pull_secrets(hook) == [HOOK_SECRET]
        hook_secret = _find(docs, "Secret", HOOK_SECRET)
        notes = hook_secret["metadata"]["annotations"]
        assert notes["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert int(notes["helm.sh/hook-weight"]) < int(
            hook["metadata"]["annotations"]["helm.sh/hook-weight"]
        )
        assert notes["helm.sh/hook-delete-policy"] == "before-hook-creation"
        assert "acme/kotsrewrite/pull-secret-hooks.yaml" in sources


def test_show_only_finds_templates_and_our_secrets(helm: Helm) -> None:
    show = ("--show-only", "templates/deployment.yaml")
    text, docs = _template(helm, "acme", *_post_render(), *show)
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [("Deployment", "rel-web")]
    assert f"{PROXY}quay.io/acme/web:1.4.2" in _images(docs)
    assert SOURCE.findall(text) == ["acme/templates/deployment.yaml"]

    _, docs = _template(
        helm, "acme", *_post_render(), "--show-only", "kotsrewrite/pull-secret.yaml"
    )
    assert [(d["kind"], d["metadata"].get("namespace")) for d in docs] == [
        ("Secret", None),
        ("Secret", "acme-jobs"),
    ]


def test_chart_rendering_nothing_gives_nothing(helm: Helm, tmp_path: Path) -> None:
    """Helm 4 gives an empty stream (and refuses an output of only whitespace); Helm 3 gives
    one with --output-dir (it writes the files itself). No object, no pull secret."""
    text, docs = _template(helm, "empty", *_post_render())
    assert docs == []
    assert text.strip() in ("", "---")
    out = tmp_path / "out"
    proc = helm.run("template", "rel", HELM / "acme", *_post_render(), "--output-dir", out)
    assert proc.returncode == 0, proc.stderr
    lines = {line.split(" ", 1)[0] for line in proc.stdout.splitlines() if line.strip()}
    assert lines <= {"wrote", "---"}, proc.stdout  # no pull secret out of nothing
    # Helm 3 writes the files before post-rendering them; Helm 4 after.
    assert (out / "acme/kotsrewrite/pull-secret.yaml").exists() == (helm.major == 4)


def test_300_deployments_come_back_complete(helm: Helm, tmp_path: Path) -> None:
    known = ["apiVersion: kots.io/v1beta1", "kind: Installation", "metadata: {name: many}"]
    known += ["spec:", "  knownImages:", "  - {image: 'nginx:1.27', isPrivate: false}"]
    known += [f"  - {{image: 'quay.io/acme/svc-{i}:1.{i}', isPrivate: true}}" for i in range(300)]
    (tmp_path / "known.yaml").write_text("\n".join(known) + "\n")
    text, docs = _template(helm, "many", *_post_render(known=tmp_path / "known.yaml"))
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert sorted(deployments) == sorted(f"svc-{i}" for i in range(300))
    for i in range(300):
        assert _images(deployments[f"svc-{i}"]) == [
            f"{PROXY}quay.io/acme/svc-{i}:1.{i}",
            "nginx:1.27",
        ]
        assert _pull_secrets(deployments[f"svc-{i}"]) == [SECRET]
    assert [d["kind"] for d in docs].count("Secret") == 1
    assert len(SOURCE.findall(text)) == 301


def test_bad_license_path_shows_our_error(helm: Helm, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "license.yaml"
    proc = helm.run("template", "rel", HELM / "acme", *_post_render(f"--license={missing}"))
    assert proc.returncode != 0
    assert f"kotsrewrite: error: {missing}: cannot read" in proc.stderr
    assert "hint: check the KOTS License path" in proc.stderr
    assert proc.stdout == ""


def test_warnings_reach_the_person_running_helm(helm: Helm) -> None:
    """Helm 3 drops a successful post-renderer's stderr, Helm 4 every stderr: kotsrewrite
    writes them to Helm's own stderr too."""
    proc = helm.run("template", "rel", HELM / "acme", *_post_render(), "--set", "web.tag=9.9")
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in YAML(typ="safe", pure=True).load_all(proc.stdout) if d]
    line = (
        "kotsrewrite: warning: quay.io/acme/web:9.9: no verdict (offline and not in the known"
        " images); treated as private: proxied"
    )
    assert proc.stderr.count(line) == 1, proc.stderr
    assert f"{PROXY}quay.io/acme/web:9.9" in _images(docs)


@pytest.mark.parametrize("append", [True, False], ids=["2>>file", "2>file"])
def test_error_once_and_helm_stderr_intact_in_a_file(
    helm: Helm, tmp_path: Path, append: bool
) -> None:
    """Helm's stderr a regular file: opened for appending, our error is in it exactly once
    (Helm 3 prints it itself, so it is not copied twice); opened at offset 0, Helm 4 would
    write over our copy, so none is made and Helm's own error stays whole."""
    missing = tmp_path / ("x" * 200) / ("y" * 200) / "license.yaml"  # longer than Helm's
    log = tmp_path / "helm.err"
    argv = [str(helm.binary), "template", "rel", str(HELM / "acme")]
    argv += _post_render(f"--license={missing}")
    with log.open("a" if append else "w") as stderr:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=stderr, env=helm.env)
    assert proc.returncode != 0
    text = log.read_text()
    ours = f"kotsrewrite: error: {missing}: cannot read"
    assert text.count(ours) == (1 if append or helm.major == 3 else 0), text
    assert "Error: error while running post render on files" in text
    assert text.rstrip().endswith("Use --debug flag to render out invalid YAML"), text
