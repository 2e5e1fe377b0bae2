"""Structural-schema pruning (kotsrewrite._schema) against Kubernetes' documented examples.

The cases of the first group are the examples of the Kubernetes documentation, "Extend the
Kubernetes API with CustomResourceDefinitions", sections "Field pruning", "Controlling
pruning" and "RawExtension" (written here from those examples); the others follow
apiextensions-apiserver's pruning/algorithm.go.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from kotsrewrite._schema import Pruner, keeps, prune, pruner_for, schema_at

FIXTURES = Path(__file__).parent / "fixtures" / "placement"

CRONTAB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "cronSpec": {"type": "string"},
                "image": {"type": "string"},
                "replicas": {"type": "integer"},
            },
        }
    },
}


def _crontab(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {"name": "my-new-cron-object"},
        "spec": spec,
    }


def test_docs_field_pruning_drops_unknown_field() -> None:
    """ "Field pruning": someRandomField is not in the schema, so it is dropped; apiVersion,
    kind and metadata of the root stay."""
    obj = _crontab(cronSpec="* * * * */5", image="my-awesome-cron-image", someRandomField=42)
    assert prune(obj, CRONTAB_SCHEMA) == _crontab(
        cronSpec="* * * * */5", image="my-awesome-cron-image"
    )
    assert obj["spec"]["someRandomField"] == 42  # a copy was pruned, not the input
    assert not keeps(CRONTAB_SCHEMA, ["spec", "someRandomField"])
    assert keeps(CRONTAB_SCHEMA, ["spec", "image"])
    assert keeps(CRONTAB_SCHEMA, ["metadata", "name"])


def test_docs_preserve_unknown_fields_keeps_any_json() -> None:
    """ "Controlling pruning": json with x-kubernetes-preserve-unknown-fields stores any JSON."""
    schema = {
        "type": "object",
        "properties": {"json": {"x-kubernetes-preserve-unknown-fields": True}},
    }
    value = {"a": [1, {"b": {"c": None}}], "d": "e"}
    obj = {"apiVersion": "x/v1", "kind": "X", "metadata": {}, "json": value, "other": 1}
    assert prune(obj, schema) == {"apiVersion": "x/v1", "kind": "X", "metadata": {}, "json": value}
    assert keeps(schema, ["json", "a", 1, "b", "c"])
    assert not keeps(schema, ["other"])


def test_docs_preserve_unknown_fields_still_prunes_specified_properties() -> None:
    """ "Controlling pruning": with properties beside x-kubernetes-preserve-unknown-fields, the
    specified ones are pruned by their schema (json.spec.something goes) while unspecified
    ones are kept as they are (json.status.something stays)."""
    schema = {
        "type": "object",
        "properties": {
            "json": {
                "x-kubernetes-preserve-unknown-fields": True,
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "properties": {"foo": {"type": "string"}, "bar": {"type": "string"}},
                    }
                },
            }
        },
    }
    obj = {
        "json": {
            "spec": {"foo": "abc", "bar": "def", "something": "x"},
            "status": {"something": "x"},
        }
    }
    assert prune(obj, schema) == {
        "json": {"spec": {"foo": "abc", "bar": "def"}, "status": {"something": "x"}}
    }
    assert not keeps(schema, ["json", "spec", "something"])
    assert keeps(schema, ["json", "status", "something"])
    assert keeps(schema, ["json", "spec", "foo"])


def test_docs_embedded_resource_keeps_type_and_object_meta() -> None:
    """ "RawExtension": an embedded resource keeps apiVersion, kind and metadata, whose
    unknown fields are dropped as ObjectMeta's would be."""
    schema = {
        "type": "object",
        "properties": {
            "foo": {
                "type": "object",
                "x-kubernetes-embedded-resource": True,
                "x-kubernetes-preserve-unknown-fields": True,
            },
            "bar": {
                "type": "object",
                "x-kubernetes-embedded-resource": True,
                "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}},
            },
        },
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"x": "y"}, "bogus": 1},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }
    obj = {"foo": pod, "bar": {**pod, "spec": {"a": "b", "z": 1}}}
    out = prune(obj, schema)
    assert out["foo"] == {**pod, "metadata": {"name": "p", "labels": {"x": "y"}}}
    assert out["bar"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"x": "y"}},
        "spec": {"a": "b"},
    }
    assert keeps(schema, ["bar", "apiVersion"])
    assert keeps(schema, ["bar", "metadata", "labels", "x"])
    assert not keeps(schema, ["bar", "metadata", "bogus"])
    assert not keeps(schema, ["bar", "spec", "z"])
    assert not keeps(schema, ["metadata", "bogus"])  # the root's metadata too


def test_additional_properties_schema_and_bool() -> None:
    """additionalProperties keeps any key and prunes its value by that schema; ``true`` is the
    empty schema: scalars stay, nested objects are emptied (algorithm.go: prune(v, nil))."""
    schema = {
        "type": "object",
        "properties": {
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "things": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {"keep": {"type": "string"}},
                },
            },
            "loose": {"type": "object", "additionalProperties": True},
        },
    }
    obj = {
        "labels": {"a": "1"},
        "things": {"one": {"keep": "k", "drop": "d"}},
        "loose": {"s": "v", "o": {"inner": 1}, "l": [{"x": 1}, 2]},
    }
    assert prune(obj, schema) == {
        "labels": {"a": "1"},
        "things": {"one": {"keep": "k"}},
        "loose": {"s": "v", "o": {}, "l": [{}, 2]},
    }
    assert keeps(schema, ["things", "one", "keep"])
    assert not keeps(schema, ["things", "one", "drop"])
    assert keeps(schema, ["loose", "s"])
    assert not keeps(schema, ["loose", "o", "inner"])
    assert not keeps(schema, ["loose", "l", 0, "x"])


def test_items_and_nested_preserve_in_list() -> None:
    schema = {
        "type": "object",
        "properties": {
            "list": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}},
                    "x-kubernetes-preserve-unknown-fields": True,
                },
            },
            "strict": {
                "type": "array",
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
            "untyped": {"type": "array"},
        },
    }
    obj = {
        "list": [{"name": "a", "extra": {"deep": 1}}],
        "strict": [{"name": "a", "extra": 1}],
        "untyped": [{"x": 1}, "s"],
    }
    assert prune(obj, schema) == {
        "list": [{"name": "a", "extra": {"deep": 1}}],
        "strict": [{"name": "a"}],
        "untyped": [{}, "s"],
    }
    assert keeps(schema, ["list", 0, "extra", "deep"])
    assert not keeps(schema, ["strict", 0, "extra"])
    assert not keeps(schema, ["untyped", 0, "x"])


def test_logical_junctors_do_not_keep_fields() -> None:
    """allOf/anyOf/oneOf/not only validate: a field named only there is pruned."""
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "allOf": [{"properties": {"b": {"type": "string"}}}],
                "anyOf": [{"properties": {"c": {"type": "string"}}}],
                "oneOf": [{"properties": {"d": {"type": "string"}}}],
                "not": {"properties": {"e": {"type": "string"}}},
            }
        },
    }
    obj = {"spec": {"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}}
    assert prune(obj, schema) == {"spec": {"a": "1"}}
    for field in "bcde":
        assert not keeps(schema, ["spec", field])


def test_preserve_at_root_with_properties() -> None:
    """x-kubernetes-preserve-unknown-fields at the root (Tekton's CRDs): unknown fields stay
    everywhere below, specified ones are still pruned."""
    schema = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}},
    }
    obj = {"spec": {"a": "x", "b": "y"}, "anything": {"goes": [1]}}
    assert prune(obj, schema) == {"spec": {"a": "x"}, "anything": {"goes": [1]}}
    assert keeps(schema, ["anything", "goes", 0])
    assert not keeps(schema, ["spec", "b"])


def _leaves(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list) and node:
        for i, value in enumerate(node):
            yield from _leaves(value, (*path, i))
    else:
        yield path


def _has(node: Any, path: tuple[str | int, ...]) -> bool:
    for seg in path:
        if isinstance(seg, int):
            if not isinstance(node, list) or seg >= len(node):
                return False
        elif not isinstance(node, dict) or seg not in node:
            return False
        node = node[seg]
    return True


def _load(path: Path) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe", pure=True).load_all(path.read_text()) if d]


def _fixture_pairs() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for case in sorted(p for p in FIXTURES.iterdir() if p.is_dir()):
        docs = [d for f in sorted(case.glob("*.yaml")) for d in _load(f)]
        crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
        for obj in docs:
            for crd in crds:
                if crd["spec"]["names"]["kind"] == obj["kind"]:
                    yield f"{case.name}/{obj['kind']}/{obj['metadata']['name']}", crd, obj


@pytest.mark.parametrize(("crd", "obj"), [pytest.param(c, o, id=i) for i, c, o in _fixture_pairs()])
def test_keeps_agrees_with_prune_on_fixtures(crd: dict[str, Any], obj: dict[str, Any]) -> None:
    """For every leaf of every fixture object (plus an imagePullSecrets beside each mapping),
    keeps() says exactly what prune() leaves."""
    pruner = pruner_for(crd, obj["apiVersion"].rpartition("/")[2])
    assert isinstance(pruner, Pruner)
    probe = _with_pull_secrets(obj)
    pruned = pruner.prune(probe)
    leaves = list(_leaves(probe))
    assert len(leaves) >= 8
    kept = [leaf for leaf in leaves if pruner.keeps(leaf)]
    assert kept and len(kept) < len(leaves)  # the fixtures exercise both outcomes
    for leaf in leaves:
        assert pruner.keeps(leaf) == _has(pruned, leaf), leaf


def _with_pull_secrets(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _with_pull_secrets(v) for k, v in node.items()}
        if "kind" not in node:
            out["imagePullSecrets"] = [{"name": "probe"}]
        return out
    if isinstance(node, list):
        return [_with_pull_secrets(v) for v in node]
    return node


def _crd(**spec: Any) -> dict[str, Any]:
    base = {"group": "g.io", "names": {"kind": "K", "plural": "ks"}, "scope": "Namespaced"}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "ks.g.io"},
        "spec": {**base, **spec},
    }


def _version(name: str, schema: dict[str, Any] | None, **flags: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "served": True, "storage": False, **flags}
    if schema is not None:
        out["schema"] = {"openAPIV3Schema": schema}
    return out


A_ONLY = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"a": {}}}}}
B_ONLY = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"b": {}}}}}


def test_pruner_written_version_then_storage_version() -> None:
    """Conversion strategy None (the default): the object is pruned by the schema of its own
    version and again by the storage version's after conversion."""
    crd = _crd(versions=[_version("v1beta1", A_ONLY), _version("v1", B_ONLY, storage=True)])
    pruner = pruner_for(crd, "v1beta1")
    assert isinstance(pruner, Pruner) and len(pruner.schemas) == 2
    assert not pruner.keeps(["spec", "a"]) and not pruner.keeps(["spec", "b"])
    stored = pruner_for(crd, "v1")
    assert isinstance(stored, Pruner) and stored.keeps(["spec", "b"])
    webhook = _crd(
        versions=[_version("v1beta1", A_ONLY), _version("v1", B_ONLY, storage=True)],
        conversion={"strategy": "Webhook"},
    )
    only_own = pruner_for(webhook, "v1beta1")
    assert isinstance(only_own, Pruner) and only_own.keeps(["spec", "a"])


def test_pruner_refusals_and_v1beta1() -> None:
    crd = _crd(
        versions=[_version("v1", A_ONLY, storage=True), _version("v2", A_ONLY, served=False)]
    )
    assert "does not serve version v2" in str(pruner_for(crd, "v2"))
    assert "does not serve version v3" in str(pruner_for(crd, "v3"))
    assert "no openAPIV3Schema" in str(pruner_for(_crd(versions=[_version("v1", None)]), "v1"))
    old = {**_crd(version="v1", validation={"openAPIV3Schema": A_ONLY})}
    old["apiVersion"] = "apiextensions.k8s.io/v1beta1"
    keeps_all = pruner_for(old, "v1")
    assert isinstance(keeps_all, Pruner) and keeps_all.schemas == ()
    assert keeps_all.keeps(["spec", "anything"])
    old["spec"]["preserveUnknownFields"] = False
    strict = pruner_for(old, "v1")
    assert isinstance(strict, Pruner) and not strict.keeps(["spec", "b"])
    assert schema_at(A_ONLY, ["spec", "a"]) == {}


# --------------------------------------------------------------------------------------------
# keeps() and prune() agree on arbitrary schemas and objects

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_KEYS = st.sampled_from(["a", "b", "spec", "apiVersion", "kind", "metadata", "name", "labels"])


def _schemas() -> st.SearchStrategy[dict[str, Any]]:
    def extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {},
            optional={
                "properties": st.dictionaries(_KEYS, children, max_size=3),
                "items": children,
                "additionalProperties": st.one_of(st.just(True), children),
                "x-kubernetes-preserve-unknown-fields": st.just(True),
                "x-kubernetes-embedded-resource": st.just(True),
                "anyOf": st.lists(children, max_size=1),
            },
        )

    return st.recursive(st.just({}), extend, max_leaves=12)


_OBJECTS = st.recursive(
    st.one_of(st.integers(0, 3), st.text("xy", max_size=2), st.none()),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(_KEYS, children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(schema=_schemas(), obj=st.dictionaries(_KEYS, _OBJECTS, max_size=4))
def test_keeps_agrees_with_prune(schema: dict[str, Any], obj: dict[str, Any]) -> None:
    pruned = prune(obj, schema)
    for leaf in _leaves(obj):
        assert keeps(schema, leaf) == _has(pruned, leaf), (leaf, pruned)
