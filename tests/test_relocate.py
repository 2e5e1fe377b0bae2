"""Relocation's pieces and errors: names, credentials files, the copy plan, skopeo's plumbing."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
from pathlib import Path

import pytest

from kotsrewrite import (
    CopyOptions,
    CopyPlan,
    ImageRef,
    InputError,
    Layout,
    RelocationOptions,
    copy_images,
    read_registry_auth,
)
from kotsrewrite._cli import main
from kotsrewrite._relocate import relocated_name

FIXTURES = Path(__file__).parent / "fixtures" / "relocate"
PASSWORD = "pw-that-must-stay-secret"


def _names(images: list[str], registry: str, layout: str) -> dict[str, str]:
    target = RelocationOptions(registry=registry, layout=layout)
    return relocated_name([ImageRef.parse(i) for i in images], target)


def test_nested_keeps_host_and_path_and_turns_a_port_into_an_underscore() -> None:
    names = _names(
        ["nginx", "index.docker.io/library/nginx:1", "localhost:5000/a/b", "Quay.IO/x/y"],
        "reg.example.com:5000/team/apps",
        "nested",
    )
    assert names == {
        "docker.io/library/nginx": "reg.example.com:5000/team/apps/docker.io/library/nginx",
        "localhost:5000/a/b": "reg.example.com:5000/team/apps/localhost_5000/a/b",
        "Quay.IO/x/y": "reg.example.com:5000/team/apps/quay.io/x/y",
    }
    for name in names.values():
        assert ImageRef.parse(name).domain == "reg.example.com:5000"


def test_flat_suffix_only_on_collisions_and_stable() -> None:
    two = _names(["quay.io/a/api:1", "ghcr.io/b/api", "redis"], "r.example.com/ns", "flat")
    three = _names(
        ["quay.io/a/api:1", "ghcr.io/b/api", "docker.io/c/api", "redis"], "r.example.com/ns", "flat"
    )
    suffix = hashlib.sha256(b"quay.io/a/api").hexdigest()[:6]
    assert two["quay.io/a/api"] == three["quay.io/a/api"] == f"r.example.com/ns/api-{suffix}"
    assert two["docker.io/library/redis"] == "r.example.com/ns/redis"
    assert len(set(three.values())) == 4


def test_a_name_too_long_is_refused_with_a_hint() -> None:
    long_path = "/".join(["component" * 3] * 8)
    with pytest.raises(InputError) as info:
        _names([f"quay.io/{long_path}:1"], "reg.example.com/" + "n" * 30, "nested")
    assert info.value.file == "--registry"
    assert "--registry-layout flat" in (info.value.hint or "")


@pytest.mark.parametrize(
    "registry",
    ["", "reg.example.com/Team", "https://reg.example.com", "reg.example.com/a//b", "noport/x"],
)
def test_invalid_registry(registry: str) -> None:
    with pytest.raises(InputError) as info:
        RelocationOptions(registry=registry)
    assert info.value.file == "--registry"


def _config(tmp_path: Path, auths: dict[str, object], **extra: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": auths, **extra}))
    return path


def test_read_registry_auth_forms(tmp_path: Path) -> None:
    login = base64.b64encode(f"me:{PASSWORD}".encode()).decode()
    path = _config(
        tmp_path,
        {
            "https://Reg.Example.com/v2/": {"auth": login},
            "other.example.com:5000": {"username": "u", "password": "p"},
            "https://index.docker.io/v1/": {"auth": login},
        },
    )
    creds = read_registry_auth(path, "reg.example.com")
    assert (creds.host, creds.username, creds.password) == ("reg.example.com", "me", PASSWORD)
    assert PASSWORD not in repr(creds)
    other = read_registry_auth(path, "other.example.com:5000")
    assert (other.username, other.password) == ("u", "p")
    hub = read_registry_auth(path, "docker.io")
    assert hub.host == "https://index.docker.io/v1/"


def test_read_registry_auth_errors_name_the_file_never_the_password(tmp_path: Path) -> None:
    login = base64.b64encode(f"me:{PASSWORD}".encode()).decode()
    path = _config(tmp_path, {"reg.example.com": {"auth": login}}, credsStore="desktop")
    with pytest.raises(InputError) as info:
        read_registry_auth(path, "other.example.com")
    assert info.value.file == str(path)
    assert "other.example.com" in str(info.value) and "credential helper" in str(info.value)
    assert "skopeo login" in (info.value.hint or "")
    bad = _config(tmp_path, {"reg.example.com": {"auth": "bm90LWEtcGFpcg=="}})
    with pytest.raises(InputError) as info:
        read_registry_auth(bad, "reg.example.com")
    assert "not base64 of USER:PASSWORD" in str(info.value)
    missing = tmp_path / "nope.json"
    with pytest.raises(InputError) as info:
        read_registry_auth(missing, "reg.example.com")
    assert info.value.file == str(missing)


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _rewrite_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "rewrite",
        str(FIXTURES / "base" / "apps.yaml"),
        "--app-slug",
        "acme",
        "--license-id",
        "LIC-1",
        "--known-images",
        str(FIXTURES / "known-images.yaml"),
        "--offline",
        "--out",
        str(tmp_path / "out"),
        *extra,
    ]


def test_cli_relocation_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    auth = str(FIXTURES / "auth.json")
    code, _, err = _run(*_rewrite_args(tmp_path, "--registry-auth", auth))
    assert code == 2 and "--registry-auth: needs --registry" in err
    # rewrite --registry --verify checks the relocated midstream (the customer's login).
    verified = _rewrite_args(tmp_path, "--registry", "reg.example.com/acme", "--verify")
    code, _, err = _run(*verified, "--registry-auth", auth, "--out", str(tmp_path / "verified"))
    assert code == 0 and "verify: " in err and ": ok: " in err, err
    code, _, err = _run(
        *_rewrite_args(tmp_path, "--registry", "missing.example.com/x", "--registry-auth", auth)
    )
    assert code == 2
    assert f"{auth}: no credentials for missing.example.com" in err and "hint:" in err
    for var in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    code, _, err = _run(*_rewrite_args(tmp_path, "--registry", "reg.example.com"))
    assert code == 2 and "--registry-auth: no credentials for reg.example.com" in err
    assert not (tmp_path / "out").exists()  # nothing half-written
    # The default auth file, as skopeo finds it.
    monkeypatch.setenv("REGISTRY_AUTH_FILE", auth)
    code, _, err = _run(*_rewrite_args(tmp_path, "--registry", "reg.example.com"))
    assert code == 0, err
    assert (tmp_path / "out" / "copy-plan.json").is_file()


def _plan_file(tmp_path: Path) -> Path:
    code, _, err = _run(
        *_rewrite_args(
            tmp_path,
            "--registry",
            "reg.example.com",
            "--registry-auth",
            str(FIXTURES / "auth.json"),
        )
    )
    assert code == 0, err
    return tmp_path / "out" / "copy-plan.json"


def test_copy_plan_round_trips(tmp_path: Path) -> None:
    path = _plan_file(tmp_path)
    plan = CopyPlan.load(path)
    assert plan.dumps() == path.read_text()
    assert plan.layout is Layout.NESTED and len(plan.images) == 9
    assert CopyPlan.load(path.parent) == plan  # the midstream directory works too


def test_copy_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan_file(tmp_path)
    code, _, err = _run("copy", str(plan), "--to-dir", "a", "--from-dir", "b")
    assert code == 2 and "not allowed with argument" in err
    code, _, err = _run("copy", str(plan))
    assert code == 2 and "--license-id: 4 images pull from the proxy" in err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    code, _, err = _run("copy", str(bad), "--license-id", "L")
    assert code == 2 and "not a kotsrewrite copy plan" in err
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, _, err = _run("copy", str(plan), "--license-id", "L")
    assert code == 2
    assert "skopeo: skopeo not found" in err and "hint: install skopeo" in err


FAKE_SKOPEO = """#!/bin/sh
# Records each call, and the auth file's mode and content, then fails the way skopeo does.
log="$(dirname "$0")/calls.log"
echo "ARGS $*" >> "$log"
prev=""
for arg in "$@"; do
  if [ "$prev" = "--authfile" ]; then
    echo "MODE $(stat -c %a "$arg") DIRMODE $(stat -c %a "$(dirname "$arg")")" >> "$log"
    echo "FILE $arg" >> "$log"
    echo "CONTENT $(cat "$arg")" >> "$log"
  fi
  prev="$arg"
done
echo 'time="x" level=fatal msg="reading manifest: unauthorized: authentication required"' >&2
exit 1
"""


def test_license_reaches_skopeo_only_in_a_private_temporary_authfile(tmp_path: Path) -> None:
    plan = CopyPlan.load(_plan_file(tmp_path))
    fake = tmp_path / "bin" / "skopeo"
    fake.parent.mkdir()
    fake.write_text(FAKE_SKOPEO)
    fake.chmod(0o755)
    user = tmp_path / "user.json"
    user.write_text(json.dumps({"auths": {"reg.example.com": {"auth": "dTpw"}}}))
    license_id = "LIC-must-not-leak"
    result = copy_images(
        plan, CopyOptions(authfile=user, license_id=license_id, skopeo=str(fake), concurrency=2)
    )
    assert not result.ok and result.count("failed") == 9
    assert all("unauthorized" in (i.error or "") for i in result.images)
    log = (fake.parent / "calls.log").read_text().splitlines()
    args = [line for line in log if line.startswith("ARGS ")]
    assert args and all(license_id not in line for line in args)
    assert {line for line in log if line.startswith("MODE ")} == {"MODE 600 DIRMODE 700"}
    content = next(line for line in log if line.startswith("CONTENT ")).removeprefix("CONTENT ")
    auths = json.loads(content)["auths"]
    assert auths["reg.example.com"] == {"auth": "dTpw"}  # the user's credentials kept
    lic = base64.b64encode(f"LICENSE_ID:{license_id}".encode()).decode()
    assert auths["proxy.replicated.com"] == auths["registry.replicated.com"] == {"auth": lic}
    files = {line.removeprefix("FILE ") for line in log if line.startswith("FILE ")}
    assert files and not any(os.path.exists(f) for f in files)  # deleted afterwards
    assert license_id not in json.dumps([i.to_json() for i in result.images])
    assert user.stat().st_mode & 0o777 == stat.S_IMODE(user.stat().st_mode)  # untouched
    assert "LICENSE_ID" not in user.read_text()


SLOW_SKOPEO = """#!/bin/sh
# Counts the skopeo processes alive at once (each holds a file in running/ for 0.2 s).
dir="$(dirname "$0")"
touch "$dir/running/$$"
ls "$dir/running" | wc -l >> "$dir/counts.log"
sleep 0.2
rm -f "$dir/running/$$"
exit 1
"""


def test_copies_run_concurrently_within_the_bound(tmp_path: Path) -> None:
    plan = CopyPlan.load(_plan_file(tmp_path))
    fake = tmp_path / "bin" / "skopeo"
    (fake.parent / "running").mkdir(parents=True)
    fake.write_text(SLOW_SKOPEO)
    fake.chmod(0o755)
    result = copy_images(plan, CopyOptions(license_id="L", skopeo=str(fake), concurrency=3))
    assert result.count("failed") == len(plan.images) == 9
    counts = [int(c) for c in (fake.parent / "counts.log").read_text().split()]
    # Tag-only images stop at the source inspection; pinned ones also try the copy.
    assert len(counts) == 7 + 2 * 2
    assert max(counts) == 3


def test_relocated_report_has_one_warning_detail_per_warning(tmp_path: Path) -> None:
    """The relocated plan keeps the proxy plan's structured warnings (issue 21's contract:
    one ``warningDetails`` entry per warning, same order)."""
    from kotsrewrite import RegistryCredentials, RelocationOptions, RewriteOptions, rewrite

    base = tmp_path / "app.yaml"
    base.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n"
        "  containers: [{name: c, image: quay.io/acme/api:1}]\n---\n"
        "apiVersion: x.example.com/v1\nkind: Op\nmetadata: {name: o}\nspec:\n"
        "  image: quay.io/acme/op:1\n"
    )
    creds = RegistryCredentials(host="reg.example.com", username="u", password="p")
    result = rewrite(
        base,
        RewriteOptions(app_slug="acme", license_id="LIC-1", proxy_all=True),
        out=tmp_path / "out",
        dry_run=True,
        relocation=RelocationOptions(registry="reg.example.com/acme", credentials=creds),
    )
    report = result.report
    assert report["warnings"], "the unmanaged Op image should be warned about"
    assert [d["message"] for d in report["warningDetails"]] == report["warnings"]
    assert report["warningDetails"][0]["code"] == "unmanaged-field"


def test_verify_names_a_broken_copy_plan(tmp_path: Path) -> None:
    """verify knows a relocated midstream by its copy-plan.json; a broken one is a problem
    line naming the file, not a crash and not a silent proxy check."""
    out = tmp_path / "verified"
    auth = str(FIXTURES / "auth.json")
    argv = _rewrite_args(tmp_path, "--registry", "reg.example.com/acme", "--registry-auth", auth)
    code, _, err = _run(*argv, "--out", str(out))
    assert code == 0, err
    assert _run("verify", str(out))[0] == 0
    (out / "copy-plan.json").write_text("{not json")
    code, report, err = _run("verify", str(out))
    assert code == 1, err
    assert f"{out}/copy-plan.json: the copy plan is not JSON" in report
