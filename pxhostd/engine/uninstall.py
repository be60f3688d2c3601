"""Uninstall: stop, disable, remove units and releases, reload; keep /etc/pwx unless wiped.

Always rolls forward: every step is idempotent, so recovery simply runs them all again.
"""

from __future__ import annotations

from pxhostd.engine import failpoints as fp
from pxhostd.engine import journal as jn
from pxhostd.engine.api import Outcome, ProgressFn
from pxhostd.engine.context import HostContext, in_thread
from pxhostd.engine.state import AppliedState
from pxhostd.engine.undo import disable_units, reset_failed, stop
from pxhostd.hostfs import remove_tree
from pxhostd.spec.model import DEFAULT_SERVICE


def managed_files(applied: AppliedState | None, service: str) -> list[str]:
    """Every file pxhostd manages for the service: its units and its environment file."""
    names = set(applied.unit_digests) if applied else set()
    names.add(f"{service}.service")
    return sorted(names)


async def uninstall(ctx: HostContext, wipe: bool, txid: str, progress: ProgressFn) -> Outcome:
    applied = await in_thread(ctx.applied.load)
    service = str(applied.spec.get("service", DEFAULT_SERVICE)) if applied else DEFAULT_SERVICE
    units = managed_files(applied, service)
    live = {n: ctx.read_unit(n) for n in units}
    installed = any(t is not None for t in live.values()) or applied or ctx.releases.list()
    if not installed and not wipe:
        return Outcome(False, f"nothing to do: {service} is not installed")
    before = jn.Snapshot(
        release=ctx.releases.current(),
        units=live,
        enabled=False,
        active=False,
        version=applied.version if applied else None,
        applied=applied.to_json() if applied else None,
    )
    record = ctx.journal.begin(
        jn.OP_UNINSTALL, txid, before, jn.Snapshot(units=dict.fromkeys(units))
    )
    await run_uninstall_steps(ctx, record, units, wipe, progress)
    record.done()
    what = " and wiped its configuration" if wipe else ""
    return Outcome(
        True,
        f"uninstalled {service}{what}",
        {"version_before": before.version, "version_after": None},
    )


async def run_uninstall_steps(
    ctx: HostContext,
    record: jn.JournalRecord,
    units: list[str],
    wipe: bool,
    progress: ProgressFn,
) -> None:
    services = [n for n in units if n.endswith(".service")]
    progress(10, f"stopping {', '.join(services)}")
    record.step(jn.STEP_STOP)
    for name in services:
        await stop(ctx, name)
    ctx.failpoints.hit(fp.AFTER_STOP)
    progress(35, "disabling units")
    record.step(jn.STEP_DISABLE)
    await disable_units(ctx, units)
    ctx.failpoints.hit(fp.AFTER_DISABLE)
    progress(50, "removing unit files")
    record.step(jn.STEP_REMOVE_UNITS)
    for name in units:
        await in_thread(ctx.write_unit, name, None)
    ctx.failpoints.hit(fp.AFTER_UNIT_REMOVE)
    record.step(jn.STEP_DAEMON_RELOAD)
    await ctx.systemd.daemon_reload(ctx.settings.reload_timeout)
    for name in services:
        await reset_failed(ctx, name)
    progress(70, "removing releases")
    record.step(jn.STEP_REMOVE_RELEASES)
    await in_thread(ctx.releases.remove_all)
    progress(90, "forgetting the applied state")
    record.step(jn.STEP_FORGET, wipe=wipe)
    await in_thread(ctx.applied.clear)
    if wipe:
        await in_thread(remove_tree, ctx.paths.pwx_config_dir)
