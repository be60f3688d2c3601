"""pxhostd writes and removes only files it owns: never an administrator's own unit.

A unit file is pxhostd's when the applied state lists it (pxhostd wrote it) or its text
starts with the generated header (written by an operation that was rolled back or
interrupted before the state was saved). Before the first write of a name, a file that is
neither, or a unit systemd already loads from another place (a vendor unit in
/lib/systemd/system that a file in /etc/systemd/system would shadow), is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from pxhostd.engine.context import HostContext, in_thread
from pxhostd.engine.state import AppliedState
from pxhostd.errors import ForeignUnit
from pxhostd.render.names import is_generated, is_unit_file
from pxhostd.systemd.unit import LoadState


def owned_text(name: str, text: str, applied: AppliedState | None) -> bool:
    """True if pxhostd wrote this file's `text` (by the applied state's digest or header)."""
    if applied is not None:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if applied.unit_digests.get(name) == digest:
            return True
    return is_generated(text)


async def check_unit_ownership(
    ctx: HostContext, units: Mapping[str, str], applied: AppliedState | None
) -> None:
    """Raise ForeignUnit, before anything is written, for a name pxhostd may not take."""
    for name in sorted(units):
        text = await in_thread(ctx.read_unit, name)
        if text is not None:
            if not owned_text(name, text, applied):
                raise ForeignUnit(
                    f"{ctx.unit_path(name)} exists and was not written by pxhostd; "
                    f"pick another spec.service, or move that file away first"
                )
            continue
        if not is_unit_file(name) or (applied is not None and name in applied.unit_digests):
            continue
        state = await ctx.systemd.unit_state(name)
        fragment = state.fragment_path
        if state.load_state is LoadState.MASKED or (
            state.load_state is LoadState.LOADED
            and fragment
            and fragment != str(ctx.unit_path(name))
        ):
            raise ForeignUnit(
                f"systemd already has a unit {name} ({state.load_state}, from "
                f"{fragment or 'no file'}); pxhostd does not shadow it: pick another "
                "spec.service"
            )
