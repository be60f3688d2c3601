"""A unit's last journal lines, as evidence for error messages (rollback reasons).

Reading the journal is best effort by design: a host without journald, a missing
`journalctl`, or a slow journal must not turn a clear error ("portworx.service failed")
into a different one.  So this never raises for those; it returns what it could read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

from pxhostd.systemd import constants as c

log = logging.getLogger(__name__)

_INVOCATION_ID = re.compile(r"[0-9a-f]{32}")


def journal_command(
    unit: str,
    lines: int,
    invocation_id: str | None,
    user: bool,
    journalctl: str = "journalctl",
) -> list[str]:
    """The argv; values go in as separate arguments, never through a shell."""
    argv = [journalctl, "--no-pager", "--quiet", "--output=cat", f"--lines={max(lines, 0)}"]
    argv += [f"--user-unit={unit}"] if user else [f"--unit={unit}"]
    if invocation_id:
        if not _INVOCATION_ID.fullmatch(invocation_id):
            raise ValueError(f"not an invocation id: {invocation_id!r}")
        argv.append(f"_SYSTEMD_INVOCATION_ID={invocation_id}")
    return argv


async def unit_journal_tail(
    unit: str,
    lines: int = 20,
    invocation_id: str | None = None,
    user: bool = False,
    *,
    journalctl: str = "journalctl",
    timeout: float = c.JOURNAL_TIMEOUT,
) -> list[str]:
    """Up to `lines` last messages of `unit` (of one invocation if given); [] if none."""
    if lines <= 0:
        return []
    argv = journal_command(unit, lines, invocation_id, user, journalctl)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:  # journalctl not installed (or not executable)
        log.debug("journal of %s unavailable: %s", unit, exc)
        return []
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        log.warning("journalctl for %s did not finish within %g s", unit, timeout)
        return []
    if proc.returncode != 0:
        log.debug("journalctl for %s exited %s: %s", unit, proc.returncode,
                  err.decode(errors="replace").strip())
        return []
    text = out.decode(errors="replace")
    return [line for line in text.splitlines() if line][-lines:]
