"""Retry pacing for the daemon's background tasks."""

from __future__ import annotations


class Backoff:
    """Delays that double from `first` up to `limit`; `reset` after a success."""

    def __init__(self, first: float, limit: float) -> None:
        if not 0 < first <= limit:
            raise ValueError("need 0 < first <= limit")
        self.first = first
        self.limit = limit
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self.limit, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self.first
