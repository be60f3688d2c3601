"""Property tests: hostile input only ever ends in InvalidSpec; valid specs round-trip."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pxhostd.errors import InvalidSpec
from pxhostd.spec import Spec, parse_spec_yaml, spec_from_dict
from pxhostd.spec.validate import SPEC_KEYS

_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.binary(max_size=8)
)
_json_like = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
# Dicts that use the real keys, so the checks behind the key check are reached too.
_near_specs = st.dictionaries(
    st.sampled_from([*SPEC_KEYS, "payload", "payload"]), _json_like, max_size=5
).map(lambda d: {**d, "payload": d.get("payload", "/opt/p")})

_path_part = st.text(alphabet=st.sampled_from("abcxyz019._-~ü"), min_size=1, max_size=8).filter(
    lambda p: p not in (".", "..")
)
_abs_path = st.lists(_path_part, min_size=1, max_size=4).map(lambda ps: "/" + "/".join(ps))
_free_text = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=30)
_env_name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
_options = st.sampled_from(["", ":ro", ":rw", ":rbind", ":norbind", ":ro,norbind", ":rw,rbind"])


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    dsts = draw(st.lists(_abs_path, max_size=4, unique=True))
    mounts = [f"{draw(_abs_path)}:{d}{draw(_options)}" for d in dsts]
    return {
        "payload": draw(_abs_path),
        "service": draw(st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,10}", fullmatch=True).filter(
            lambda s: not s.startswith("pxhostd") and s not in ("dbus", "systemd", "init",
                                                                 "default"))),
        "args": draw(st.lists(_free_text.filter(_clean), max_size=5)),
        "env": draw(st.dictionaries(_env_name, _free_text.filter(_clean), max_size=5)),
        "mounts": [m for m in mounts if m.split(":")[1] != "/"],
    }


def _clean(text: str) -> bool:
    return not any(0xFDD0 <= ord(c) <= 0xFDEF or (ord(c) & 0xFFFE) == 0xFFFE for c in text)


def _only_invalid_spec(data: object) -> None:
    try:
        result = spec_from_dict(data)  # type: ignore[arg-type]
    except InvalidSpec as exc:
        assert type(exc) is InvalidSpec
        assert str(exc).startswith("spec")
    else:
        assert isinstance(result, Spec)


@settings(max_examples=300, deadline=None)
@given(_json_like)
def test_arbitrary_values_raise_only_invalid_spec(data: object) -> None:
    _only_invalid_spec(data)


@settings(max_examples=300, deadline=None)
@given(_near_specs)
def test_arbitrary_values_under_real_keys_raise_only_invalid_spec(data: dict[str, Any]) -> None:
    _only_invalid_spec(data)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_yaml_text_raises_only_invalid_spec(text: str) -> None:
    try:
        assert isinstance(parse_spec_yaml(text), Spec)
    except InvalidSpec as exc:
        assert type(exc) is InvalidSpec


@settings(max_examples=200, deadline=None)
@given(valid_specs())
def test_valid_specs_round_trip_through_to_dict(data: dict[str, Any]) -> None:
    spec = spec_from_dict(data)
    again = spec_from_dict(spec.to_dict())
    assert again == spec
    assert again.to_dict() == spec.to_dict()
    assert spec.args == tuple(data["args"])
    assert dict(spec.env) == data["env"]
