"""The steps after an apply's commit point; idempotent, so crash recovery re-runs them.

Kept apart from `apply` so that start-up recovery does not load the renderer (jinja2):
the daemon reaches READY=1 sooner.
"""

from __future__ import annotations

from dataclasses import replace

from pxhostd.engine import journal as jn
from pxhostd.engine.context import HostContext, in_thread
from pxhostd.engine.state import AppliedState


async def finish(ctx: HostContext, record: jn.JournalRecord) -> None:
    """The steps after the commit point; idempotent, so recovery can re-run them."""
    applied = record.target.applied
    if applied is not None:
        state = AppliedState.from_json(dict(applied))
        # Whether the configuration exists now, after the service's (re)start: the plan
        # saw it before, when a first start had not written it yet.
        missing = not await in_thread(ctx.paths.pwx_config_file.exists)
        async with record.doing(jn.STEP_SAVE_APPLIED):
            await in_thread(ctx.applied.save, replace(state, config_missing=missing))
    await record.done()
    # Pruning the oldest release and collecting its objects wait until the operation has
    # reported success (`collect`), out of the downtime window.
    ctx.want_collect(frozenset(r for r in (record.target.release, record.before.release) if r))
