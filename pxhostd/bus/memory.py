"""Give memory back after large bus messages.

A message near the bus's size limit (32 MiB) is read into one growing buffer and unpacked
into many objects; once they are freed, glibc keeps the pages in its heap (its mmap
threshold rises after each large free), so pxhostd stayed at twice its idle size. Two
measures, both glibc-only and harmless elsewhere: a fixed mmap threshold at start (large
buffers are mapped and unmapped, never left in the heap), and `malloc_trim(0)` soon after
a large message has been handled, when the resident size has grown (`pxhostd.memory`).
"""

from __future__ import annotations

import asyncio
import logging

from dbus_fast import Message

from pxhostd.memory import fix_mmap_threshold, trim

log = logging.getLogger(__name__)

#: A message whose body holds at least this much data counts as large.
LARGE = 1024 * 1024
#: Seconds after a large message before trimming (a burst of them trims once).
TRIM_DELAY = 0.5


def body_size(value: object, budget: int = LARGE) -> int:
    """The data a message body holds, counted until `budget` is reached (cheap for small)."""
    stack = [value]
    total = 0
    while stack and total < budget:
        item = stack.pop()
        if isinstance(item, str | bytes | bytearray):
            total += len(item)
        elif isinstance(item, dict):
            total += 8 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            total += 8 * len(item)
            stack.extend(item)
        elif hasattr(item, "value") and hasattr(item, "signature"):
            stack.append(item.value)
        else:
            total += 8
    return total


class LargeMessageTrimmer:
    def __init__(self) -> None:
        self._pending: asyncio.TimerHandle | None = None
        self.trims = 0
        fix_mmap_threshold()

    def saw(self, msg: Message) -> None:
        if self._pending is not None or body_size(msg.body) < LARGE:
            return
        self._pending = asyncio.get_running_loop().call_later(TRIM_DELAY, self._trim)

    def _trim(self) -> None:
        self._pending = None
        trim()
        self.trims += 1


__all__ = ["LargeMessageTrimmer", "body_size", "fix_mmap_threshold", "trim"]
