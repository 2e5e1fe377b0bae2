"""End to end on the registry lab: ``rewrite --registry``, ``kotsrewrite copy``, then pull.

Registries (real Distribution, plain HTTP on loopback):

* ``vendor``: htpasswd with user ``LICENSE_ID`` and the license as password: it plays the
  proxy (images under ``proxy/acme/<upstream>``) and the Replicated registry
  (``acme/reporter``), both through ``--proxy-host``/``--replicated-registry``;
* ``public``: anonymous; a multi-arch OCI index (two manifests) and a plain image, probed for
  real by the rewrite;
* ``customer``: htpasswd with the customer's user, fresh for each test: the destination.

After the copy (registry to registry, or through an OCI directory), every image of the
midstream built by ``kubectl kustomize`` must be pullable from the customer registry with the
credentials of the midstream's own pull secret, at the digest the copy plan names; a second
copy finds everything present and copies nothing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from kotsrewrite import ImageRef
from kotsrewrite._cli import main
from tests import lab

pytestmark = [
    pytest.mark.skipif(not lab.have_registry(), reason="docker-registry is not installed"),
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]

LICENSE = "lab-license-7d1e"
CUSTOMER = ("customer", "customer-pw-42")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_index(reg: lab.Registry, repo: str, tag: str) -> tuple[str, list[str]]:
    """Push an OCI index of two single-platform images to ``repo:tag``; return the index
    digest and the two manifest digests."""
    children = []
    for arch in ("amd64", "arm64"):
        digest = reg.push(repo, None, content=f"{repo} for {arch}\n".encode())
        _, _, raw = reg.request(
            "GET",
            f"/v2/{repo}/manifests/{digest}",
            headers={"Accept": lab.MANIFEST_ACCEPT},
            repos=[repo],
        )
        children.append(
            {
                "mediaType": lab.OCI_MANIFEST,
                "digest": digest,
                "size": len(raw),
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
    status, _, body = reg.request(
        "PUT",
        f"/v2/{repo}/manifests/{tag}",
        body=index,
        headers={"Content-Type": OCI_INDEX},
        repos=[repo],
    )
    assert status == 201, body
    return _sha(index), [c["digest"] for c in children]


class Lab:
    """The vendor and public registries with their images, and the manifests naming them."""

    def __init__(self, vendor: lab.Registry, public: lab.Registry) -> None:
        self.vendor, self.public = vendor, public
        self.index_digest, self.children = push_index(public, "library/redis", "7")
        busybox = public.push("tools/busybox", "1.36")
        api = vendor.push("proxy/acme/quay.io/acme/api", "2.0")
        worker = vendor.push("proxy/acme/ghcr.io/acme/worker", None)
        reporter = vendor.push("acme/reporter", "1.0")
        # The image as written -> the digest the customer must end up pulling.
        self.images = {
            public.ref("library/redis", "7"): self.index_digest,
            public.ref("tools/busybox", "1.36"): busybox,
            f"quay.io/acme/api:2.0@{api}": api,
            f"ghcr.io/acme/worker@{worker}": worker,
            vendor.ref("acme/reporter", "1.0"): reporter,
        }

    def write_base(self, root: Path) -> Path:
        base = root / "base"
        base.mkdir()
        containers = [
            {"name": f"c{i}", "image": image} for i, image in enumerate(sorted(self.images))
        ]
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "app"},
            "spec": {
                "selector": {"matchLabels": {"app": "app"}},
                "template": {
                    "metadata": {"labels": {"app": "app"}},
                    "spec": {"containers": containers},
                },
            },
        }
        (base / "app.yaml").write_text(json.dumps(deployment))
        # A KOTS Installation (YAML) with the two private upstream images: never probed
        # (quay.io and ghcr.io are not on loopback); the lab's own images are probed.
        private = [i for i in self.images if i.startswith(("quay.io", "ghcr.io"))]
        (root / "known.yaml").write_text(
            "apiVersion: kots.io/v1beta1\nkind: Installation\nmetadata: {name: app}\n"
            "spec:\n  knownImages:\n"
            + "".join(f'  - {{image: "{i}", isPrivate: true}}\n' for i in sorted(private))
        )
        return base


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with (
        lab.registry(
            auth="htpasswd",
            users={"LICENSE_ID": LICENSE},
            workdir=tmp_path_factory.mktemp("vendor"),
        ) as vendor,
        lab.registry(workdir=tmp_path_factory.mktemp("public")) as public,
    ):
        yield Lab(vendor, public)


@pytest.fixture
def customer(tmp_path: Path) -> Iterator[tuple[lab.Registry, Path]]:
    """A fresh htpasswd registry and a Docker config holding the customer's login."""
    with lab.registry(
        auth="htpasswd", users=dict([CUSTOMER]), workdir=tmp_path / "customer"
    ) as reg:
        auth = tmp_path / "auth.json"
        login = base64.b64encode(":".join(CUSTOMER).encode()).decode()
        auth.write_text(json.dumps({"auths": {reg.host: {"auth": login}}}))
        yield reg, auth


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    for text in (out.getvalue(), err.getvalue()):
        assert LICENSE not in text and CUSTOMER[1] not in text
    return code, out.getvalue(), err.getvalue()


def _rewrite(
    sources: Lab, tmp: Path, registry: str, auth: Path, *extra: str
) -> tuple[Path, dict[str, Any]]:
    base = sources.write_base(tmp)
    out = tmp / "midstream"
    v, p = sources.vendor.host, sources.public.host
    code, _, err = _cli(
        "rewrite",
        str(base),
        "--app-slug",
        "acme",
        "--license-id",
        LICENSE,
        "--proxy-host",
        v,
        "--replicated-registry",
        v,
        "--known-images",
        str(tmp / "known.yaml"),
        "--insecure-registry",
        p,
        "--insecure-registry",
        v,
        "--registry",
        registry,
        "--registry-auth",
        str(auth),
        "--out",
        str(out),
        *extra,
    )
    assert code == 0, err
    assert "5 images relocated to" in err
    return out, json.loads((out / "copy-plan.json").read_text())


def _copy(sources: Lab, plan: Path, *extra: str) -> tuple[int, list[str], str]:
    args = ["copy", str(plan), "--license-id", LICENSE, "--concurrency", "3"]
    for host in (sources.vendor.host, sources.public.host):
        args += ["--insecure-registry", host]
    code, out, err = _cli(*args, *extra)
    statuses = [line.split()[0] for line in out.splitlines() if not line.startswith(" ")]
    return code, statuses, err


def _skopeo_raw(image: str, creds: str | None) -> subprocess.CompletedProcess[bytes]:
    auth = ["--creds", creds] if creds is not None else ["--no-creds"]
    return subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", *auth, f"docker://{image}"],
        capture_output=True,
        timeout=60,
        check=False,
    )


def assert_pullable(sources: Lab, midstream: Path, plan: dict[str, Any], host: str) -> None:
    """Every image of the built midstream pulls from the customer registry with the secret's
    credentials, at the planned digest (the whole index for the multi-arch image)."""
    proc = subprocess.run(
        ["kubectl", "kustomize", str(midstream)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    built = [d for d in YAML(typ="safe", pure=True).load_all(proc.stdout) if d]
    (secret,) = [d for d in built if d["kind"] == "Secret"]
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    creds = base64.b64decode(config["auths"][host]["auth"]).decode()
    (deployment,) = [d for d in built if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "acme-registry"}]
    planned = {e["destination"]: e for e in plan["images"]}
    images = [c["image"] for c in pod["containers"]]
    assert sorted(images) == sorted(planned)
    for image in images:
        ref = ImageRef.parse(image)
        assert ref.domain == host
        entry = planned[image]
        source = next(s for s in entry["sources"])
        want = sources.images[source]
        assert entry["digest"] in (None, want)
        # What a kubelet pulls: by digest when the reference has one, else by tag.
        pull = f"{ref.name}@{ref.digest}" if ref.digest else f"{ref.name}:{ref.tag or 'latest'}"
        result = _skopeo_raw(pull, creds)
        assert result.returncode == 0, (image, result.stderr)
        assert _sha(result.stdout) == want, image
        if ref.tag is not None and ref.digest is not None:  # the tag points there too
            tagged = _skopeo_raw(f"{ref.name}:{ref.tag}", creds)
            assert _sha(tagged.stdout) == want
        if want == sources.index_digest:  # kept whole: the index and both platforms
            index = json.loads(result.stdout)
            assert index["mediaType"] == OCI_INDEX
            assert [m["digest"] for m in index["manifests"]] == sources.children
            for child in sources.children:
                got = _skopeo_raw(f"{ref.name}@{child}", creds)
                assert got.returncode == 0 and _sha(got.stdout) == child
    # The credentials matter: anonymously, the customer registry refuses.
    assert _skopeo_raw(images[0], None).returncode != 0


def test_copy_registry_to_registry(
    sources: Lab, customer: tuple[lab.Registry, Path], tmp_path: Path
) -> None:
    reg, auth = customer
    midstream, plan = _rewrite(sources, tmp_path, f"{reg.host}/acme", auth)
    # Private images come through the proxy path with the license, public ones from where
    # they are, the Replicated registry's with the license; tags without digest are copied
    # at the digest they have at copy time.
    by_source = {e["source"]: e for e in plan["images"]}
    api = next(s for s in by_source if s.startswith("quay.io/"))
    assert by_source[api]["pullFrom"] == f"{sources.vendor.host}/proxy/acme/{api}"
    assert by_source[api]["pullAuth"] == "license"
    redis = sources.public.ref("library/redis", "7")
    assert by_source[redis]["pullFrom"] == redis and by_source[redis]["pullAuth"] == "default"
    assert by_source[redis]["digest"] is None

    code, statuses, err = _copy(
        sources, midstream, "--authfile", str(auth), "--insecure-registry", reg.host
    )
    assert code == 0, err
    assert statuses == ["copied"] * 5, err
    assert_pullable(sources, midstream, plan, reg.host)

    # verify --pull with the midstream's own secret (the customer's login, not the license):
    # every built image pullable from the customer registry, and nothing else asked.
    code, out, err = _cli(
        "verify", str(midstream), "--pull", "--format", "json", "--insecure-registry", reg.host
    )
    assert code == 0, out + err
    doc = json.loads(out)
    assert doc["ok"] is True and doc["problems"] == []
    pulled = {entry["image"]: entry["status"] for entry in doc["pull"]}
    assert set(pulled) == {e["destination"] for e in plan["images"]}
    assert set(pulled.values()) == {"pullable"}
    # A wrong password in the secret is denied at the customer registry.
    for secret in midstream.glob("pull-secret*.yaml"):
        text = secret.read_text()
        config = YAML(typ="safe", pure=True).load(text)
        raw = json.loads(base64.b64decode(config["data"][".dockerconfigjson"]))
        for entry in raw["auths"].values():
            entry["password"] = "wrong"
            entry["auth"] = base64.b64encode(f"{entry['username']}:wrong".encode()).decode()
        config["data"][".dockerconfigjson"] = base64.b64encode(json.dumps(raw).encode()).decode()
        buf = io.StringIO()
        YAML().dump(config, buf)
        secret.write_text(buf.getvalue())
    code, out, err = _cli(
        "verify", str(midstream), "--pull", "--format", "json", "--insecure-registry", reg.host
    )
    assert code == 1, out + err
    assert {e["status"] for e in json.loads(out)["pull"]} == {"denied"}

    # Resumable: a second run finds every image present with its digest and copies nothing.
    code, statuses, err = _copy(
        sources, midstream, "--authfile", str(auth), "--insecure-registry", reg.host
    )
    assert code == 0 and statuses == ["present"] * 5, err
    assert "0 copied, 5 already present" in err


def test_copy_through_an_oci_directory_flat_resolved(
    sources: Lab, customer: tuple[lab.Registry, Path], tmp_path: Path
) -> None:
    reg, auth = customer
    midstream, plan = _rewrite(
        sources, tmp_path, f"{reg.host}/acme", auth, "--registry-layout", "flat", "--resolve"
    )
    for entry in plan["images"]:  # --resolve pinned every tag's digest
        assert entry["digest"] == sources.images[entry["source"]]
        assert entry["digestFrom"] in ("reference", "resolved")
    names = {ImageRef.parse(e["destination"]).name for e in plan["images"]}
    assert names == {
        f"{reg.host}/acme/{n}" for n in ("redis", "busybox", "api", "worker", "reporter")
    }

    export = tmp_path / "export"
    code, statuses, err = _copy(sources, midstream / "copy-plan.json", "--to-dir", str(export))
    assert code == 0 and statuses == ["copied"] * 5, err
    # The disconnected side: no source registry, no license, only the export.
    code, out, err = _cli(
        "copy",
        str(midstream),
        "--from-dir",
        str(export),
        "--authfile",
        str(auth),
        "--insecure-registry",
        reg.host,
    )
    assert code == 0, out + err
    assert [line.split()[0] for line in out.splitlines()] == ["copied"] * 5
    assert_pullable(sources, midstream, plan, reg.host)

    # Both directions resume: nothing left to export, nothing left to import.
    code, statuses, err = _copy(sources, midstream, "--to-dir", str(export))
    assert code == 0 and statuses == ["present"] * 5, err
    code, out, err = _cli(
        "copy",
        str(midstream),
        "--from-dir",
        str(export),
        "--authfile",
        str(auth),
        "--insecure-registry",
        reg.host,
    )
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["present"] * 5


def test_copy_reports_a_wrong_password_and_exits_1(
    sources: Lab, customer: tuple[lab.Registry, Path], tmp_path: Path
) -> None:
    reg, auth = customer
    midstream, _ = _rewrite(sources, tmp_path, f"{reg.host}/acme", auth)
    wrong = tmp_path / "wrong.json"
    login = base64.b64encode(b"customer:not-the-password").decode()
    wrong.write_text(json.dumps({"auths": {reg.host: {"auth": login}}}))
    code, statuses, err = _copy(
        sources, midstream, "--authfile", str(wrong), "--insecure-registry", reg.host
    )
    assert code == 1
    assert statuses == ["failed"] * 5
    assert "5 failed" in err
