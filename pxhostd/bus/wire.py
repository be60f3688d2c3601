"""Outgoing strings made safe for Debian 12's dbus-fast (1.84).

Its marshaller writes a string's length in characters where D-Bus wants bytes, so any
non-ASCII text (a spec value like `café`, a payload log line quoted in an error) produced a
malformed message and the bus daemon dropped the sender, pxhostd included. Upstream fixed
it later (dbus-fast PR 261). Until Debian ships that, `PxMessageBus.send`
(`pxhostd.bus.connection`) passes every outgoing body through `wire`, which hands the
marshaller a `str` whose `len()` is its UTF-8 length: one place, so no call site can
forget. The value is unchanged for every reader.
"""

from __future__ import annotations

from typing import Any

from dbus_fast.signature import Variant


class WireStr(str):
    """A str whose len() is its UTF-8 byte length (what the 1.84 marshaller writes)."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self.encode())


def wire(value: Any) -> Any:
    """`value` with every non-ASCII str (also dict keys, inside variants) made a WireStr.

    An all-ASCII value comes back as the very same object (no copy on the common path).
    """
    if isinstance(value, str):
        return value if value.isascii() or isinstance(value, WireStr) else WireStr(value)
    if isinstance(value, Variant):
        inner = wire(value.value)
        return value if inner is value.value else Variant(value.signature, inner)
    if isinstance(value, dict):
        items = [(wire(k), wire(v)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(),
                                                              strict=True)):
            return value
        return dict(items)
    if isinstance(value, list | tuple):
        out = [wire(v) for v in value]
        if all(a is b for a, b in zip(out, value, strict=True)):
            return value
        return out
    return value
