"""Conversion between plain Python values and D-Bus variants (a{sv} and friends).

Callers of the exported interface may send any type inside a variant; `unwrap` turns it into
plain Python values so validation sees ordinary lists, dicts and scalars and can reject them
with a named error. `to_variant` picks a stable signature for values we send.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dbus_fast.signature import Variant


def unwrap(value: Any) -> Any:
    """Recursively replace Variants by their values; bytes stay bytes."""
    if isinstance(value, Variant):
        return unwrap(value.value)
    if isinstance(value, dict):
        return {unwrap(k): unwrap(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [unwrap(v) for v in value]
    return value


def _signature(value: Any) -> str:
    if isinstance(value, bool):
        return "b"
    if isinstance(value, int):
        return "x"
    if isinstance(value, float):
        return "d"
    if isinstance(value, str):
        return "s"
    if isinstance(value, bytes):
        return "ay"
    if isinstance(value, Mapping):
        if value and all(isinstance(v, str) for v in value.values()):
            return "a{ss}"
        return "a{sv}"
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, Mapping) for v in value):
            return "aa{sv}"
        if all(isinstance(v, str) for v in value):
            return "as"
        return "av"
    raise TypeError(f"no D-Bus signature for {type(value).__name__}")


def _convert(value: Any, signature: str) -> Any:
    if signature == "a{sv}":
        return to_vardict(value)
    if signature == "aa{sv}":
        return [to_vardict(v) for v in value]
    if signature == "av":
        return [to_variant(v) for v in value]
    if signature == "as":
        return list(value)
    if signature == "a{ss}":
        return dict(value)
    return value


def to_variant(value: Any) -> Variant:
    signature = _signature(value)
    return Variant(signature, _convert(value, signature))


def to_vardict(values: Mapping[str, Any]) -> dict[str, Variant]:
    """A dict of plain values as a{sv}; None values are left out (D-Bus has no null)."""
    return {str(k): to_variant(v) for k, v in values.items() if v is not None}
