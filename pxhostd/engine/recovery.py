"""Start-up recovery: finish or roll back the operation a crash interrupted.

Runs before the daemon sends READY=1. The decision comes from `journal.plan_recovery`
(pure, unit-tested); this module carries it out with the same undo and finish code the
live paths use.
"""

from __future__ import annotations

import logging

from pxhostd.engine import journal as jn
from pxhostd.engine.collect import recorded_keep, run_collect_steps
from pxhostd.engine.commit import finish
from pxhostd.engine.context import HostContext, in_thread
from pxhostd.engine.state import CorruptStateFile
from pxhostd.engine.undo import perform_undo
from pxhostd.engine.uninstall import run_uninstall_steps
from pxhostd.hostfs import sweep_temp_files

log = logging.getLogger(__name__)


async def recover(ctx: HostContext) -> str | None:
    """Bring the host to a consistent state; return a one-line note of what was done."""
    note: str | None = None
    try:
        record = await in_thread(ctx.journal.load)
    except CorruptStateFile as exc:
        moved = await in_thread(ctx.journal.quarantine)
        log.error("%s; moved aside to %s", exc, moved)
        record = None
        note = f"corrupt journal moved aside to {moved}"
    plan = jn.plan_recovery(record)
    if plan.record is not None:
        rec = plan.record
        log.warning("recovery: %s", plan.reason)
        if plan.action is jn.RecoveryAction.DISCARD:
            rec.done()
        elif plan.action is jn.RecoveryAction.ROLL_BACK:
            if not rec.rolling_back:
                rec.begin_rollback("interrupted: pxhostd restarted mid-operation")
            await perform_undo(ctx, rec, plan.undo)
            rec.done()
            ctx.want_collect(None)
        elif rec.op in jn.COLLECT_OPS:
            await run_collect_steps(ctx, rec, recorded_keep(rec))
            rec.done()
        elif rec.op in jn.REMOVE_OPS:
            forget = rec.step_data(jn.STEP_FORGET) or {}
            units = sorted(rec.target.units or rec.before.units)
            await run_uninstall_steps(
                ctx, rec, units, bool(forget.get("wipe", False)), lambda p, m: None
            )
            rec.done()
        else:
            await finish(ctx, rec)
        note = plan.reason
    for directory in (ctx.paths.unit_dir, ctx.paths.releases_dir, ctx.paths.state_dir):
        await in_thread(sweep_temp_files, directory)
    return note
