"""The Helm post-renderer: its output must equal ``kubectl kustomize`` of the midstream.

Every golden case of ``tests/fixtures/midstream`` is written with ``rewrite`` and built with
real ``kubectl kustomize``; the same input goes through :func:`kotsrewrite.post_render` (the
library) and through ``kotsrewrite post-render`` (stdin -> stdout, as Helm runs it), and the
objects must be equal, compared by (apiVersion, kind, namespace, name).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

import kotsrewrite
from kotsrewrite._cli import _rewrite_options, build_parser, main
from kotsrewrite._postrender import helm_post_render

from .test_rewrite_golden import CASES, FIXTURES, _kustomize, _run_case

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")

Key = tuple[str, str, str, str]


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta.get("name") or "")


def _by_key(objects: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    out = {_key(o): o for o in objects}
    assert len(out) == len(objects), "duplicate objects"
    return out


def _parse(text: str) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe", pure=True).load_all(text) if d]


def _same(ours: list[dict[str, Any]], kustomized: list[dict[str, Any]]) -> None:
    a, b = _by_key(ours), _by_key(kustomized)
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key] == b[key], key


def _secrets_in_use(objects: list[dict[str, Any]], args: list[str]) -> list[dict[str, Any]]:
    """``objects`` without the pull secrets of namespaces where no object lists the secret
    in ``imagePullSecrets`` (and that ``--additional-namespace`` does not ask for): what
    ``post-render`` gives Helm."""
    flags = dict(zip(args[::2], args[1::2], strict=False))
    name = f"{flags['--app-slug']}-registry"
    app_ns = flags.get("--namespace", "default")
    extra = {v for k, v in itertools.pairwise(args) if k == "--additional-namespace"}

    def ns(obj: dict[str, Any]) -> str:
        return str((obj.get("metadata") or {}).get("namespace") or app_ns)

    def pulls(obj: dict[str, Any]) -> bool:
        return "'imagePullSecrets': [" in repr(obj) and f"{{'name': '{name}'}}" in repr(obj)

    used = {ns(o) for o in objects if o["kind"] != "Secret" and pulls(o)}
    return [
        o
        for o in objects
        if o["kind"] != "Secret"
        or o["metadata"]["name"] != name
        or ns(o) in used
        or ns(o) in extra
        or "*" in extra
    ]


def _case_input(case: str, work: Path) -> tuple[str, str]:
    """(path given to rewrite inside ``work``, the manifests as Helm would pipe them)."""
    spec = json.loads((FIXTURES / case / "case.json").read_text())
    src = FIXTURES / case
    if spec["input"] == "-":
        return "-", (src / spec["stdin"]).read_text()
    path = work / spec["input"]
    if path.is_file():
        return str(path), path.read_text()
    # What kustomize makes of the base (Lists flattened, as Helm would render them): the
    # kustomization itself, or the midstream's snapshot of a plain directory.
    base = kotsrewrite.load_manifests(path)
    built = path if base.mode == "kustomize" else work / "midstream" / "base"
    assert KUBECTL is not None
    proc = subprocess.run([KUBECTL, "kustomize", str(built)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return str(path), proc.stdout


def _options(case: str, path: str) -> kotsrewrite.RewriteOptions:
    spec = json.loads((FIXTURES / case / "case.json").read_text())
    args = build_parser().parse_args(["rewrite", path, *spec["args"]])
    return _rewrite_options(args)[0]


@pytest.mark.kustomize
@needs_kubectl
@pytest.mark.parametrize("case", CASES)
def test_post_render_equals_kustomize_build(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, _ = _run_case(case, tmp_path, monkeypatch)
    kustomized = _kustomize(out)
    path, piped = _case_input(case, tmp_path / "work")
    known = kotsrewrite.load_known_images(FIXTURES / case / "known-images.yaml")
    options = _options(case, path)

    # The library, on the base the rewrite read.
    base = kotsrewrite.load_manifests(path, stdin=io.StringIO(piped))
    inventory = kotsrewrite.find_images(base, image_fields=options.image_fields)
    plan = kotsrewrite.build_plan(inventory, known, options)
    _same(_parse(kotsrewrite.dump_documents(kotsrewrite.post_render(base, plan))), kustomized)
    # Plain objects work too, and are not changed.
    plain = _parse(piped)
    before = json.dumps(plain, sort_keys=True)
    _same(kotsrewrite.post_render(plain, plan), kustomized)
    assert json.dumps(plain, sort_keys=True) == before

    # The CLI, as Helm runs it: manifests on stdin, manifests on stdout.
    spec = json.loads((FIXTURES / case / "case.json").read_text())
    monkeypatch.setattr(sys, "stdin", io.StringIO(piped))
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = ["post-render", *spec["args"], "--offline"]
    argv += ["--known-images", str(FIXTURES / case / "known-images.yaml")]
    assert main(argv, stdout=stdout, stderr=stderr) == 0, stderr.getvalue()
    _same(_parse(stdout.getvalue()), _secrets_in_use(kustomized, spec["args"]))
    license_id = spec["args"][spec["args"].index("--license-id") + 1]
    assert license_id not in stderr.getvalue()


EDGES = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nospec
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
spec:
  template:
    metadata:
      annotations: null
    spec:
      initContainers:
      - name: init
        image: quay.io/acme/init@sha256:{d}
      containers:
      - name: a
        image: nginx:1.27
      - name: b
        image: quay.io/acme/api:1.0
---
apiVersion: batch/v1
kind: CronJob
metadata: {{name: cj, namespace: jobs}}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{{name: x, image: "quay.io/acme/api:2.0"}}]
---
apiVersion: extensions/v1beta1
kind: Job
metadata: {{name: oldjob}}
spec:
  template:
    spec:
      containers: [{{name: x, image: nginx}}]
---
apiVersion: example.com/v1
kind: Thing
metadata: {{name: t}}
spec:
  deep:
    containers: [{{name: x, image: nginx}}]
---
apiVersion: v1
kind: ReplicationController
metadata: {{name: rc}}
spec:
  template:
    spec:
      containers: [{{name: x, image: "docker.io/library/nginx:1"}}]
""".format(d="a" * 64)


@pytest.mark.kustomize
@needs_kubectl
def test_post_render_mirrors_kustomize_on_edge_objects(tmp_path: Path) -> None:
    """Objects without pod templates, non-batch Jobs, custom resources, null annotations,
    digests and Docker Hub spellings: every field kustomize touches, and only those."""
    (tmp_path / "app.yaml").write_text(EDGES)
    options = kotsrewrite.RewriteOptions(app_slug="acme", license_id="LIC-edge", proxy_all=True)
    result = kotsrewrite.rewrite(
        tmp_path / "app.yaml", options, out=tmp_path / "midstream", offline=True
    )
    kustomized = _kustomize(tmp_path / "midstream")
    ours = kotsrewrite.post_render(result.base, result.plan)
    _same(ours, kustomized)
    web = _by_key(ours)[("apps/v1", "Deployment", "", "web")]
    template = web["spec"]["template"]
    assert template["metadata"]["annotations"] == {"kots.io/app-slug": "acme"}
    assert template["spec"]["imagePullSecrets"] == [{"name": "acme-registry"}]
    assert template["spec"]["initContainers"][0]["image"] == (
        "proxy.replicated.com/proxy/acme/quay.io/acme/init@sha256:" + "a" * 64
    )
    nospec = _by_key(ours)[("apps/v1", "Deployment", "", "nospec")]
    assert nospec["spec"] == {
        "template": {"metadata": {"annotations": {"kots.io/app-slug": "acme"}}}
    }


def test_post_render_shares_every_rewrite_option() -> None:
    """post-render takes rewrite's options (minus the ones about writing files)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    choices: dict[str, Any] = sub.choices  # type: ignore[assignment]

    def flags(name: str) -> set[str]:
        return {o for a in choices[name]._actions for o in a.option_strings}

    rewrite_only = {"--out", "--force", "--dry-run", "--verify", "--pull", "--quiet", "--verbose"}
    rewrite_only |= {"-q", "-v", "-h", "--help"}
    # Relocation writes copy-plan.json beside the midstream: rewrite only.
    rewrite_only |= {"--registry", "--registry-layout", "--registry-auth", "--resolve"}
    assert flags("rewrite") - rewrite_only <= flags("post-render")


HELM_STREAM = """\
---
# Source: acme/templates/serviceaccount.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: acme
---
# Source: acme/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: acme-web
  labels:
    helm.sh/chart: acme-0.1.0
spec:
  template:
    spec:
      containers:
        - name: web
          image: "quay.io/acme/web:1.4.2"
        - name: sidecar
          image: "nginx:1.27"
"""


def _known(tmp_path: Path) -> Path:
    path = tmp_path / "known.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            apiVersion: kots.io/v1beta1
            kind: Installation
            metadata: {name: acme}
            spec:
              knownImages:
              - image: quay.io/acme/web:1.4.2
                isPrivate: true
              - image: nginx:1.27
                isPrivate: false
            """
        )
    )
    return path


def test_post_render_as_helm_runs_it(tmp_path: Path) -> None:
    """A separate process, Helm's `--post-renderer-args` style (`--flag=value`, one per
    argument), manifests with `# Source:` comments on stdin; stdout holds only manifests."""
    known = _known(tmp_path)
    report = tmp_path / "report.json"
    args = [
        "post-render",
        "--app-slug=acme",
        "--license-id=LIC-helm-secret",
        f"--known-images={known}",
        "--offline",
        f"--report={report}",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.run(
        [sys.executable, "-m", "kotsrewrite", *args],
        input=HELM_STREAM,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    objects = _by_key(_parse(proc.stdout))
    assert sorted(objects) == [
        ("apps/v1", "Deployment", "", "acme-web"),
        ("v1", "Secret", "", "acme-registry"),
        ("v1", "ServiceAccount", "", "acme"),
    ]
    pod = objects[("apps/v1", "Deployment", "", "acme-web")]["spec"]["template"]["spec"]
    assert [c["image"] for c in pod["containers"]] == [
        "proxy.replicated.com/proxy/acme/quay.io/acme/web:1.4.2",
        "nginx:1.27",
    ]
    assert pod["imagePullSecrets"] == [{"name": "acme-registry"}]
    secret = objects[("v1", "Secret", "", "acme-registry")]
    assert "namespace" not in secret["metadata"]  # Helm puts it in the release namespace
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert "LIC-helm-secret" not in proc.stderr
    assert "LIC-helm-secret" not in report.read_text()
    assert json.loads(report.read_text())["output"] is None


def test_post_render_refuses_report_on_stdout(tmp_path: Path) -> None:
    err = io.StringIO()
    argv = ["post-render", "--app-slug", "acme", "--license-id", "L", "--offline", "--report", "-"]
    assert main(argv, stdout=io.StringIO(), stderr=err) == 2
    assert "--report" in err.getvalue() and "hint:" in err.getvalue()


def test_post_render_without_license_is_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(HELM_STREAM))
    out, err = io.StringIO(), io.StringIO()
    assert main(["post-render", "--app-slug", "acme", "--offline"], stdout=out, stderr=err) == 2
    assert out.getvalue() == ""
    assert "--license-id" in err.getvalue()


def test_post_render_bad_manifest_names_stdin_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("kind: Pod\nmetadata: [\n"))
    out, err = io.StringIO(), io.StringIO()
    argv = ["post-render", "--app-slug", "acme", "--license-id", "L", "--offline"]
    assert main(argv, stdout=out, stderr=err) == 2
    assert out.getvalue() == ""
    assert "<stdin>:" in err.getvalue()


HELM3_LIST = """\
---
# Source: acme/templates/list.yaml
# a comment of the template
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: a}
  spec: {template: {spec: {containers: [{name: x, image: "quay.io/acme/web:1.4.2"}]}}}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: b}
---   # a document marker with a comment
# Source: acme/templates/other.yaml
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
data:
  embedded: |
    ---
    # Source: not/a/comment.yaml
"""


def _helm_post_render(text: str, tmp_path: Path, **options: Any) -> str:
    base = kotsrewrite.load_manifests("-", stdin=io.StringIO(text))
    inventory = kotsrewrite.find_images(base)
    known = kotsrewrite.load_known_images(_known(tmp_path))
    opts = kotsrewrite.RewriteOptions(app_slug="acme", license_id="LIC-x", **options)
    plan = kotsrewrite.build_plan(inventory, known, opts)
    return helm_post_render(base, plan)


def test_helm_sources_follow_list_items_and_skip_block_scalars(tmp_path: Path) -> None:
    out = _helm_post_render(HELM3_LIST, tmp_path)
    heads = [chunk.split("\n", 1)[0] for chunk in out.split("---\n") if chunk]
    assert heads == [
        "# Source: acme/templates/list.yaml",  # List item a
        "# Source: acme/templates/list.yaml",  # List item b
        "# Source: acme/templates/other.yaml",
        "# Source: acme/kotsrewrite/pull-secret.yaml",
    ]
    docs = _parse(out)
    assert docs[2]["data"]["embedded"] == "---\n# Source: not/a/comment.yaml\n"
    assert "postrenderer.helm.sh" not in out  # Helm 3 input: no Helm 4 annotation invented


def test_helm_secrets_only_where_listed(tmp_path: Path) -> None:
    """No object pulls through the proxy: no Secret, and '---' (Helm 4 refuses emptiness);
    --additional-namespace still asks for one."""
    public = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n"
    public += "  containers: [{name: x, image: 'nginx:1.27'}]\n"
    assert [d["kind"] for d in _parse(_helm_post_render(public, tmp_path))] == ["Pod"]
    assert _helm_post_render("", tmp_path) == "---\n"
    asked = _parse(_helm_post_render("", tmp_path, additional_namespaces=("ops",)))
    assert [(d["kind"], d["metadata"].get("namespace")) for d in asked] == [("Secret", "ops")]


HELM4_HOOKS = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: pre
  annotations:
    helm.sh/hook: pre-upgrade,pre-install
    helm.sh/hook-weight: "-10"
    postrenderer.helm.sh/postrender-filename: acme/templates/pre.yaml
spec: {template: {spec: {containers: [{name: x, image: "quay.io/acme/web:1.4.2"}]}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: test
  namespace: other
  annotations:
    helm.sh/hook: test
    postrenderer.helm.sh/postrender-filename: acme/templates/tests/t.yaml
spec: {containers: [{name: x, image: "quay.io/acme/web:1.4.2"}]}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: weights-only
  annotations:
    helm.sh/hook: post-install
    helm.sh/hook-weight: "-20"
    postrenderer.helm.sh/postrender-filename: acme/templates/cm.yaml
"""


def test_helm_hooks_get_a_hook_secret_of_their_own(tmp_path: Path) -> None:
    """Only hooks pull through the proxy: no ordinary secret, and in each hook namespace a
    hook secret of those hooks' phases, weighted below every hook of the chart."""
    docs = {}
    for d in _parse(_helm_post_render(HELM4_HOOKS, tmp_path)):
        docs[(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))] = d
    assert [k for k in docs if k[0] == "Secret"] == [
        ("Secret", "acme-registry-hooks", None),
        ("Secret", "acme-registry-hooks", "other"),
    ]
    pre = docs[("Job", "pre", None)]["spec"]["template"]["spec"]
    assert pre["imagePullSecrets"] == [{"name": "acme-registry-hooks"}]
    release = docs[("Secret", "acme-registry-hooks", None)]["metadata"]["annotations"]
    assert release["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert release["helm.sh/hook-weight"] == "-21"
    assert release["helm.sh/hook-delete-policy"] == "before-hook-creation"
    assert release["postrenderer.helm.sh/postrender-filename"] == (
        "acme/kotsrewrite/pull-secret-hooks.yaml"
    )
    other = docs[("Secret", "acme-registry-hooks", "other")]["metadata"]["annotations"]
    assert other["helm.sh/hook"] == "test"
    # The input's annotations are kept for Helm 4 to rebuild its files.
    cm = docs[("ConfigMap", "weights-only", None)]["metadata"]["annotations"]
    assert cm["postrenderer.helm.sh/postrender-filename"] == "acme/templates/cm.yaml"
