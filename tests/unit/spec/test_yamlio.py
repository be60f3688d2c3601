"""The strict YAML reader built on libyaml's event stream: same values as PyYAML's safe
loader for plain YAML, and the strict rules on top."""

from __future__ import annotations

import pytest
import yaml

from pxhostd.errors import InvalidSpec
from pxhostd.spec.yamlio import parse_yaml_document

PLAIN = [
    "a: 1\nb: [x, 2, true, null, 1.5, ~, 0x10, '007']\nc: {d: e}\n",
    "base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n",
    "one: {a: 1}\ntwo: {b: 2}\nm:\n  <<: [{a: 1}, {a: 9, b: 2}]\n",
    "x: &a [1, [2, 3]]\ny: *a\n",
    "- a\n- {b: [c]}\n",
    "a: !!str 5\nb: !!int '5'\n",
    "",
    "# only a comment\n",
    "text: |\n  two\n  lines\n",
]


@pytest.mark.parametrize("text", PLAIN)
def test_plain_yaml_reads_as_pyyaml_reads_it(text: str) -> None:
    assert parse_yaml_document(text, "t", 1 << 20, InvalidSpec) == yaml.safe_load(text)
    assert parse_yaml_document(text.encode(), "t", 1 << 20, InvalidSpec) == yaml.safe_load(text)


@pytest.mark.parametrize(("text", "fragment"), [
    ("a: *nope\n", "undefined alias 'nope'"),
    ("a: 1\n---\nb: 2\n", "another document"),
    ("? [a]\n: 1\n", "mapping key is not a plain value"),
    ("<<: [1]\n", "merge key (<<) needs a mapping"),
    ("a: !!omap [x: 1]\n", "tag 'omap' is not allowed"),
    ("a: !local {b: 1}\n", "tag '!local' is not allowed"),
    ("m:\n  k: 1\n  k: 2\n", "duplicate key 'k' (line 3)"),
])
def test_strict_rules(text: str, fragment: str) -> None:
    with pytest.raises(InvalidSpec, match="t: ") as info:
        parse_yaml_document(text, "t", 1 << 20, InvalidSpec)
    assert fragment in str(info.value)
