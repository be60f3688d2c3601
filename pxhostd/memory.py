"""Handing freed memory back to the system (glibc only; harmless elsewhere).

glibc keeps freed pages in its heap, and its mmap threshold rises after each large free, so
a daemon that once held a large message or a 100,000-entry file list would stay at its
peak. Two measures: a fixed mmap threshold set at start (large buffers are mapped and
unmapped, never left in the heap), and `malloc_trim(0)` after a large piece of work.
"""

from __future__ import annotations

import functools
from typing import Any

#: glibc's mallopt parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 1024


@functools.cache
def _libc() -> Any:
    """The C library already loaded into this process (no search, no subprocess); None
    where it is not glibc. Loaded on first use: a client that never trims never pays for
    ctypes."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim  # noqa: B018 - glibc only
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def fix_mmap_threshold() -> None:
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, MMAP_THRESHOLD)


def trim() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)

