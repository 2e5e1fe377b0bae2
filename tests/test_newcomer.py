"""Messages a newcomer can act on (issue 21): files named as the user can open them from where
they ran the command, for every command and every kind of error read from a file."""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

import kotsrewrite
from kotsrewrite import ImageField, Limits, ProbeOptions, kustomize_command
from kotsrewrite._cli import build_parser, main
from kotsrewrite._discovery import parse_image_field
from tests import lab

SLUG = ["--app-slug", "acme", "--license-id", "lic-123", "--offline"]
POD = (
    "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n"
    "  - name: c\n    image: {image}\n"
)


def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        code = main(list(argv), stdout=out, stderr=err)
    finally:
        sys.stdin = saved
    return code, out.getvalue(), err.getvalue()


def first_error(err: str) -> str:
    first, _, rest = err.partition("\n")
    assert first.startswith("kotsrewrite: error: "), err
    assert rest.startswith("hint: "), err
    return first.removeprefix("kotsrewrite: error: ")


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch directory that is also the current directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _bad1(root: Path) -> None:
    (root / "bad1").mkdir()
    (root / "bad1" / "ok.yaml").write_text(POD.format(name="ok", image="nginx:1"))
    (root / "bad1" / "backend.yaml").write_text(POD.format(name="b", image='"{{ .Values.image }}"'))


@pytest.mark.parametrize("typed", ["bad1", "bad1/", "./bad1"])
@pytest.mark.parametrize("command", ["images", "rewrite"])
def test_unrendered_template_names_the_file_through_the_base(
    here: Path, typed: str, command: str
) -> None:
    _bad1(here)
    argv = [command, typed] + (SLUG if command == "rewrite" else [])
    code, _, err = run(*argv)
    assert code == 2
    assert first_error(err).startswith("bad1/backend.yaml:7: unrendered template"), err
    assert (here / "bad1" / "backend.yaml").is_file()  # the path printed opens


def test_an_absolute_base_is_named_absolutely(here: Path) -> None:
    _bad1(here)
    code, _, err = run("rewrite", str(here / "bad1"), *SLUG)
    assert code == 2
    assert first_error(err).startswith(f"{here}/bad1/backend.yaml:7:"), err


def test_yaml_error_invalid_reference_and_a_single_file(here: Path) -> None:
    (here / "app" / "sub").mkdir(parents=True)
    (here / "app" / "sub" / "broken.yaml").write_text("apiVersion: v1\nkind: [a\n")
    code, _, err = run("images", "app")
    assert code == 2 and first_error(err).startswith("app/sub/broken.yaml:"), err
    (here / "app" / "sub" / "broken.yaml").write_text(POD.format(name="x", image="Quay.io/A:1"))
    code, _, err = run("rewrite", "app", *SLUG)
    assert code == 2
    assert first_error(err).startswith("app/sub/broken.yaml:7: invalid image reference"), err
    # A single file in a subdirectory, given by its path.
    code, _, err = run("rewrite", "app/sub/broken.yaml", *SLUG)
    assert code == 2 and first_error(err).startswith("app/sub/broken.yaml:7:"), err


def test_kustomize_base_errors_name_the_kustomization_and_shared_files(here: Path) -> None:
    (here / "shared").mkdir()
    (here / "shared" / "x.yaml").write_text(POD.format(name="x", image="'{{ .T }}'"))
    (here / "shared" / "kustomization.yaml").write_text("resources:\n- x.yaml\n")
    (here / "overlay").mkdir()
    (here / "overlay" / "kustomization.yaml").write_text("resources:\n- ../shared\n")
    code, _, err = run("images", "overlay")
    assert code == 2 and first_error(err).startswith("shared/x.yaml:7: unrendered"), err
    (here / "overlay" / "kustomization.yaml").write_text("resources:\n- missing.yaml\n")
    code, _, err = run("images", "overlay")
    assert code == 2
    assert first_error(err).startswith("overlay/kustomization.yaml:2: resource"), err


def test_warnings_and_the_table_name_files_through_the_base(here: Path) -> None:
    (here / "base").mkdir()
    (here / "base" / "op.yaml").write_text(
        "apiVersion: x/v1\nkind: Op\nmetadata: {name: o}\nspec:\n  image: quay.io/a/op:1\n"
    )
    (here / "base" / "pod.yaml").write_text(POD.format(name="p", image="nginx:1"))
    code, out, err = run("images", "base")
    assert code == 0
    assert "  base/pod.yaml:7 " in out  # the table
    assert "base/op.yaml:5" in out  # the unmanaged table
    code, _, err = run("rewrite", "base", *SLUG, "--dry-run")
    assert code == 0
    assert "kotsrewrite: warning: base/op.yaml:5: quay.io/a/op:1 in Op o" in err, err


def test_kots_files_and_known_images_are_named_as_typed(here: Path) -> None:
    _bad1(here)
    (here / "kots").mkdir()
    (here / "kots" / "license.yaml").write_text("apiVersion: kots.io/v1beta1\nkind: [\n")
    code, _, err = run("rewrite", "bad1", "--license", "kots/license.yaml")
    assert code == 2 and first_error(err).startswith("kots/license.yaml:"), err
    code, _, err = run("rewrite", "bad1", *SLUG, "--known-images", "kots/absent.yaml")
    assert code == 2 and first_error(err).startswith("kots/absent.yaml: cannot read"), err


def test_post_render_names_stdin(here: Path) -> None:
    code, out, err = run("post-render", *SLUG, stdin=POD.format(name="p", image="'$(X)'"))
    assert code == 2 and out == ""
    assert first_error(err).startswith("<stdin>:7: unrendered template"), err


def test_verify_names_the_midstream_as_typed(here: Path) -> None:
    (here / "mid").mkdir()
    (here / "mid" / "kustomization.yaml").write_text("- not a mapping\n")
    code, _, err = run("verify", "mid")
    assert code == 2 and first_error(err).startswith("mid/kustomization.yaml: "), err
    code, _, err = run("verify", "nowhere")
    assert code == 2 and first_error(err) == "nowhere: no such directory", err


def test_a_helm_chart_directory_says_to_render_it(here: Path) -> None:
    (here / "chart" / "templates").mkdir(parents=True)
    (here / "chart" / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 1.0.0\n")
    (here / "chart" / "values.yaml").write_text("image: nginx\n")
    (here / "chart" / "templates" / "pod.yaml").write_text(
        POD.format(name="{{ .Release.Name }}", image="{{ .Values.image }}")
    )
    code, _, err = run("rewrite", "chart", *SLUG)
    assert code == 2
    assert first_error(err) == "chart/Chart.yaml: a Helm chart, not rendered manifests", err
    assert "helm template" in err and "post-render" in err


# -- --help: every option says what it does and its default ---------------------------------


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"": parser, **sub.choices}


def _library_defaults() -> dict[str, str]:
    """Options whose default lives in the library: the help must give that very value."""
    probe = ProbeOptions()
    return {
        "--max-file-bytes": str(Limits().max_file_bytes),
        "--max-documents": str(Limits().max_documents),
        "--concurrency": str(probe.concurrency),
        "--per-registry": str(probe.per_registry),
        "--timeout": f"{probe.timeout:g}",
    }


@pytest.mark.parametrize("command", ["", "images", "probe", "rewrite", "post-render", "verify"])
def test_every_option_says_what_it_does_and_its_default(command: str) -> None:
    parser = _subparsers()[command]
    assert parser.description, f"{command or 'kotsrewrite'} has no description"
    library = _library_defaults()
    checked = 0
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = action.option_strings[-1] if action.option_strings else action.dest
        text = action.help or ""
        assert text.strip(), f"{command} {name}: no help"
        default = action.default
        if name in library:
            assert re.search(rf"default:? {library[name]}\b", text), (name, text)
            checked += 1
        elif default not in (None, False, [], argparse.SUPPRESS):
            assert "default" in text and str(default) in text, (command, name, text)
            checked += 1
    if command in ("rewrite", "post-render"):
        assert checked >= 9  # namespace, proxy host, registry, on-unknown, limits, transport


# -- --image-field as the tool prints fields ---------------------------------------------------

CM = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\n"
    "data:\n  image: quay.io/acme/tool:1.0\n"
)


def test_image_field_in_the_dotted_spelling_the_warning_prints(here: Path) -> None:
    (here / "base").mkdir()
    (here / "base" / "cm.yaml").write_text(CM)
    (here / "base" / "pod.yaml").write_text(POD.format(name="p", image="quay.io/acme/api:1"))
    code, _, err = run("rewrite", "base", *SLUG, "--out", "mid0")
    assert code == 0
    assert "ConfigMap cfg field data.image is not rewritten" in err  # how it names the field
    # What a user then types: the field as printed, dotted.
    code, _, err = run(
        "rewrite", "base", *SLUG, "--out", "mid", "--image-field", "ConfigMap:data.image"
    )
    assert code == 0, err
    assert "not rewritten" not in err and "matches nothing" not in err, err
    # The real consumer: kustomize renames the ConfigMap's image.
    built = subprocess.run(
        [*kustomize_command(), "mid"], capture_output=True, text=True, check=True
    ).stdout
    assert "image: proxy.replicated.com/proxy/acme/quay.io/acme/tool:1.0" in built, built
    code, out, _ = run(
        "images", "base", "--format", "json", "--image-field", "ConfigMap:data.image"
    )
    assert code == 0 and json.loads(out)["unmanaged"] == []


@pytest.mark.parametrize(
    ("text", "kind", "path"),
    [
        ("ConfigMap:data.image", "ConfigMap", "data/image"),
        ("Op:spec.steps[0].image", "Op", "spec/steps[]/image"),
        ("Op:spec.steps[].image", "Op", "spec/steps[]/image"),
        ("Op:spec/steps[]/image", "Op", "spec/steps[]/image"),
        ("*:spec/app.image", "*", "spec/app.image"),  # a slash path keeps dotted keys
    ],
)
def test_image_field_spellings(text: str, kind: str, path: str) -> None:
    assert parse_image_field(text) == ImageField(kind, path)


@pytest.mark.parametrize("command", ["images", "rewrite"])
def test_an_image_field_matching_nothing_is_warned_about(here: Path, command: str) -> None:
    (here / "base").mkdir()
    (here / "base" / "cm.yaml").write_text(CM)
    extra = [*SLUG, "--dry-run"] if command == "rewrite" else []
    code, _, err = run(command, "base", *extra, "--image-field", "Configmap:data.image")
    assert code == 0
    assert (
        "kotsrewrite: warning: image field Configmap:data/image matches nothing: no Configmap"
        " in the base has a string at data.image; check the kind and the path"
    ) in err, err
    code, _, err = run(command, "base", *extra, "--image-field", "ConfigMap:data.image")
    assert code == 0 and "matches nothing" not in err, err


# -- load_license / load_application ------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "acme" / "kots"


def test_typed_loaders_are_public_and_read_the_example() -> None:
    assert {"load_license", "load_application", "KotsLicense", "KotsApplication"} <= set(
        kotsrewrite.__all__
    )
    lic = kotsrewrite.load_license(EXAMPLE / "license.yaml")
    assert isinstance(lic, kotsrewrite.KotsLicense) and attrs.has(type(lic))
    assert (lic.app_slug, lic.license_id) == ("acme-platform", "2kQ9fakeLicenseId")
    assert "2kQ9fakeLicenseId" not in repr(lic)
    app = kotsrewrite.load_application(EXAMPLE / "application.yaml")
    assert app == kotsrewrite.KotsApplication(("acme-jobs",), proxy_public_images=False)


LICENSE = "apiVersion: kots.io/v1beta1\nkind: License\nmetadata: {name: l}\nspec:\n"


@pytest.mark.parametrize(
    ("loader", "text", "line", "message"),
    [
        ("license", LICENSE + "  appSlug: a\n  licenseID: [secret-id]\n", 6, "licenseID is not"),
        ("license", LICENSE + "  appSlug: {a: 1}\n", 5, "spec.appSlug is not a string"),
        ("license", LICENSE.replace("License", "Application"), 2, "a KOTS Application, not"),
        ("license", LICENSE + "  appSlug: [a\n", 6, "YAML error"),
        ("license", LICENSE.replace("spec:\n", "spec: 3\n"), 4, "License has no spec"),
        (
            "application",
            LICENSE.replace("License", "Application") + "  proxyPublicImages: maybe\n",
            5,
            "proxyPublicImages is not true or false",
        ),
        (
            "application",
            LICENSE.replace("License", "Application") + "  additionalNamespaces: [a, [b]]\n",
            5,
            "additionalNamespaces is not a list of strings",
        ),
    ],
)
def test_loader_errors_name_file_line_and_hint(
    here: Path, loader: str, text: str, line: int, message: str
) -> None:
    (here / "kots").mkdir()
    (here / "kots" / "f.yaml").write_text(text)
    load = kotsrewrite.load_license if loader == "license" else kotsrewrite.load_application
    with pytest.raises(kotsrewrite.InputError) as info:
        load("kots/f.yaml")
    exc = info.value
    assert (exc.file, exc.line) == ("kots/f.yaml", line), repr(exc)
    assert message in exc.message and exc.hint
    assert "secret-id" not in str(exc) + repr(exc) + exc.hint
    # The CLI: the same error, one line, a hint, exit 2.
    code, _, err = run("rewrite", "-", f"--{loader}", "kots/f.yaml", *SLUG)
    assert code == 2
    assert first_error(err) == f"kots/f.yaml:{line}: {exc.message}", err


def test_loader_given_a_directory_or_nothing(here: Path) -> None:
    (here / "kots").mkdir()
    with pytest.raises(kotsrewrite.InputError, match="a directory, not a file"):
        kotsrewrite.load_license("kots")
    with pytest.raises(kotsrewrite.InputError, match="No such file") as info:
        kotsrewrite.load_application("kots/app.yaml")
    assert info.value.file == "kots/app.yaml" and info.value.hint


# -- a plain-HTTP registry probed over https -------------------------------------------------


@pytest.mark.registry
def test_plain_http_registry_without_insecure_flag_gets_a_hint_and_no_downgrade(
    anon_registry: lab.Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = anon_registry.ref("app", "1.0")
    host = anon_registry.host
    code, out, err = run("probe", image, "--format", "json")
    assert code == 0
    (entry,) = json.loads(out)["images"]
    assert entry["verdict"] == "unreachable"  # never downgraded to http by itself
    steps = entry["evidence"]["steps"]
    assert all(s["url"].startswith("https://") for s in steps), steps
    assert steps[-1]["cause"] == "plain_http"
    assert "answered plain HTTP" in entry["evidence"]["reason"]
    (warning,) = json.loads(out)["warnings"]  # probe's JSON records the warning too
    assert warning["code"] == "unknown-verdict" and warning["image"] == image
    assert warning["causes"] == [{"cause": "plain_http", "host": host}]
    assert f"kotsrewrite: warning: {warning['message']}\n" in err
    hint = (
        f"hint: {host} answered plain HTTP, not TLS; if that registry is meant to be reached"
        f" without TLS, pass --insecure-registry {host}\n"
    )
    assert err.count(hint) == 1, err
    # The library names no flag: the typed cause is what the CLI maps to the hint.
    (result,) = kotsrewrite.probe_sync([kotsrewrite.parse_image(image)])
    assert result.evidence.causes() == ((kotsrewrite.ProbeCause.PLAIN_HTTP, host),)
    assert "--insecure-registry" not in result.evidence.reason
    # rewrite says the same, once per registry, and the flag then works.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "p.yaml").write_text(POD.format(name="p", image=image))
    slug = ["--app-slug", "acme", "--license-id", "lic-123"]
    code, out, err = run("rewrite", "base", *slug, "--dry-run", "--report", "-")
    assert code == 0 and err.count(hint) == 1, err
    (detail,) = json.loads(out)["warningDetails"]
    assert detail["causes"] == [{"cause": "plain_http", "host": host}]
    code, out, err = run("probe", image, "--insecure-registry", host)
    assert code == 0 and out.split()[3] == "public" and "hint:" not in err, (out, err)


# -- scripts/setup on a fresh Debian: python3-venv -------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def _shim(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _ensure_venv(tmp_path: Path, *, venv_ok: bool, apt_fixes: bool) -> tuple[int, str, str]:
    """Run scripts/ensure-venv with a python3 whose ``-m venv`` fails until "python3-venv" is
    installed, and an apt-get that records its calls (and installs it when ``apt_fixes``)."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    if venv_ok:
        (state / "installed").touch()
    _shim(
        bin_dir,
        "python3",
        'if [ "$1" = -m ] && [ "$2" = venv ]; then\n'
        f"  [ -f {state}/installed ] && exit 0\n"
        '  echo "ensurepip is not available" >&2; exit 1\nfi\nexit 3\n',
    )
    install = f"touch {state}/installed" if apt_fixes else ":"
    _shim(
        bin_dir,
        "apt-get",
        f'echo "$*" >> {state}/apt.log\ncase "$*" in *install*python3-venv*) {install};; esac\n',
    )
    _shim(bin_dir, "sudo", 'exec "$@"\n')
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [str(ROOT / "scripts" / "ensure-venv"), "python3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    log = (state / "apt.log").read_text() if (state / "apt.log").exists() else ""
    return proc.returncode, log, proc.stderr


def test_setup_installs_python3_venv_when_venv_is_missing(tmp_path: Path) -> None:
    code, apt, err = _ensure_venv(tmp_path, venv_ok=False, apt_fixes=True)
    assert code == 0, err
    assert "install -y -qq python3-venv" in apt, apt


def test_setup_leaves_a_working_venv_alone(tmp_path: Path) -> None:
    code, apt, err = _ensure_venv(tmp_path, venv_ok=True, apt_fixes=True)
    assert code == 0 and apt == "", (apt, err)


def test_setup_says_what_to_do_when_python3_venv_does_not_help(tmp_path: Path) -> None:
    code, apt, err = _ensure_venv(tmp_path, venv_ok=False, apt_fixes=False)
    assert code == 1 and "python3-venv" in apt
    assert "still fails after installing python3-venv" in err and "hint:" in err


def test_setup_checks_venv_before_creating_dot_venv() -> None:
    text = (ROOT / "scripts" / "setup").read_text()
    assert 0 <= text.index("scripts/ensure-venv") < text.index("-m venv .venv")


# -- warnings recorded in the JSON outputs ---------------------------------------------------


def _warned(err: str) -> list[str]:
    return [
        line.removeprefix("kotsrewrite: warning: ")
        for line in err.splitlines()
        if "warning:" in line
    ]


def test_report_records_every_warning_structured(here: Path) -> None:
    (here / "base").mkdir()
    (here / "base" / "cm.yaml").write_text(CM)
    (here / "base" / "pod.yaml").write_text(POD.format(name="p", image="quay.io/acme/api:1"))
    code, _, err = run("rewrite", "base", *SLUG, "--report", "report.json")
    assert code == 0
    report = json.loads((here / "report.json").read_text())
    printed = _warned(err)
    assert len(printed) == 2
    assert report["warnings"] == printed  # unchanged: the lines stderr shows
    details = report["warningDetails"]
    assert [d["message"] for d in details] == printed
    unknown, unmanaged = details
    assert unknown == {
        "code": "unknown-verdict",
        "message": printed[0],
        "image": "quay.io/acme/api:1",
        "verdict": None,
        "onUnknown": "private",
        "action": "proxy",
        "reason": "no verdict: not probed (offline) and not in the known images",
        "causes": [],
    }
    assert unmanaged["code"] == "unmanaged-field"
    assert unmanaged["imageField"] == "ConfigMap:data/image"
    assert (unmanaged["location"]["file"], unmanaged["location"]["line"]) == ("cm.yaml", 5)
    # The same with stderr hidden (--quiet): nothing printed, all recorded.
    code, _, err = run("rewrite", "base", *SLUG, "--report", "quiet.json", "--quiet")
    assert code == 0 and err == ""
    assert json.loads((here / "quiet.json").read_text())["warningDetails"] == details


def test_post_render_report_records_warnings(here: Path) -> None:
    pod = POD.format(name="p", image="quay.io/acme/api:1")
    code, out, err = run("post-render", *SLUG, "--report", "r.json", "--quiet", stdin=pod)
    assert code == 0 and err == "" and "proxy.replicated.com/proxy/acme" in out
    (entry,) = json.loads((here / "r.json").read_text())["warningDetails"]
    assert entry["code"] == "unknown-verdict" and entry["image"] == "quay.io/acme/api:1"


def test_dry_run_with_report_on_stdout_is_json_alone(here: Path) -> None:
    (here / "base").mkdir()
    (here / "base" / "pod.yaml").write_text(POD.format(name="p", image="quay.io/acme/api:1"))
    code, out, err = run("rewrite", "base", *SLUG, "--dry-run", "--report", "-")
    assert code == 0
    assert json.loads(out)["dryRun"] is True  # stdout parses: the listing went to stderr
    assert "# would write" in err and "proxy       -" in err


# -- what a newcomer types wrong ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["rewrite", "x", "--licence-id", "b"], "did you mean --license-id?"),
        (["imagse", "x"], "did you mean images?"),
        (["rewrite", "x", "--on-unknown", "privat"], "did you mean private?"),
        (["images", "x", "--max-files-bytes=3"], "did you mean --max-file-bytes?"),
    ],
)
def test_a_typo_gets_the_closest_option(argv: list[str], hint: str) -> None:
    code, out, err = run(*argv)
    assert code == 2 and out == ""
    first, _, rest = err.partition("\n")
    assert first.startswith("kotsrewrite") and ": error: " in first, err
    assert rest.startswith(f"hint: {hint} (run 'kotsrewrite"), err


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["--offline", "rewrite", "x"], "--offline goes after the command: kotsrewrite rewrite"),
        (["images", "x", "--app-slug", "a"], "--app-slug is an option of rewrite and post-render"),
        (
            ["verify", "x", "--timeout=3"],
            "--timeout is an option of probe, rewrite and post-render",
        ),
    ],
)
def test_an_option_in_the_wrong_place(argv: list[str], hint: str) -> None:
    code, _, err = run(*argv)
    assert code == 2 and err.partition("\n")[2].startswith(f"hint: {hint}"), err


def test_an_unknown_option_with_nothing_close_keeps_the_plain_hint() -> None:
    code, _, err = run("rewrite", "x", "--frobnicate")
    assert code == 2 and err.endswith("hint: run 'kotsrewrite rewrite --help'\n"), err


def test_out_inside_the_base_is_refused_and_nothing_written(here: Path) -> None:
    (here / "base").mkdir()
    (here / "base" / "pod.yaml").write_text(POD.format(name="p", image="nginx:1"))
    code, _, err = run("rewrite", "base", *SLUG, "--out", "base/mid")
    assert code == 2
    assert first_error(err).startswith("base/mid: inside the base directory base"), err
    assert sorted(p.name for p in (here / "base").iterdir()) == ["pod.yaml"]
    # A single file: the midstream beside it is the default, and fine.
    code, _, err = run("rewrite", "base/pod.yaml", *SLUG)
    assert code == 0, err


def test_license_and_application_swapped(here: Path) -> None:
    code, _, err = run("rewrite", "-", "--license", str(EXAMPLE / "application.yaml"), *SLUG)
    assert code == 2 and "a KOTS Application, not a License" in err
    code, _, err = run("rewrite", "-", "--application", str(EXAMPLE / "license.yaml"), *SLUG)
    assert code == 2 and "a KOTS License, not an Application" in err


def test_cache_ttl_must_be_positive() -> None:
    code, _, err = run("rewrite", "x", *SLUG, "--cache-ttl", "-5")
    assert code == 2 and "--cache-ttl: must be positive" in err, err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("command", ["images", "rewrite", "post-render"])
def test_stdin_at_a_terminal_is_refused_instead_of_waiting(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", _Terminal(""))
    argv = [command] + ([] if command == "post-render" else ["-"])
    argv += SLUG if command != "images" else []
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    assert code == 2
    assert first_error(err.getvalue()) == (
        "<stdin>: reads manifests from stdin, but stdin is a terminal"
    )
    assert "| kotsrewrite" in err.getvalue() or "--post-renderer" in err.getvalue()


def test_a_midstream_written_beside_a_file_is_not_read_back_as_manifests(here: Path) -> None:
    (here / "app").mkdir()
    (here / "app" / "pod.yaml").write_text(POD.format(name="p", image="quay.io/acme/api:1"))
    code, _, err = run("rewrite", "app/pod.yaml", *SLUG)  # writes app/midstream/ (default)
    assert code == 0 and (here / "app" / "midstream" / "pull-secret.yaml").is_file(), err
    code, out, err = run("images", "app", "--format", "json")
    assert code == 0, err
    (image,) = json.loads(out)["images"]
    assert [loc["file"] for loc in image["locations"]] == ["pod.yaml"]
    code, _, err = run("rewrite", "app", *SLUG, "--out", "mid")
    assert code == 0, err
    assert not (here / "app" / "kustomization.yaml").exists()  # never written into the input
    listed = (here / "mid" / "base" / "kustomization.yaml").read_text()
    assert "midstream" not in listed and "pod.yaml" in listed


def test_a_license_without_a_field_names_the_file(here: Path) -> None:
    (here / "l.yaml").write_text(LICENSE + "  appSlug: acme\n")
    code, _, err = run("rewrite", "-", "--license", "l.yaml", "--offline")
    assert code == 2 and first_error(err) == "l.yaml: the License has no spec.licenseID", err
    assert "--license-id ID" in err
    (here / "l.yaml").write_text(LICENSE + "  licenseID: x\n")
    code, _, err = run("rewrite", "-", "--license", "l.yaml", "--offline")
    assert code == 2 and first_error(err) == "l.yaml: the License has no spec.appSlug", err


def test_a_kustomization_file_given_as_the_input(here: Path) -> None:
    (here / "base").mkdir()
    (here / "base" / "pod.yaml").write_text(POD.format(name="p", image="nginx:1"))
    (here / "base" / "kustomization.yaml").write_text("resources: [pod.yaml]\n")
    code, _, err = run("images", "base/kustomization.yaml")
    assert code == 2
    assert first_error(err) == "base/kustomization.yaml: a kustomization file, not manifests"
    assert "give its directory (base)" in err
    assert run("images", "base")[0] == 0


@pytest.mark.parametrize("report", ["kots", "nowhere/r.json"])
def test_an_unwritable_report_is_refused_before_writing_anything(here: Path, report: str) -> None:
    (here / "kots").mkdir()
    (here / "base").mkdir()
    (here / "base" / "pod.yaml").write_text(POD.format(name="p", image="nginx:1"))
    code, _, err = run("rewrite", "base", *SLUG, "--report", report)
    assert code == 2
    assert first_error(err).startswith(f"{report}: cannot write the report"), err
    assert "--report report.json" in err
    assert sorted(p.name for p in here.iterdir()) == ["base", "kots"]  # no midstream
    assert sorted(p.name for p in (here / "base").iterdir()) == ["pod.yaml"]


def test_version() -> None:
    code, out, _ = run("--version")
    assert code == 0 and out == f"kotsrewrite {kotsrewrite.__version__}\n"


def test_a_yaml_error_in_an_unrendered_template_says_to_render(here: Path) -> None:
    (here / "templates").mkdir()
    (here / "templates" / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n{{- if .Values.x }}\n"
        "  labels: {a: b}\n{{- end }}\nspec:\n  containers:\n  - name: c\n    image: nginx\n"
    )
    code, _, err = run("images", "templates")
    assert code == 2
    assert first_error(err).startswith("templates/pod.yaml:6: YAML error"), err
    assert "hint: line 5 holds a template ({{ ...): if it is not rendered, render" in err
    assert "helm template" in err
    # Without a template, the plain YAML hint.
    (here / "templates" / "pod.yaml").write_text("apiVersion: v1\nkind: [\n")
    code, _, err = run("images", "templates")
    assert code == 2 and "holds a template" not in err and "hint: fix the YAML syntax" in err


def test_an_empty_input_is_warned_about(here: Path) -> None:
    # e.g. `helm template ... | kotsrewrite rewrite -` after helm failed: not a silent success.
    code, _, err = run("rewrite", "-", *SLUG, "--dry-run", stdin="")
    assert code == 0
    assert "kotsrewrite: warning: no Kubernetes objects in stdin" in err, err
    (here / "c.yaml").write_text("---\n# only a comment\n")
    code, _, err = run("images", "c.yaml")
    assert code == 0 and "warning: no Kubernetes objects in c.yaml" in err, err
