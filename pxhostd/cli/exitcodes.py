"""pxhostctl exit codes: one per class of outcome, so scripts never parse messages."""

from __future__ import annotations

from pxhostd import errors

OK = 0
FAILED = 1
USAGE = 2  # bad command line, invalid spec or options
UNAVAILABLE = 3  # pxhostd is not running or the bus is unreachable
DENIED = 4  # the caller lacks the rights (mutating calls need root)
BUSY = 5  # another operation runs
NOT_INSTALLED = 6  # nothing installed to act on
ROLLED_BACK = 7  # an upgrade failed and the previous release was restored
TIMEOUT = 8  # a bounded wait ran out
NOT_READY = 9  # probe: not ready; status: the service is not running as specified
CHANGES = 10  # plan / install --dry-run: applying the spec would change the host
INTERRUPTED = 130  # Ctrl-C while following (the operation goes on in pxhostd)

TABLE: list[tuple[type[errors.PxError], int]] = [
    (errors.InvalidSpec, USAGE),
    (errors.InvalidOptions, USAGE),
    (errors.DaemonUnavailable, UNAVAILABLE),
    (errors.AccessDenied, DENIED),
    (errors.Busy, BUSY),
    (errors.NotInstalled, NOT_INSTALLED),
    (errors.RolledBack, ROLLED_BACK),
    (errors.Timeout, TIMEOUT),
]

#: The one exit-code table: the top-level --help shows it, the man page repeats it (a test
#: keeps the two equal), subcommands point at it.
CODES: list[tuple[int, str]] = [
    (OK, "success (also when nothing had to change)"),
    (FAILED, "the operation failed"),
    (USAGE, "usage error, invalid spec or options"),
    (UNAVAILABLE, "pxhostd is not running or the bus is unreachable"),
    (DENIED, "access denied (changing anything needs root)"),
    (BUSY, "busy: another operation is running"),
    (NOT_INSTALLED, "not installed (also: rollback has no previous release)"),
    (ROLLED_BACK, "rolled back: the new release failed, the previous one runs again"),
    (TIMEOUT, "timed out waiting (the operation goes on in pxhostd)"),
    (NOT_READY, "not ready: probe failed, or status found the service not running as "
                "specified"),
    (CHANGES, "plan, install --dry-run: applying the spec would change the host"),
    (INTERRUPTED, "interrupted while following (the operation goes on in pxhostd)"),
]

HELP = "exit codes:\n" + "\n".join(f"  {code:<3} {text}" for code, text in CODES)

#: What every subcommand's --help says instead of repeating the table.
POINTER = "exit codes: see `pxhostctl --help` or pxhostctl(1)."


def for_error(exc: errors.PxError) -> int:
    for cls, code in TABLE:
        if isinstance(exc, cls):
            return code
    return FAILED
