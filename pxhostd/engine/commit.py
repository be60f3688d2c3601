"""The steps after an apply's commit point; idempotent, so crash recovery re-runs them.

Kept apart from `apply` so that start-up recovery does not load the renderer (jinja2):
the daemon reaches READY=1 sooner.
"""

from __future__ import annotations

from pxhostd.engine import journal as jn
from pxhostd.engine.context import HostContext, in_thread
from pxhostd.engine.state import AppliedState


async def finish(ctx: HostContext, record: jn.JournalRecord) -> None:
    """The steps after the commit point; idempotent, so recovery can re-run them."""
    applied = record.target.applied
    if applied is not None:
        async with record.doing(jn.STEP_SAVE_APPLIED):
            await in_thread(ctx.applied.save, AppliedState.from_json(dict(applied)))
    await record.done()
    # Pruning the oldest release and collecting its objects wait until the operation has
    # reported success (`collect`), out of the downtime window.
    ctx.want_collect(frozenset(r for r in (record.target.release, record.before.release) if r))
