"""Matching JobRemoved signals to the jobs we queued, without a race.

The job path is only known once the method reply arrives, and systemd may finish a quick
job and emit JobRemoved before our coroutine has read that reply (both can sit in the same
socket read; dbus-fast runs the signal handler before the awaiting coroutine resumes).  So
the signal handler is installed once, before any job is queued, and a JobRemoved nobody is
waiting for *yet* is kept for a while: `expect()` looks there first.  Registering and
checking happen in one synchronous step, so nothing can slip in between.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from pxhostd.systemd import constants as c
from pxhostd.systemd.unit import JobResult


class JobTracker:
    def __init__(
        self,
        ttl: float = c.EARLY_JOB_RESULT_TTL,
        max_early: int = c.EARLY_JOB_RESULT_MAX,
    ) -> None:
        self._waiting: dict[str, asyncio.Future[JobResult]] = {}
        self._early: OrderedDict[str, tuple[float, JobResult]] = OrderedDict()
        self._ttl = ttl
        self._max_early = max_early

    def expect(self, job: str) -> asyncio.Future[JobResult]:
        """A future for `job`'s result; already resolved if JobRemoved came first."""
        future: asyncio.Future[JobResult] = asyncio.get_running_loop().create_future()
        early = self._early.pop(job, None)
        if early is not None:
            future.set_result(early[1])
        else:
            self._waiting[job] = future
        return future

    def forget(self, job: str) -> None:
        """The waiter gave up (timeout, cancellation): drop its future."""
        future = self._waiting.pop(job, None)
        if future is not None and not future.done():
            future.cancel()

    def job_removed(self, result: JobResult) -> None:
        """Called from the signal handler for every JobRemoved."""
        future = self._waiting.pop(result.job, None)
        if future is not None:
            if not future.done():
                future.set_result(result)
            return
        now = time.monotonic()
        self._early[result.job] = (now, result)
        self._prune(now)

    def fail_all(self, exc: BaseException) -> None:
        """The connection is going away: every waiter learns it now, not at its timeout."""
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(exc)
        self._early.clear()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def buffered(self) -> int:
        return len(self._early)

    def _prune(self, now: float) -> None:
        while self._early:
            job, (seen, _) = next(iter(self._early.items()))
            if now - seen <= self._ttl and len(self._early) <= self._max_early:
                break
            del self._early[job]
