"""Pruning old releases and collecting store objects no release links.

Runs after an operation has finished and reported, never inside it: the oldest release and
its objects are removed while the service already runs the new one. It is journaled as an
operation of its own (`collect`) that always rolls forward: each step only removes what no
kept release needs (a release tree is renamed aside before it is deleted; an object goes
only when its link count says no release shares its inode), so re-running it after a crash
is safe, and no crash can leave a release pointing at a missing object.
"""

from __future__ import annotations

import logging

from pxhostd.engine import journal as jn
from pxhostd.engine.api import new_txid
from pxhostd.engine.context import HostContext, in_thread

log = logging.getLogger(__name__)


async def collect(ctx: HostContext, keep: frozenset[str] | None) -> None:
    """Prune releases not in `keep` (None: prune none), then collect unreferenced objects."""
    current = await in_thread(ctx.releases.current)
    side = jn.Snapshot(release=current)
    record = await ctx.journal.begin(jn.OP_COLLECT, new_txid(), side, side)
    await run_collect_steps(ctx, record, keep)
    await record.done()


async def run_collect_steps(
    ctx: HostContext, record: jn.JournalRecord, keep: frozenset[str] | None
) -> None:
    if keep is not None:
        async with record.doing(jn.STEP_PRUNE, keep=sorted(keep)):
            removed = await in_thread(ctx.releases.prune, keep)
        if removed:
            log.info("pruned releases %s", ", ".join(removed))
    async with record.doing(jn.STEP_COLLECT):
        result = await in_thread(ctx.releases.collect)
    if result.objects:
        log.info("collected %d unreferenced objects (%d bytes)", result.objects, result.bytes)


def recorded_keep(record: jn.JournalRecord) -> frozenset[str] | None:
    """The `keep` an interrupted collection was run with."""
    data = record.step_data(jn.STEP_PRUNE)
    if data is None or not isinstance(data.get("keep"), list):
        return None
    return frozenset(str(r) for r in data["keep"])
