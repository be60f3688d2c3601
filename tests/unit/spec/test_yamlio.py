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


#: Scalars of every resolved kind, as keys and as values of a streamed mapping.
SCALARS = ["true", "yes", "No", "off", "1.5", ".inf", "-1", "+1", "0x1f", "0o7", "~", "null",
           "''", '"123"', "'true'", "!!str 5", "a/b", "rootfs/x.bin", "fff", "f0", "e1",
           "bar", "0abc", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
           "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "y", "n",
           "&anc anchored", ".x", "-a", "+b", "Yes/no"]


@pytest.mark.parametrize("scalar", SCALARS)
def test_a_streamed_mapping_reads_its_scalars_as_pyyaml_does(scalar: str) -> None:
    """The streamed entries take a plain string without asking the resolver when no
    resolver can apply: every other scalar must still come out as PyYAML makes it."""
    again = "*anc" if scalar.startswith("&") else scalar  # an anchor is defined once
    text = f"m:\n  {scalar}: {scalar.replace('&anc ', '')}\n  k{len(scalar)}: {again}\n"
    got = parse_yaml_document(text, "t", 1 << 20, InvalidSpec,
                              streams={"m": lambda entries: list(entries)})
    assert isinstance(got, dict)
    assert got["m"] == list(yaml.safe_load(text)["m"].items())
