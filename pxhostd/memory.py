"""Handing freed memory back to the system (glibc only; harmless elsewhere).

glibc keeps freed pages in its heap, and its mmap threshold rises after each large free, so
a daemon that once held a large message or a 100,000-entry file list would stay at its
peak. Two measures: a fixed mmap threshold set at start (large buffers are mapped and
unmapped, never left in the heap), and `malloc_trim(0)` after a large piece of work.
"""

from __future__ import annotations

import ctypes
import ctypes.util

#: glibc's mallopt parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 1024


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 - glibc only
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def fix_mmap_threshold() -> None:
    if _LIBC is not None:
        _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        _LIBC.mallopt(M_TRIM_THRESHOLD, MMAP_THRESHOLD)


def trim() -> None:
    if _LIBC is not None:
        _LIBC.malloc_trim(0)

