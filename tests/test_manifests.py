"""load_manifests and node_to_data: modes, documents, YAML 1.1 data, limits."""

from __future__ import annotations

import gc
import io
import math
import shutil
from pathlib import Path

import pytest
from ruamel.yaml.nodes import MappingNode

from kotsrewrite import InputError, Limits, load_manifests, node_to_data
from kotsrewrite._manifests import _new_yaml, scalar_kind

FIXTURES = Path(__file__).parent / "fixtures" / "images"
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"


def test_uses_the_libyaml_c_parser() -> None:
    from ruamel.yaml.clib._ruamel_yaml import CParser  # type: ignore[import-not-found]

    yaml = _new_yaml()
    assert list(yaml.compose_all("a: 1\n"))
    assert type(yaml.parser) is CParser


def test_directory_is_recursive_sorted_and_skips_other_files(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "b" / "x.yml").write_text(CM.format(name="bx"))
    (tmp_path / "a.yaml").write_text(CM.format(name="a"))
    (tmp_path / "c.json").write_text('{"apiVersion": "v1", "kind": "ConfigMap"}')
    (tmp_path / "README.md").write_text("# not yaml: [")
    (tmp_path / ".hidden" / "h.yaml").write_text("not: [valid")
    (tmp_path / "values.txt").write_text("{{ nope")
    base = load_manifests(tmp_path)
    assert base.mode == "directory" and base.root == tmp_path
    assert base.files == ("a.yaml", "b/x.yml", "c.json")
    assert [d.name for d in base.documents] == ["a", "bx", None]
    assert isinstance(base.documents[0].node, MappingNode)
    assert base.text is None


def test_single_file_and_documents(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "# leading comment\n---\n---\n"
        + CM.format(name="one")
        + "  namespace: ns\n---\n"
        + "apiVersion: v1\nkind: Pod\nmetadata:\n  generateName: p-\n---\n"
    )
    base = load_manifests(path)
    assert base.mode == "file" and base.files == ("m.yaml",) and base.root == tmp_path
    one, pod = base.documents
    assert (one.file, one.index, one.line, one.name, one.namespace) == ("m.yaml", 1, 4, "one", "ns")
    assert (pod.index, pod.line, pod.name, pod.kind, pod.group, pod.version) == (
        2,
        10,
        None,
        "Pod",
        "",
        "v1",
    )


def test_lists_expand_items(tmp_path: Path) -> None:
    base = load_manifests(FIXTURES / "lists" / "input")
    assert [(d.kind, d.index, d.item, d.line) for d in base.documents] == [
        ("Pod", 0, 0, 4),
        ("ConfigMap", 0, 1, 12),
        ("Deployment", 1, 0, 22),
    ]


def test_json_file_lines() -> None:
    base = load_manifests(FIXTURES / "workloads" / "input" / "04-service.json")
    (doc,) = base.documents
    assert doc.line == 1 and doc.name == "api" and doc.namespace == "shop"


@pytest.mark.kustomize
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_base_is_built_from_its_resources_only() -> None:
    base = load_manifests(FIXTURES / "kustomize-base" / "input")
    assert base.mode == "kustomize"
    assert base.files == ("namespace.yaml", "apps/web/deployment.yaml", "common/worker.yaml")
    assert "not-listed" not in {d.name for d in base.documents}
    assert "Kustomization" not in {d.kind for d in base.documents}


def test_stdin_keeps_text() -> None:
    text = "\ufeff" + CM.format(name="s")
    base = load_manifests("-", stdin=io.StringIO(text))
    assert base.mode == "stdin" and base.root is None and base.files == ("<stdin>",)
    assert base.text == CM.format(name="s")
    assert base.documents[0].file == "<stdin>"


def test_empty_file_and_empty_documents(tmp_path: Path) -> None:
    (tmp_path / "e.yaml").write_text("# nothing\n---\n...\n---\n")
    assert load_manifests(tmp_path / "e.yaml").documents == ()


def test_document_limit_counts_across_files(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{i}.yaml").write_text(CM.format(name=i) + "---\n" + CM.format(name=i))
    assert len(load_manifests(tmp_path, limits=Limits(max_documents=6)).documents) == 6
    with pytest.raises(InputError) as info:
        load_manifests(tmp_path, limits=Limits(max_documents=5))
    assert (info.value.file, info.value.line) == (f"{tmp_path}/2.yaml", 6)  # as given


def test_small_aliases_are_fine_big_ones_are_not(tmp_path: Path) -> None:
    text = CM.format(name="a") + "data: &d\n  k: v\n  j: w\nextra: *d\n"
    (tmp_path / "a.yaml").write_text(text)
    assert load_manifests(tmp_path / "a.yaml").documents
    with pytest.raises(InputError) as info:
        load_manifests(tmp_path / "a.yaml", limits=Limits(max_alias_nodes=3))
    # an alias is the anchored node itself: the line is the anchor's
    assert info.value.line == 5 and "alias bomb" in info.value.message


def test_gc_is_restored_after_success_and_error(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("a: [")
    assert gc.isenabled()
    with pytest.raises(InputError):
        load_manifests(tmp_path / "bad.yaml")
    assert gc.isenabled()
    gc.disable()
    try:
        load_manifests(FIXTURES / "lists" / "input")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_bom_in_file(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_bytes(b"\xef\xbb\xbf" + CM.format(name="bom").encode())
    assert load_manifests(tmp_path / "b.yaml").documents[0].name == "bom"


# -- node_to_data ----------------------------------------------------------------------------

DATA = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: d
  labels: &labels
    app: x
values:
  yes_: yes
  off_: Off
  true_: true
  null_: ~
  empty:
  int: 42
  neg: -7
  octal: 010
  hex: 0x1F
  under: 1_000
  float: 1.10
  exp: 1.5e3
  inf: -.inf
  quoted: "1.10"
  single: '010'
  tagged: !!str 123
  plain: nginx:1.10
  date: 2024-01-02
  list: [1, "2", three]
  merged:
    <<: *labels
    other: w
  y: y
  override:
    <<: *labels
    app: z
  123: numeric key
"""


def test_node_to_data_yaml_1_1() -> None:
    (doc,) = load_manifests("-", stdin=io.StringIO(DATA)).documents
    data = node_to_data(doc.node)
    v = data["values"]
    assert v["yes_"] is True and v["off_"] is False and v["true_"] is True
    assert v["null_"] is None and v["empty"] is None
    assert v["int"] == 42 and v["neg"] == -7 and v["octal"] == 8 and v["hex"] == 31
    assert v["under"] == 1000
    assert v["float"] == 1.1 and isinstance(v["float"], float)
    assert v["exp"] == 1500.0 and v["inf"] == -math.inf
    assert v["quoted"] == "1.10" and v["single"] == "010" and v["tagged"] == "123"
    assert v["plain"] == "nginx:1.10" and v["date"] == "2024-01-02"
    assert v["list"] == [1, "2", "three"]
    assert v["merged"] == {"app": "x", "other": "w"}
    assert v["y"] is True  # YAML 1.1 as Kubernetes' go-yaml v2 reads it
    assert v["override"] == {"app": "z"}
    assert v["123"] == "numeric key"
    assert data["metadata"]["labels"] == {"app": "x"}
    assert data["metadata"]["labels"] is not v["merged"]


def test_scalar_kind() -> None:
    (doc,) = load_manifests("-", stdin=io.StringIO(DATA)).documents
    values = dict((k.value, v) for k, v in doc.node.value)["values"]
    kinds = {k.value: scalar_kind(v) for k, v in values.value if not isinstance(v.value, list)}
    assert kinds["float"] == "float" and kinds["quoted"] == "str" and kinds["tagged"] == "str"
    assert kinds["yes_"] == "bool" and kinds["null_"] == "null" and kinds["int"] == "int"


def test_node_to_data_rejects_non_nodes() -> None:
    with pytest.raises(TypeError):
        node_to_data(object())
    assert node_to_data(None) is None
