"""Restoring the host to a journal's `before` side: used by in-process rollback and by
crash recovery alike, so both paths run the same, tested code."""

from __future__ import annotations

import contextlib
import logging

from pxhostd.engine import journal as jn
from pxhostd.engine.context import HostContext, in_thread
from pxhostd.errors import PxError
from pxhostd.hostfs import remove_file
from pxhostd.redact import with_log_excerpt
from pxhostd.render.names import is_unit_file
from pxhostd.systemd.errors import NoSuchUnit
from pxhostd.systemd.journal import unit_journal_tail
from pxhostd.systemd.verify import restart_and_verify

log = logging.getLogger(__name__)


def service_unit(record: jn.JournalRecord) -> str | None:
    """The main service unit of a journaled operation (the first *.service it touches)."""
    names = sorted({*record.before.units, *record.target.units})
    services = [n for n in names if n.endswith(".service") and "-reboot" not in n]
    return services[0] if services else None


async def perform_undo(
    ctx: HostContext, record: jn.JournalRecord, actions: tuple[jn.Undo, ...]
) -> None:
    before, target = record.before, record.target
    unit = service_unit(record)
    touched = sorted({*before.units, *target.units})
    for action in actions:
        log.info("rollback of %s: %s", record.txid, action.value)
        if action is jn.Undo.SWITCH_BACK:
            kept = bool(before.release) and await in_thread(
                ctx.releases.exists, str(before.release)
            )
            if before.release and kept:
                await in_thread(ctx.releases.switch, before.release)
            else:
                await in_thread(ctx.releases.unlink_current)
        elif action is jn.Undo.RESTORE_UNITS:
            for name in touched:
                await in_thread(ctx.write_unit, name, before.units.get(name))
        elif action is jn.Undo.DAEMON_RELOAD:
            await ctx.systemd.daemon_reload(ctx.settings.reload_timeout)
        elif action is jn.Undo.RESTORE_ENABLEMENT:
            present = [n for n in touched if is_unit_file(n) and await _present(ctx, n)]
            if before.enabled and present:
                await ctx.systemd.enable_unit_files(present)
            else:
                await disable_units(ctx, touched)
        elif action is jn.Undo.RESTART_PREVIOUS and unit is not None:
            if before.active and await _present(ctx, unit):
                await restart_and_verify(ctx.systemd, unit, ctx.settings.activation_timeout)
            else:
                await stop(ctx, unit)
                await reset_failed(ctx, unit)
        elif (
            action is jn.Undo.REMOVE_STAGED
            and target.release
            and target.release != before.release
            and await in_thread(ctx.releases.current) != target.release
        ):
            await in_thread(ctx.releases.remove, target.release)
    await in_thread(ctx.releases.sweep)


async def stop(ctx: HostContext, unit: str) -> None:
    """Stop a unit; one systemd does not know is already stopped."""
    with contextlib.suppress(NoSuchUnit):
        await ctx.systemd.stop_unit(unit, ctx.settings.stop_timeout)


async def reset_failed(ctx: HostContext, unit: str) -> None:
    """Forget a unit's failed state; a unit systemd no longer knows has none to forget."""
    with contextlib.suppress(NoSuchUnit):
        await ctx.systemd.reset_failed_unit(unit)


async def disable_units(ctx: HostContext, names: list[str]) -> None:
    """Disable through systemd; for unit files already gone, drop the dangling wants links."""
    units = [n for n in names if is_unit_file(n)]
    present = [n for n in units if await _present(ctx, n)]
    if present:
        await ctx.systemd.disable_unit_files(present)
    await in_thread(_drop_wants_links, ctx, units)


def _drop_wants_links(ctx: HostContext, units: list[str]) -> None:
    for name in units:
        for link in ctx.paths.unit_dir.glob(f"*.wants/{name}"):
            remove_file(link)


async def _present(ctx: HostContext, name: str) -> bool:
    return await in_thread(ctx.read_unit, name) is not None


async def unit_failure_reason(ctx: HostContext, unit: str, exc: PxError) -> str:
    """The error plus the failing unit's last journal lines: the cause, not just "failed"."""
    invocation = ""
    with contextlib.suppress(PxError):
        invocation = (await ctx.systemd.unit_state(unit)).invocation_id
    # The failed invocation's own lines are the payload's words; systemd's are already in
    # the error. Fall back to the unit's tail when the invocation logged nothing.
    lines = await unit_journal_tail(unit, ctx.settings.journal_lines, invocation or None)
    if not lines:
        lines = await unit_journal_tail(unit, ctx.settings.journal_lines)
    return with_log_excerpt(str(exc), unit, lines[-5:])
