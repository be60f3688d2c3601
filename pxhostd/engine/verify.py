"""`pxhostctl verify`: re-check every installed file against its sha256, like `ostree fsck`.

Nothing on the normal path re-hashes a release (it is read-only and root-owned, written
once by the import); this is for operators who want to know it is still intact.
"""

from __future__ import annotations

from pxhostd.engine.api import Outcome, ProgressFn
from pxhostd.engine.context import HostContext, in_thread
from pxhostd.errors import HostStateError, NotInstalled

#: Problems listed in the error message (all of them go into its details, up to MAX_LISTED).
SHOWN = 10
MAX_LISTED = 200


async def verify_releases(ctx: HostContext, progress: ProgressFn) -> Outcome:
    releases = await in_thread(ctx.releases.list)
    if not releases:
        raise NotInstalled("verify: no release is installed")
    problems: list[str] = []
    for n, rid in enumerate(releases):
        progress(10 + 80 * n // len(releases), f"verifying release {rid}")
        problems += await in_thread(ctx.releases.check, rid)
    problems += await in_thread(ctx.releases.check_spares)
    if problems:
        shown = "; ".join(problems[:SHOWN]) + (" ..." if len(problems) > SHOWN else "")
        raise HostStateError(
            f"verify: {len(problems)} problem(s) in the installed releases: {shown}",
            details={"problems": problems[:MAX_LISTED]},
        )
    return Outcome(
        False,
        f"verified releases {', '.join(releases)}: every file matches its sha256",
        {"releases": releases},
    )
