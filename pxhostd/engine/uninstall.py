"""Uninstall: stop, disable, remove units and releases, reload; keep /etc/pwx unless wiped.

Always rolls forward: every step is idempotent, so recovery simply runs them all again.
What was asked (`wipe`) is journaled when the operation begins, so a crash at any step
still ends with exactly that. Only files pxhostd wrote are disabled and removed.
"""

from __future__ import annotations

import logging

from pxhostd.engine import journal as jn
from pxhostd.engine.api import Outcome, ProgressFn
from pxhostd.engine.context import HostContext, in_thread
from pxhostd.engine.ownership import owned_text
from pxhostd.engine.state import AppliedState
from pxhostd.engine.undo import disable_units, reset_failed, stop
from pxhostd.hostfs import remove_tree
from pxhostd.spec.model import DEFAULT_SERVICE, unit_name

log = logging.getLogger(__name__)


def managed_files(applied: AppliedState | None, service: str) -> list[str]:
    """Every file pxhostd manages for the service: its units and its environment file."""
    names = set(applied.unit_digests) if applied else set()
    names.add(unit_name(service))
    return sorted(names)


async def uninstall(ctx: HostContext, wipe: bool, txid: str, progress: ProgressFn) -> Outcome:
    applied = await in_thread(ctx.applied.load)
    service = applied.spec.service if applied else DEFAULT_SERVICE
    live = {n: await in_thread(ctx.read_unit, n) for n in managed_files(applied, service)}
    ours = {n: t for n, t in live.items() if t is not None and owned_text(n, t, applied)}
    foreign = sorted(n for n, t in live.items() if t is not None and n not in ours)
    for name in foreign:
        log.warning("uninstall leaves %s alone: pxhostd did not write it", ctx.unit_path(name))
    releases = await in_thread(ctx.releases.list)
    if not (ours or applied or releases) and not wipe:
        return Outcome(False, f"nothing to do: {service} is not installed")
    units = sorted(set(ours) | set(applied.unit_digests if applied else ()))
    before = jn.Snapshot(
        release=await in_thread(ctx.releases.current),
        units={n: live.get(n) for n in units},
        enabled=False,
        active=False,
        version=applied.version if applied else None,
        applied=applied.to_json() if applied else None,
    )
    record = await ctx.journal.begin(
        jn.OP_UNINSTALL, txid, before, jn.Snapshot(units=dict.fromkeys(units)),
        intent={"wipe": wipe, "service": service},
    )
    await run_uninstall_steps(ctx, record, progress)
    await record.done()
    what = " and wiped its configuration" if wipe else ""
    return Outcome(
        True,
        f"uninstalled {service}{what}",
        {"version_before": before.version, "version_after": None},
    )


def _applied_of(record: jn.JournalRecord) -> AppliedState | None:
    doc = record.before.applied
    return AppliedState.from_json(dict(doc)) if doc is not None else None


async def run_uninstall_steps(
    ctx: HostContext, record: jn.JournalRecord, progress: ProgressFn
) -> None:
    """Every step, from the journal alone: run by the operation and again by recovery."""
    wipe = bool(record.intent.get("wipe", (record.step_data(jn.STEP_FORGET) or {}).get("wipe")))
    applied = _applied_of(record)
    candidates = sorted({*record.target.units, *record.before.units})
    units = []
    for name in candidates:
        text = await in_thread(ctx.read_unit, name)
        if text is None or owned_text(name, text, applied):
            units.append(name)
        else:
            log.warning("uninstall leaves %s alone: pxhostd did not write it",
                        ctx.unit_path(name))
    services = [n for n in units if n.endswith(".service")]
    progress(10, f"stopping {', '.join(services) or 'nothing'}")
    async with record.doing(jn.STEP_STOP):
        for name in services:
            await stop(ctx, name)
    progress(35, "disabling units")
    async with record.doing(jn.STEP_DISABLE):
        await disable_units(ctx, units)
    progress(50, "removing unit files")
    async with record.doing(jn.STEP_REMOVE_UNITS):
        for name in units:
            await in_thread(ctx.write_unit, name, None)
    async with record.doing(jn.STEP_DAEMON_RELOAD):
        await ctx.systemd.daemon_reload(ctx.settings.reload_timeout)
        for name in services:
            await reset_failed(ctx, name)
    progress(70, "removing releases")
    async with record.doing(jn.STEP_REMOVE_RELEASES):
        await in_thread(ctx.releases.remove_all)
    progress(90, "forgetting the applied state" + (" and wiping the configuration" if wipe else ""))
    async with record.doing(jn.STEP_FORGET, wipe=wipe):
        await in_thread(ctx.applied.clear)
        if wipe:
            await in_thread(remove_tree, ctx.paths.pwx_config_dir)
