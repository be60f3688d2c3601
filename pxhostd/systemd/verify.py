"""The engine's correctness rule: a job result alone proves nothing.

`done` also comes back for a unit whose Condition*= failed, and for Type=simple it only
means the process was forked.  So after the job we read ActiveState (must be `active`) and,
for a restart, InvocationID (must be new: proof that a new instance runs).  For Type=notify
`done` means READY=1 was sent; a service that crashes a moment later is caught by
`wait_stable`, which watches PropertiesChanged for a settle period (bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from pxhostd.errors import PxError, SystemdError, Timeout
from pxhostd.systemd import constants as c
from pxhostd.systemd.client import Systemd
from pxhostd.systemd.transport import bounded
from pxhostd.systemd.unit import ActiveState, JobResult, JobResultKind, UnitActivity, UnitState
from pxhostd.systemd.watch import UnitWatch

log = logging.getLogger(__name__)

_DOWN = (ActiveState.FAILED, ActiveState.INACTIVE)


@contextlib.asynccontextmanager
async def pinned(systemd: Systemd, name: str) -> AsyncIterator[None]:
    """Keep the unit loaded (Unit.Ref) so its state after a job can still be read.

    systemd unloads an inactive, unreferenced unit right after its job; read after that,
    the unit comes back fresh and the evidence (a failed condition, the last invocation)
    is gone.  The reference belongs to our bus connection and dies with it.
    """
    path = await systemd.load_unit(name)
    try:
        await systemd.unit_call(name, path, c.UNIT_REF)
        is_pinned = True
    except PxError as exc:  # no right to, or an old systemd: state reads still work
        log.debug("could not pin %s: %s", name, exc)
        is_pinned = False
    try:
        yield
    finally:
        if is_pinned:
            try:
                await systemd.unit_call(name, path, c.UNIT_UNREF)
            except PxError as exc:
                log.debug("could not unpin %s: %s", name, exc)


async def start_and_verify(
    systemd: Systemd, name: str, timeout: float = c.JOB_TIMEOUT
) -> UnitState:
    """Start; require job `done` and ActiveState `active` (already running is fine)."""
    async with pinned(systemd, name):
        job = await systemd.start_unit(name, timeout)
        return _verified(job, await systemd.unit_state(name), "start")


async def restart_and_verify(
    systemd: Systemd, name: str, timeout: float = c.JOB_TIMEOUT
) -> UnitState:
    """Restart; require `done`, `active` and a new InvocationID (proof it restarted)."""
    async with pinned(systemd, name):
        before = await systemd.unit_state(name)
        job = await systemd.restart_unit(name, timeout)
        after = _verified(job, await systemd.unit_state(name), "restart")
    if not after.invocation_id or after.invocation_id == before.invocation_id:
        raise SystemdError(
            f"restart of {name} did not start a new invocation "
            f"(InvocationID {after.invocation_id or 'empty'}): {after.describe()}"
        )
    return after


def _verified(job: JobResult, state: UnitState, action: str) -> UnitState:
    if job.result is not JobResultKind.DONE:
        raise SystemdError(f"{action} job for {job.unit} ended '{job.result}': {state.describe()}")
    if not state.is_active:
        raise SystemdError(f"{job.unit} is not active after {action}: {state.describe()}")
    return state


async def wait_stable(
    systemd: Systemd, name: str, settle: float, timeout: float = c.JOB_TIMEOUT
) -> UnitState:
    """Require `active` for `settle` seconds in a row, within `timeout`.

    Leaving active for good (failed, inactive) raises SystemdError at once; a unit that
    keeps restarting (Restart=) never settles and runs into Timeout.
    """
    async with await systemd.watch_unit(name) as watch:
        try:
            async with bounded(timeout, f"waiting for {name} to stay active {settle:g} s"):
                await _settle(systemd, watch, settle)
        except Timeout as exc:
            raise Timeout(f"{exc}: {await systemd.state_hint(name)}") from exc
    state = await systemd.unit_state(name)
    if not state.is_active:
        raise SystemdError(f"{name} left active after settling: {state.describe()}")
    return state


async def _settle(systemd: Systemd, watch: UnitWatch, settle: float) -> None:
    def left_active(a: UnitActivity) -> bool:
        return a.active_state is not ActiveState.ACTIVE

    while True:
        current = await watch.wait_for(lambda _a: True)
        if current.active_state in _DOWN:
            # With Restart= systemd passes through `failed` on its way to auto-restart
            # within one step; a fresh read tells which of the two it is.
            state = await systemd.unit_state(watch.name)
            if state.active_state in _DOWN:
                raise SystemdError(f"{watch.name} did not stay active: {state.describe()}")
            await watch.wait_change(current)
            continue
        if current.active_state is not ActiveState.ACTIVE:
            await watch.wait_change(current)
            continue
        try:
            async with asyncio.timeout(settle):
                await watch.wait_for(left_active)
        except TimeoutError:
            return


async def wait_settled(
    systemd: Systemd, name: str, timeout: float = c.JOB_TIMEOUT
) -> UnitState:
    """Wait until the unit is neither activating nor deactivating (a job systemd itself
    runs, e.g. at boot), so a decision is made on where it ends, not on the way there."""
    moving = (ActiveState.ACTIVATING, ActiveState.DEACTIVATING)
    async with await systemd.watch_unit(name) as watch:
        try:
            async with bounded(timeout, f"waiting for {name} to finish its state change"):
                await watch.wait_for(lambda a: a.active_state not in moving)
        except Timeout as exc:
            raise Timeout(f"{exc}: {await systemd.state_hint(name)}") from exc
    return await systemd.unit_state(name)
