"""Outgoing strings made safe for Debian 12's dbus-fast (1.84).

Its marshaller writes a string's length in characters where D-Bus wants bytes, so any
non-ASCII text (a spec value like `café`, a payload log line quoted in an error) produced a
malformed message and the bus daemon dropped the sender, pxhostd included. Upstream fixed
it later (dbus-fast PR 261). Until Debian ships that, every string pxhostd sends passes
through `wire`, which hands the marshaller a `str` whose `len()` is its UTF-8 length. The
value is unchanged for every reader; ASCII strings are passed as they are.
"""

from __future__ import annotations

from typing import Any

from dbus_fast import Variant


class WireStr(str):
    """A str whose len() is its UTF-8 byte length (what the 1.84 marshaller writes)."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self.encode())


def wire(value: Any) -> Any:
    """`value` with every non-ASCII str (also dict keys, inside variants) made a WireStr."""
    if isinstance(value, str):
        return value if value.isascii() or isinstance(value, WireStr) else WireStr(value)
    if isinstance(value, Variant):
        return Variant(value.signature, wire(value.value))
    if isinstance(value, dict):
        return {wire(k): wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [wire(v) for v in value]
    return value
