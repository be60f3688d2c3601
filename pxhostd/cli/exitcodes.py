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
NOT_READY = 9  # probe: the service is not ready

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

HELP = """exit codes:
  0  success (also when nothing had to change)
  1  the operation failed
  2  usage error, invalid spec or options
  3  pxhostd is not running or the bus is unreachable
  4  access denied (changing anything needs root)
  5  busy: another operation is running
  6  not installed
  7  rolled back: the upgrade failed, the previous release runs again
  8  timed out
  9  probe: not ready"""


def for_error(exc: errors.PxError) -> int:
    for cls, code in TABLE:
        if isinstance(exc, cls):
            return code
    return FAILED
