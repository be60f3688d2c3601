"""The one place where systemd's D-Bus errors become pxhostd errors."""

from __future__ import annotations

from pxhostd.errors import AccessDenied, PxError, SystemdError
from pxhostd.systemd import constants as c


class NoSuchUnit(SystemdError):
    """systemd knows no unit of that name (not loaded and no unit file found)."""


class UnitMasked(SystemdError):
    """The unit is masked; systemd refuses to start it."""


def error_from_reply(error_name: str, text: str, what: str) -> PxError:
    """Map an error reply to a named error; `what` says which call failed and on what."""
    if error_name == c.ERR_NO_SUCH_UNIT:
        return NoSuchUnit(f"{what}: no such unit ({text})", reply_name=error_name)
    if error_name == c.ERR_UNIT_MASKED:
        return UnitMasked(f"{what}: unit is masked ({text})", reply_name=error_name)
    if error_name == c.ERR_ACCESS_DENIED:
        return AccessDenied(f"{what}: systemd denied access ({text})")
    if error_name in (c.ERR_SERVICE_UNKNOWN, c.ERR_NO_REPLY):
        return SystemdError(
            f"{what}: systemd is not reachable on the bus ({text})", reply_name=error_name
        )
    return SystemdError(f"{what}: {error_name}: {text}", reply_name=error_name)


def error_from_transport(exc: BaseException, what: str) -> SystemdError:
    """A failure below D-Bus (connection lost, bad message): never a bare traceback."""
    return SystemdError(f"{what}: D-Bus transport failed: {type(exc).__name__}: {exc}")
