"""Event-driven view of one unit's ActiveState/SubState, fed by PropertiesChanged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from pxhostd.systemd import constants as c
from pxhostd.systemd.unit import ActiveState, UnitActivity

log = logging.getLogger(__name__)

ActivityCallback = Callable[[UnitActivity], None]
ActivityPredicate = Callable[[UnitActivity], bool]


class UnitWatch:
    """A live subscription to one unit; `close()` (or `async with`) unsubscribes.

    The first activity delivered is the state read right after the match was installed,
    unless a signal got there first (a signal is never older than a state read that our
    coroutine has not processed yet, so the read is dropped in that case).
    """

    def __init__(
        self,
        name: str,
        path: str,
        callback: ActivityCallback | None,
        closer: Callable[[UnitWatch], Awaitable[None]],
    ) -> None:
        self.name = name
        self.path = path
        self._callback = callback
        self._closer = closer
        self._closed = False
        self.last: UnitActivity | None = None
        self._waiters: list[tuple[ActivityPredicate, asyncio.Future[UnitActivity]]] = []

    async def __aenter__(self) -> UnitWatch:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for _, future in self._waiters:
            if not future.done():
                future.cancel()
        self._waiters.clear()
        await self._closer(self)

    async def wait_for(self, predicate: ActivityPredicate) -> UnitActivity:
        """Wait (unbounded: wrap in a timeout) until the activity satisfies `predicate`."""
        if self.last is not None and predicate(self.last):
            return self.last
        future: asyncio.Future[UnitActivity] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            return await future
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    async def wait_change(self, seen: UnitActivity) -> UnitActivity:
        """Wait (unbounded) for an activity different from `seen`."""
        return await self.wait_for(lambda a: a != seen)

    def initial(self, activity: UnitActivity) -> None:
        if self.last is None:
            self._deliver(activity)

    def properties_changed(
        self, changed: Mapping[str, object], invalidated: Sequence[str]
    ) -> bool:
        """Apply one Unit-interface PropertiesChanged; True if a re-read is needed."""
        active = changed.get(c.P_ACTIVE_STATE)
        sub = changed.get(c.P_SUB_STATE)
        if active is None and sub is None:
            return c.P_ACTIVE_STATE in invalidated or c.P_SUB_STATE in invalidated
        base = self.last or UnitActivity(ActiveState.UNKNOWN, "")
        self._deliver(
            UnitActivity(
                ActiveState.parse(active) if active is not None else base.active_state,
                sub if isinstance(sub, str) else base.sub_state,
            )
        )
        return False

    def refreshed(self, activity: UnitActivity) -> None:
        self._deliver(activity)

    def _deliver(self, activity: UnitActivity) -> None:
        if self._closed:
            return
        self.last = activity
        if self._callback is not None:
            try:
                self._callback(activity)
            except Exception:  # the watcher's bug must not kill the bus dispatch
                log.exception("unit watch callback for %s failed", self.name)
        for predicate, future in list(self._waiters):
            if not future.done() and predicate(activity):
                future.set_result(activity)
