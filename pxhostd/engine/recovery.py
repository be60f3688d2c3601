"""Recovery: finish or roll back the operation a crash (or a failed rollback) left journaled.

Runs at start, before the daemon sends READY=1, and again before any operation that finds a
journal: nothing ever waits for a manual step. The decision comes from
`journal.plan_recovery` (pure, unit-tested); this module carries it out with the same undo,
finish and uninstall code the live paths use.

What it did comes back as a `Recovered`: the note for the log, and for the history the
interrupted operation, what became of it, and why it was interrupted (`interruption`).
"""

from __future__ import annotations

import logging

from pxhostd.engine import journal as jn
from pxhostd.engine.api import Recovered
from pxhostd.engine.collect import recorded_keep, run_collect_steps
from pxhostd.engine.commit import finish
from pxhostd.engine.context import HostContext, in_thread
from pxhostd.engine.interruption import Note, cause_of, take_note
from pxhostd.engine.state import CorruptStateFile
from pxhostd.engine.undo import perform_undo
from pxhostd.engine.uninstall import run_uninstall_steps
from pxhostd.errors import HostStateError, PxError
from pxhostd.hostfs import sweep_temp_files

log = logging.getLogger(__name__)


async def recover(ctx: HostContext) -> Recovered | None:
    """Bring the host to a consistent state; return what was done (None: nothing).

    Raises HostStateError when the recovery itself fails; the journal then stays, and the
    next call (the next operation, or the next start) tries again.
    """
    note: Note | None = await in_thread(take_note, ctx.paths.state_dir)
    done: Recovered | None = None
    try:
        record = await in_thread(ctx.journal.load)
    except CorruptStateFile as exc:
        moved = await in_thread(ctx.journal.quarantine)
        log.error("%s; moved aside to %s", exc, moved)
        record = None
        done = Recovered(f"corrupt journal moved aside to {moved}")
    plan = jn.plan_recovery(record)
    if plan.record is not None:
        rec = plan.record
        cause = cause_of(note, rec.txid)
        log.warning("recovery: %s (%s)", plan.reason, cause)
        try:
            await _carry_out(ctx, plan, cause)
        except PxError as exc:
            raise HostStateError(f"recovery failed ({plan.reason}): {exc}") from exc
        except OSError as exc:
            raise HostStateError(f"recovery failed ({plan.reason}): {exc.strerror}") from exc
        forward = plan.action is jn.RecoveryAction.ROLL_FORWARD
        done = Recovered(
            plan.reason, rec.txid, rec.op, rec.started, plan.action, cause,
            version_before=rec.before.version,
            version_after=rec.target.version if forward else rec.before.version,
        )
    for directory in (ctx.paths.unit_dir, ctx.paths.state_dir):
        await in_thread(sweep_temp_files, directory)
    # An interrupted import, spare copy or removal: its tree, staged objects and listing
    # are temp names (payload/store.py, payload/spare.py), all gone now, before READY=1.
    swept = await in_thread(ctx.releases.sweep)
    if any(p.parent == ctx.paths.releases_dir for p in swept):
        # An import interrupted after it published its objects (its last steps) leaves
        # them linked by no release once its tree is gone: one scan of the store now, so
        # no crash's leftover outlives the start.
        result = await in_thread(ctx.releases.store.collect)
        if result.objects:
            log.warning("recovery: removed %d objects of an interrupted import",
                        result.objects)
    return done


async def _carry_out(ctx: HostContext, plan: jn.Recovery, cause: str) -> None:
    rec = plan.record
    assert rec is not None
    if plan.action is jn.RecoveryAction.DISCARD:
        await perform_undo(ctx, rec, plan.undo)  # at most a release imported for it
        await rec.done()
        ctx.want_collect(None)
    elif plan.action is jn.RecoveryAction.ROLL_BACK:
        if not rec.rolling_back:
            await rec.begin_rollback(f"interrupted: {cause}")
        await perform_undo(ctx, rec, plan.undo)
        await rec.done()
        ctx.want_collect(None)
    elif rec.op in jn.COLLECT_OPS:
        await run_collect_steps(ctx, rec, recorded_keep(rec))
        await rec.done()
    elif rec.op in jn.REMOVE_OPS:
        await run_uninstall_steps(ctx, rec, lambda _p, _m: None)
        await rec.done()
    else:
        await finish(ctx, rec)
