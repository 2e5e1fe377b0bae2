"""Property: every scalar survives, through both outputs and their real consumers.

Generated ConfigMaps and Deployments whose values hold long lines, backslashes, quotes, ``#``,
tabs, CR, unicode, leading and trailing spaces and YAML 1.1 words go through ``post-render``
(read back as Helm would, with a YAML 1.1 reader) and through ``rewrite`` + real ``kubectl
kustomize``. Both must give the same objects, and those must equal the input except for the
intended changes: the private image renamed, the pull secret listed in the PodSpec, the
``kots.io/app-slug`` annotation, and the appended Secret. (Issue 13, item 2: ruamel's folding
of long double-quoted scalars added a space inside an escape.)
"""

from __future__ import annotations

import copy
import io
import json
import re
import shutil
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml as pyyaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kotsrewrite._cli import main

KUBECTL = shutil.which("kubectl")
pytestmark = [
    pytest.mark.kustomize,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed"),
]

PRIVATE = "quay.io/acme/web:1.0"
PUBLIC = "nginx:1.27"
PROXIED = f"proxy.replicated.com/proxy/acme/{PRIVATE}"
ARGS = ["--app-slug", "acme", "--license-id", "LIC-PROPS", "--offline"]

_ATOMS = st.sampled_from(
    [
        "\\",
        "\\\\",
        "\\d",
        '"',
        "'",
        "#",
        " #",
        "\t",
        "\r",
        "\r\n",
        "\n",
        " ",
        "  ",
        "é",
        "日本",
        "😀",
        ": ",
        "- ",
        "{",
        "}",
        "[",
        "]",
        "&a",
        "*a",
        "!t",
        "%",
        "@",
        "`",
        "|",
        ">",
    ]
)
_WORDS = st.sampled_from(
    [
        "on",
        "off",
        "yes",
        "no",
        "y",
        "n",
        "true",
        "False",
        "null",
        "~",
        "1.10",
        "0x1f",
        "012",
        "1e3",
        "2001-12-14",
        ".inf",
        "=",
        "<<",
        "1_000",
        "12:30:00",
        "",
    ]
)
_TEXT = st.lists(
    st.one_of(_ATOMS, _WORDS, st.text(string.ascii_letters + string.digits, max_size=8)),
    max_size=24,
).map("".join)
# Long runs of digits are left out: go-yaml reads a plain integer too large for int64 as a
# string (so kustomize writes it plain), where Python's YAML readers read a big integer.
_LONG = (
    st.tuples(_TEXT.filter(bool), st.integers(50, 700))
    .map(lambda t: (t[0] * t[1])[:12000])
    .filter(lambda s: not re.fullmatch(r"[-+0-9._:eExXoObB]*", s))
)
# What ruamel folded wrongly: a long line that must be double quoted (a tab) full of escapes.
_FOLDED = st.tuples(
    st.sampled_from(["\\d ", "\\\\ ", "a\\", "\\w+ \\\\", "\\ \t"]), st.integers(600, 2500)
).map(lambda t: "\t" + t[0] * t[1])
_VALUE = st.one_of(_TEXT, _WORDS, _LONG, _FOLDED, _TEXT.map(lambda s: f"  {s}  "))


@st.composite
def _objects(draw: st.DrawFn) -> list[dict[str, Any]]:
    data = draw(st.dictionaries(st.sampled_from([f"k{i}" for i in range(6)]), _VALUE))
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}
    if data:
        config_map["data"] = data
    annotations = draw(st.dictionaries(st.sampled_from(["a/x", "a/y", "b"]), _VALUE))
    env = [{"name": f"E{i}", "value": v} for i, v in enumerate(draw(st.lists(_VALUE, max_size=4)))]
    container: dict[str, Any] = {"name": "web", "image": draw(st.sampled_from([PRIVATE, PUBLIC]))}
    if env:
        container["env"] = env
    args = draw(st.lists(_VALUE, max_size=3))
    if args:
        container["args"] = args
    meta: dict[str, Any] = {"labels": {"app": "web"}}
    if annotations:
        meta["annotations"] = annotations
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": meta, "spec": {"containers": [container]}},
        },
    }
    return [config_map, deployment]


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {_key(o): o for o in objects}


class _Loader(pyyaml.SafeLoader):
    """PyYAML's YAML 1.1 reader, as go-yaml (Helm, kubectl) reads: ``=`` and a ``<<``
    value are strings."""


_Loader.add_constructor("tag:yaml.org,2002:value", _Loader.construct_yaml_str)
_Loader.add_constructor("tag:yaml.org,2002:merge", _Loader.construct_yaml_str)


def _load(text: str) -> list[dict[str, Any]]:
    return [d for d in pyyaml.load_all(text, Loader=_Loader) if d]


def _drop_annotation(meta: dict[str, Any]) -> None:
    annotations = meta.get("annotations", {})
    assert annotations.pop("kots.io/app-slug") == "acme"
    if not annotations:
        meta.pop("annotations")


def _undo_intended(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without the changes kotsrewrite means to make (commonAnnotations also go on
    the pod template, as kustomize puts them)."""
    obj = copy.deepcopy(obj)
    _drop_annotation(obj["metadata"])
    if obj["kind"] == "Deployment":
        _drop_annotation(obj["spec"]["template"]["metadata"])
        spec = obj["spec"]["template"]["spec"]
        container = spec["containers"][0]
        if container["image"] == PROXIED:
            assert spec.pop("imagePullSecrets") == [{"name": "acme-registry"}]
            container["image"] = PRIVATE
    return obj


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("known") / "known.yaml"
    path.write_text(
        "apiVersion: kots.io/v1beta1\nkind: Installation\nmetadata: {name: x}\nspec:\n"
        f"  knownImages:\n  - {{image: '{PRIVATE}', isPrivate: true}}\n"
        f"  - {{image: '{PUBLIC}', isPrivate: false}}\n"
    )
    return path


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(objects=_objects())
def test_post_render_and_kustomize_keep_every_scalar(
    objects: list[dict[str, Any]], known: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    text = "".join(f"---\n{json.dumps(o, ensure_ascii=False)}\n" for o in objects)

    # post-render, as Helm runs it and reads it back
    out, err = io.StringIO(), io.StringIO()
    stdin, sys.stdin = sys.stdin, io.StringIO(text)
    try:
        code = main(["post-render", *ARGS, "--known-images", str(known)], stdout=out, stderr=err)
    finally:
        sys.stdin = stdin
    assert code == 0, err.getvalue()
    rendered = _load(out.getvalue())

    # rewrite, then real kubectl kustomize
    work = tmp_path_factory.mktemp("props")
    (work / "app.yaml").write_text(text, encoding="utf-8")
    argv = ["rewrite", str(work / "app.yaml"), *ARGS, "--known-images", str(known)]
    argv += ["--out", str(work / "mid")]
    err = io.StringIO()
    assert main(argv, stdout=io.StringIO(), stderr=err) == 0, err.getvalue()
    assert KUBECTL is not None
    built = subprocess.run(
        [KUBECTL, "kustomize", str(work / "mid")], capture_output=True, text=True, check=True
    ).stdout
    kustomized = _load(built)

    got, want = _by_key(rendered), _by_key(kustomized)
    assert [k for k in want if k[0] == "Secret"] == [("Secret", "acme-registry")]
    # The midstream always holds the app namespace's secret; post-render adds it only where
    # a workload uses it.
    if ("Secret", "acme-registry") not in got:
        assert not any(o.get("kind") == "Deployment" and PRIVATE in json.dumps(o) for o in objects)
        want.pop(("Secret", "acme-registry"))
    assert got == want
    for obj in objects:
        assert _undo_intended(got[_key(obj)]) == obj
