"""The two journal lines of every transaction: its start and its end, as an operator reads
them. The end names what happened (install, upgrade, downgrade, reconfigure, rollback...),
the versions before -> after, the restart decision and its reason, who asked and the
txid, at the priority it deserves: a failure at err, a rollback (automatic or asked for)
or a refused request at warning, the rest at info.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pxhostd.errors import ERROR_PREFIX


def _what(operation: str, details: Mapping[str, Any]) -> str:
    """install/upgrade/downgrade/reconfigure for an apply; the operation otherwise."""
    before, after = details.get("version_before"), details.get("version_after")
    if operation not in ("install", "reconcile") or after is None:
        return operation
    if not before:
        return f"{operation} (first install)" if operation != "install" else "install"
    if before == after:
        return f"{operation} (reconfigure)" if operation != "install" else "reconfigure"
    from pxhostd.engine.apply import upgrade_verb

    word = {"upgraded to": "upgrade", "downgraded to": "downgrade"}.get(
        upgrade_verb(str(before), str(after)), "switch"
    )
    return word if operation == "install" else f"{operation} ({word})"


def _versions(service: str, details: Mapping[str, Any]) -> str:
    before, after = details.get("version_before"), details.get("version_after")
    if before is None and after is None:
        return ""
    return f" {service} {before or '-'} -> {after or '-'}"


def start_line(operation: str, txid: str, caller: str) -> str:
    return f"{operation} started, requested by {caller} (txid {txid})"


def end_line(
    *,
    operation: str,
    txid: str,
    caller: str,
    service: str,
    success: bool,
    changed: bool,
    error_name: str,
    message: str,
    details: Mapping[str, Any],
) -> tuple[int, str]:
    what = _what(operation, details) if changed or not success else operation
    versions = _versions(service, details)
    restarted = details.get("restarted")
    reason = details.get("reason")
    if success and not changed:
        level, outcome = logging.INFO, "nothing to do"
    elif success:
        level = logging.WARNING if operation == "rollback" else logging.INFO
        outcome = "done"
    else:
        name = error_name.removeprefix(ERROR_PREFIX) or "Failed"
        # A rollback restored the previous release; a refused request (nothing installed,
        # nothing to roll back to) changed nothing; an interrupted one is finished by
        # recovery: each deserves attention, not an alarm.
        level = logging.WARNING if name in ("RolledBack", "NotInstalled", "NoPreviousRelease",
                                            "Interrupted") else logging.ERROR
        # Interrupted: pxhostd stops under it; recovery at the next start records the end.
        outcome = (f"interrupted: {message.removeprefix('interrupted: ')}"
                   if name == "Interrupted" else f"failed, {name}: {message}")
    text = f"{what}{versions}: {outcome}"
    if success and changed and restarted is not None:
        verb = "started" if details.get("service_action") == "start" else "restarted"
        text += f"; {verb}: {reason}" if restarted and reason else (
            f"; {verb}" if restarted else f"; not restarted ({reason or 'not needed'})"
        )
    elif reason and not success:
        text += f"; restart reason: {reason}"
    return level, f"{text}; requested by {caller} (txid {txid})"
