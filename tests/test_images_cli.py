"""`kotsrewrite images` through the CLI: golden JSON, the table, and the bad-input corpus."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from kotsrewrite._cli import main

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = sorted(p for p in (FIXTURES / "images").iterdir() if p.is_dir())
BAD = sorted((FIXTURES / "bad").glob("*.expect"))


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _case_args(case: Path) -> list[str]:
    args = case / "args"
    return args.read_text().splitlines() if args.exists() else []


_HAS_KUBECTL = shutil.which("kubectl") is not None


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            p,
            id=p.name,
            marks=[pytest.mark.kustomize, pytest.mark.skipif(not _HAS_KUBECTL, reason="no kubectl")]
            if (p / "input" / "kustomization.yaml").is_file()
            else [],
        )
        for p in GOLDEN
    ],
)
def test_golden_json(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(case)  # warnings name files as given: input/FILE
    code, out, err = run("images", "input", "--format", "json", *_case_args(case))
    assert code == 0, err
    got = json.loads(out)
    expected_path = case / "expected.json"
    if os.environ.get("KOTSREWRITE_UPDATE_GOLDEN"):
        expected_path.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(expected_path.read_text())


def test_golden_cases_cover_the_issue() -> None:
    """Every kind and reference form the issue names appears in some golden output."""
    kinds: set[str] = set()
    slots: set[str] = set()
    images: set[str] = set()
    for case in GOLDEN:
        data = json.loads((case / "expected.json").read_text())
        for entry in data["images"]:
            images.add(entry["image"])
            for loc in entry["locations"]:
                kinds.add(loc["kind"])
                slots.add(loc["slot"])
        kinds.update(loc["kind"] for loc in data["unmanaged"])
    assert {
        "Pod",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "ReplicationController",
        "Job",
        "CronJob",
        "PodTemplate",
        "Rollout",
        "Service",
        "PipelineRun",
        "Widget",
    } <= kinds
    assert {"containers", "initContainers", "ephemeralContainers", "volumes", "field"} <= slots
    assert "busybox" in images  # Docker Hub short name
    assert "nginx:1.10" in images  # quoted tag that YAML would read as a float
    assert any(":8443/" in i or ":5000/" in i for i in images)  # registry with a port
    assert any(":" in i.split("@")[0].rsplit("/", 1)[-1] and "@sha256:" in i for i in images)
    assert any("@sha256:" in i and ":" not in i.split("@")[0].rsplit("/", 1)[-1] for i in images)


def test_json_contract_shape(tmp_path: Path) -> None:
    case = FIXTURES / "images" / "workloads" / "input"
    code, out, _ = run("images", str(case), "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert list(data)[:2] == ["images", "unmanaged"]
    names = [entry["image"] for entry in data["images"]]
    assert names == sorted(names) and len(names) == len(set(names))
    nginx = next(e for e in data["images"] if e["image"] == "nginx:1.10")
    assert [(loc["file"], loc["line"], loc["kind"]) for loc in nginx["locations"]] == [
        ("02-apps.yaml", 13, "Deployment"),
        ("02-apps.yaml", 63, "ReplicationController"),
    ]
    loc = nginx["locations"][0]
    required = {"file", "line", "kind", "namespace", "name", "container", "field"}
    assert required <= set(loc)
    assert loc["field"] == "spec.template.spec.containers[0].image"
    assert loc["namespace"] == "shop" and loc["name"] == "web" and loc["container"] == "web"
    code, out, _ = run("images", str(FIXTURES / "images" / "lists" / "input"), "--format", "json")
    unmanaged = json.loads(out)["unmanaged"]
    assert unmanaged and required | {"image"} <= set(unmanaged[0])


def test_single_file_uses_its_name(tmp_path: Path) -> None:
    path = FIXTURES / "images" / "workloads" / "input" / "03-batch.yml"
    code, out, _ = run("images", str(path), "--format", "json")
    assert code == 0
    files = {loc["file"] for e in json.loads(out)["images"] for loc in e["locations"]}
    assert files == {"03-batch.yml"}


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (FIXTURES / "images" / "workloads" / "input" / "02-apps.yaml").read_text()
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    code, out, _ = run("images", "-", "--format", "json")
    assert code == 0
    locs = [loc for e in json.loads(out)["images"] for loc in e["locations"]]
    assert {loc["file"] for loc in locs} == {"<stdin>"}
    assert len(locs) == 7


def test_table_is_aligned_and_fits_100_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES / "images" / "custom-resources")
    code, out, _ = run("images", "input")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["IMAGE", "/", "WHERE", "OBJECT", "CONTAINER"]
    assert "quay.io/acme/fetch:0.3" in lines
    row = lines[lines.index("quay.io/acme/fetch:0.3") + 1]
    assert row.split() == ["input/tekton.yaml:27", "PipelineRun", "ci/build", "fetch", "[init]"]
    object_columns = {line.index("PipelineRun") for line in lines if "PipelineRun ci/" in line}
    assert len(object_columns) == 2  # managed table and unmanaged table, each aligned
    assert all(len(line) <= 100 for line in lines)
    assert "7 images in 7 places." in lines
    assert any(line.startswith("3 unmanaged image fields") for line in lines)
    # deterministic
    assert run("images", "input")[1] == out


def test_table_squeezes_long_cells_but_never_images(tmp_path: Path) -> None:
    long_name = "n" * 80
    image = "registry.example.com:5000/" + "a" * 90 + ":1"
    (tmp_path / "p.yaml").write_text(
        f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {long_name}\n  namespace: {long_name}\n"
        f"spec:\n  containers:\n  - name: {long_name}\n    image: {image}\n"
    )
    code, out, _ = run("images", str(tmp_path))
    assert code == 0
    lines = out.splitlines()
    assert image in lines
    assert all(len(line) <= 100 for line in lines if line != image)
    assert any("..." in line for line in lines)


def test_warnings_go_to_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES / "images" / "custom-resources")
    code, out, err = run("images", "input")
    assert code == 0
    assert "kotsrewrite: warning: input/tekton.yaml:16:" in err
    assert "Not A Reference" in err
    assert "Not A Reference" not in out


def test_image_field_makes_field_managed() -> None:
    case = FIXTURES / "images" / "image-fields" / "input"
    code, out, _ = run(
        "images", str(case), "--format", "json", "--image-field", "Widget:spec/image"
    )
    assert code == 0
    data = json.loads(out)
    widget = next(e for e in data["images"] if e["image"] == "quay.io/acme/widget:5")
    assert widget["locations"][0]["slot"] == "field"
    assert "quay.io/acme/widget:5" not in {u["image"] for u in data["unmanaged"]}


@pytest.mark.parametrize("bad", ["nokind", ":spec/image", "Kind:", "Kind:spec//image"])
def test_bad_image_field_is_a_usage_error(bad: str) -> None:
    code, _, err = run("images", str(FIXTURES / "images" / "lists" / "input"), "--image-field", bad)
    assert code == 2
    assert err.startswith("kotsrewrite: error: --image-field: invalid image field")
    assert "hint:" in err


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    code, _, err = run("images", str(tmp_path / "nope"))
    assert code == 2 and "no such file or directory" in err
    code, _, err = run("images", str(tmp_path))
    assert code == 2 and "no manifests" in err


@pytest.mark.parametrize("expect", BAD, ids=[p.stem for p in BAD])
def test_bad_input_corpus(expect: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code_text, where, message = expect.read_text().splitlines()[:3]
    target = next(
        p for p in expect.parent.iterdir() if p.stem == expect.stem and p.suffix != ".expect"
    )
    # Run beside the input as a user would: a file of a directory is named through it
    # (kustomize-missing/kustomization.yaml:3); the .expect files name it within the base.
    monkeypatch.chdir(expect.parent)
    if target.is_dir():
        where = f"{target.name}/{where}"
    start = time.monotonic()
    code, out, err = run("images", target.name, "--format", "json")
    assert time.monotonic() - start < 2.0
    assert code == int(code_text)
    assert out == ""
    first, _, rest = err.partition("\n")
    assert first.startswith(f"kotsrewrite: error: {where}: "), err
    assert message in first
    assert rest.startswith("hint: ")


def test_bad_corpus_is_large_enough() -> None:
    assert len(BAD) >= 25


# -- hostile inputs generated on the fly ------------------------------------------------------


def _timed_error(*argv: str) -> str:
    start = time.monotonic()
    code, _, err = run(*argv)
    assert time.monotonic() - start < 2.0, "must fail fast"
    assert code == 2
    return err


def test_file_too_large_fails_fast_without_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # files named as a user there types them
    big = tmp_path / "big.yaml"
    with big.open("wb") as fh:  # sparse: 65 MB that cost nothing to create
        fh.truncate(65 * 1024 * 1024)
    err = _timed_error("images", "big.yaml")
    assert err.startswith("kotsrewrite: error: big.yaml: file too large (68,157,440 bytes")
    assert "--max-file-bytes" in err


def test_max_file_bytes_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # files named as a user there types them
    path = FIXTURES / "images" / "lists" / "input" / "lists.yaml"
    err = _timed_error("images", str(path), "--max-file-bytes", "100")
    assert "file too large" in err
    assert run("images", str(path), "--max-file-bytes", "100000")[0] == 0


def test_too_many_documents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # files named as a user there types them
    doc = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
    (tmp_path / "many.yaml").write_text(doc * 11)
    err = _timed_error("images", "many.yaml", "--max-documents", "10")
    assert err.startswith("kotsrewrite: error: many.yaml:42: more than 10 YAML documents")
    assert run("images", "many.yaml", "--max-documents", "11")[0] == 0


def test_stdin_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("a" * 1000))
    err = _timed_error("images", "-", "--max-file-bytes", "999")
    assert err.startswith("kotsrewrite: error: <stdin>: file too large")


@pytest.mark.parametrize("opener", ["[", "{a: ", "\n- ", "\n? "])
def test_very_deep_nesting_fails_fast(
    tmp_path: Path, opener: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # files named as a user there types them
    # libyaml itself crashes the process on ~100k levels; we must refuse before it parses.
    text = "apiVersion: v1\nkind: X\nspec: " + opener + opener.lstrip("\n") * 200_000
    (tmp_path / "deep.yaml").write_text(text)
    err = _timed_error("images", "deep.yaml")
    line = 4 if opener.startswith("\n") else 3
    assert err.startswith(f"kotsrewrite: error: deep.yaml:{line}: nesting deeper than"), err


def test_moderately_deep_nesting_is_refused_at_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # files named as a user there types them
    (tmp_path / "deep.yaml").write_text(
        "apiVersion: v1\nkind: X\nspec: " + "[" * 500 + "]" * 500 + "\n"
    )
    err = _timed_error("images", "deep.yaml")
    assert err.startswith("kotsrewrite: error: deep.yaml:3: nesting deeper than 200 levels")


def test_alias_bomb_billion_laughs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # files named as a user there types them
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata: {name: lol}", "data:"]
    lines.append('  l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]')
    for i in range(1, 20):
        lines.append(f"  l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 10) + "]")
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    err = _timed_error("images", "bomb.yaml")
    assert "bomb.yaml:" in err and "alias bomb" in err


def test_binary_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = io.TextIOWrapper(io.BytesIO(b"apiVersion: v1\n\xff\xfe\x00"), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", raw)
    err = _timed_error("images", "-")
    assert err.startswith("kotsrewrite: error: <stdin>: not valid UTF-8")
