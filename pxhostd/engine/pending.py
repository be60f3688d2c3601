"""A unit change that waits for the service's next restart, and how Status() shows it.

When only upgrading pxhostd changed the rendered units (same spec, same payload), the
engine writes and reloads them but does not restart storage (a package upgrade would
otherwise restart it on every node at once). It records the service's InvocationID at that
moment; while the service still runs that invocation, the change is pending.
"""

from __future__ import annotations

import contextlib
import json

from pxhostd.engine.context import HostContext, in_thread
from pxhostd.errors import PxError
from pxhostd.hostfs import atomic_write, remove_file

PENDING_FILE = "pending-restart.json"


async def record_pending(ctx: HostContext, unit: str) -> None:
    invocation = (await ctx.systemd.unit_state(unit)).invocation_id
    doc = json.dumps({"unit": unit, "invocation": invocation}, sort_keys=True) + "\n"
    await in_thread(atomic_write, ctx.paths.state_dir / PENDING_FILE, doc, 0o600)


async def pending_message(ctx: HostContext) -> str:
    """"" unless a recorded unit change still waits for the service's next restart."""
    path = ctx.paths.state_dir / PENDING_FILE
    try:
        doc = json.loads(await in_thread(path.read_bytes))
        unit, invocation = str(doc["unit"]), str(doc["invocation"])
    except FileNotFoundError:
        return ""
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    current = ""
    with contextlib.suppress(PxError):
        current = (await ctx.systemd.unit_state(unit)).invocation_id
    if current and current == invocation:
        return f"unit change from the pxhostd upgrade takes effect at the next restart of {unit}"
    with contextlib.suppress(PxError, OSError):
        await in_thread(remove_file, path)  # it has taken effect (or the unit is gone)
    return ""
