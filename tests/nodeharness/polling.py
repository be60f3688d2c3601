"""Bounded polling: wait for a condition, fail with what was last seen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold within the bound (an AssertionError: tests fail on it)."""


def wait_for(
    probe: Callable[[], T],
    until: Callable[[T], bool],
    *,
    timeout: float,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Call `probe` until `until(value)` holds; return that value or raise WaitTimeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last: {value!r}")
        time.sleep(interval)
