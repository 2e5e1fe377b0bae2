"""The fast YAML emitter in _render must write exactly what ruamel writes, or decline.

``_render._fast_dump`` writes ruamel's output directly for a narrow subset of data (plain
dicts, lists, simple strings, literal-block patch text) because ruamel's pure-Python emitter
was a fifth of a large rewrite. It copies ruamel's behaviour, so these tests pin it: on every
YAML document of the fixtures and on generated structures, the fast path either returns
``None`` (fall back to ruamel) or ruamel's exact bytes. A ruamel upgrade that changes its
output for data the fast path covers fails here, not only in the golden files.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import LiteralScalarString

from kotsrewrite import _render

FIXTURES = Path(__file__).parent / "fixtures"


def _ruamel(data: Any) -> str:
    out = io.StringIO()
    _render._yaml().dump(data, out)
    return out.getvalue()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, LiteralScalarString):
        return LiteralScalarString(str(value))
    if isinstance(value, str):
        return str(value)
    return value


def _fixture_documents() -> list[Any]:
    docs = []
    # Not the bad-input corpus: its alias bombs would expand exponentially in _plain().
    paths = [*FIXTURES.glob("midstream/**/*.yaml"), *FIXTURES.glob("images/**/*.yaml")]
    for path in sorted(paths):
        try:
            loaded = list(YAML(typ="rt", pure=True).load_all(path.read_text()))
        except Exception:  # a few inputs are deliberately odd YAML
            continue
        docs += [_plain(d) for d in loaded if d is not None]
    return docs


def test_fixture_documents_dump_identically() -> None:
    docs = _fixture_documents()
    fast_used = 0
    for doc in docs:
        fast = _render._fast_dump(doc, _render._yaml())
        if fast is not None:
            fast_used += 1
            assert fast == _ruamel(doc), doc
    # The fast path must actually cover what the midstream writes, or it is dead code.
    assert fast_used >= len(docs) // 2, (fast_used, len(docs))


_WORDS = [
    "yes", "no", "on", "off", "y", "n", "1.10", "0x1f", "1e3", "~", "null", "2024-01-01", "=",
    "<<", "_1", "0_", "---x", "...", "a:", "a: b", "-a", "- a", ":a", "a #b", "a#b", "../base",
    ".dockerconfigjson", "kots.io/app-slug", "my\\.app", "", " a", "a ", "1:20", "+1", ".5",
    "-.5e3", "true", "True", "nginx:1.25", "quay\\.io/a/b", "@x", "`x", "!x", "&x", "*x", "%x",
    "a b", "*/5 * * * *", "x #y", "x# y", "it's", "it 's", "? x", "?x", ":x", "-x", "- x", "-",
    "?", ":", "a:b", "x:", "x: y", "a  b", "#a", "a#b c", "--- x", "... x", "a - b", "a ? b",
    "x ::", "a: ", "'x", "x'", "2024-01-01 10:00", "y n", "no way", "on it", "a\nb", "a\n",
    "\na", "yes\n", "a\tb", "it's\n", 'say "hi"\n', "back\\slash\n", "x:\n  y: [1, 2]\n",
]  # fmt: skip
_text = st.one_of(
    st.sampled_from(_WORDS),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-/:_", min_size=1, max_size=12),
    st.text(max_size=8),
)
_literal = st.builds(
    lambda lines, end: LiteralScalarString("\n".join(lines) + end),
    st.lists(st.one_of(_text, _text.map(lambda s: "  " + s)), min_size=1, max_size=4),
    st.sampled_from(["\n", "", "\n\n"]),
)
_value = st.recursive(
    st.one_of(
        _text,
        _literal,
        st.sampled_from([1, True, None, 1.5, 0, -5, False, 10**20, {}, []]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)),
    max_leaves=12,
)


_STRUCTURES = st.one_of(
    st.dictionaries(_text, _value, min_size=1, max_size=4),
    st.lists(_value, min_size=1, max_size=4),
)


def test_generated_structures_dump_identically() -> None:
    # Counted over all examples: a fast path that always declines (returns None) compares
    # nothing, so it must also have written some of them (22 of the 600 when written: most
    # generated strings need quoting, which the fast path leaves to ruamel).
    compared: list[bool] = []

    @settings(
        max_examples=600, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(_STRUCTURES)
    def check(data: Any) -> None:
        try:
            expected = _ruamel(data)
        except Exception:  # not representable by ruamel either: nothing to compare
            return
        fast = _render._fast_dump(data, _render._yaml())
        compared.append(fast is not None)
        assert fast is None or fast == expected

    check()
    assert sum(compared) >= 5, (sum(compared), len(compared))


def test_every_word_dumps_identically_as_key_value_and_item() -> None:
    # The property test above samples the words; this tries each in every position.
    for word in _WORDS:
        for data in ({"k": word}, {word: "v"}, ["x", word], {"k": [word, 1, None, {}, True]}):
            fast = _render._fast_dump(data, _render._yaml())
            assert fast is None or fast == _ruamel(data), data


def test_shared_collections_are_left_to_ruamel() -> None:
    """A collection used twice (a YAML alias in the input, or shared by the caller) gets an
    anchor and an alias from ruamel; the fast path declines it and dump_yaml gives ruamel's
    bytes (found by hypothesis in CI: ``{'yes': [{}], 'no': {}}`` with one shared ``{}``)."""
    empty: dict[str, Any] = {}
    full = {"a": "b"}
    items = ["x"]
    for data in (
        {"yes": [empty], "no": empty},
        {"one": full, "two": full},
        {"one": items, "two": items},
        [items, items],
        {"k": [full, full]},
    ):
        assert _render._fast_dump(data, _render._yaml()) is None
        assert _render.dump_yaml(data) == _ruamel(data)
        assert "&id001" in _ruamel(data)
