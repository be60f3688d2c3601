"""One error hierarchy for the whole project, and its D-Bus error names.

Everything pxhostd raises on purpose derives from PxError. The D-Bus surface maps
PxError subclasses to `com.portworx.pxhostd1.Error.<Name>` in one place; the client maps
them back with `error_from_dbus_name`. A user never sees a traceback for these.
"""

from __future__ import annotations

ERROR_PREFIX = "com.portworx.pxhostd1.Error."


class PxError(Exception):
    """Root of every deliberate pxhostd error."""

    #: The short D-Bus error name (after ERROR_PREFIX).
    name = "Failed"

    def __init__(self, message: str = "", *, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        #: Structured facts for transaction results and history (versions, release ids).
        self.details: dict[str, object] = dict(details or {})

    @property
    def dbus_name(self) -> str:
        return ERROR_PREFIX + self.name


class Failed(PxError):
    """An operation failed for a reason not covered by a more specific error."""

    name = "Failed"


class InvalidSpec(PxError):
    """The desired spec is malformed or unsafe; nothing was changed."""

    name = "InvalidSpec"


class InvalidPayload(InvalidSpec):
    """The payload directory or its manifest is malformed, incomplete or tampered with."""

    name = "InvalidPayload"


class ForeignUnit(InvalidSpec):
    """A unit of the service's name exists and pxhostd did not write it; nothing was changed."""

    name = "ForeignUnit"


class Busy(PxError):
    """Another, different operation is running."""

    name = "Busy"


class NotInstalled(PxError):
    """The operation needs an installed service and there is none."""

    name = "NotInstalled"


class NoPreviousRelease(NotInstalled):
    """Rollback: no earlier release (and its spec) is kept to go back to."""

    name = "NoPreviousRelease"


class RolledBack(PxError):
    """An upgrade failed and the previous release was restored."""

    name = "RolledBack"


class Interrupted(PxError):
    """pxhostd had to stop while the operation ran (it lost its D-Bus connection, it was
    stopped): not the request's failure; recovery at the next start finishes or rolls the
    operation back, and the history records which and why."""

    name = "Interrupted"


class Timeout(PxError):
    """A bounded wait (systemd job, service activation) ran out."""

    name = "Timeout"


class AccessDenied(PxError):
    """The caller lacks the rights for this call."""

    name = "AccessDenied"


class SystemdError(Failed):
    """systemd refused or failed a request."""

    name = "SystemdError"

    def __init__(
        self, message: str = "", *, reply_name: str = "", details: dict[str, object] | None = None
    ) -> None:
        super().__init__(message, details=details)
        #: The D-Bus error name systemd replied with (`org.freedesktop.systemd1.NoSuchUnit`),
        #: so callers test the name, not the message; "" when the failure was no error reply
        #: (a lost connection, a job result, a check of ours). Not `dbus_name`: that is the
        #: name pxhostd itself replies with.
        self.reply_name = reply_name


class HostStateError(Failed):
    """Host state on disk is inconsistent or could not be written."""

    name = "HostStateError"


class DaemonUnavailable(PxError):
    """Client side: the pxhostd daemon is not running or not reachable on the bus."""

    name = "DaemonUnavailable"


def _all_error_classes() -> dict[str, type[PxError]]:
    found: dict[str, type[PxError]] = {}
    stack: list[type[PxError]] = [PxError]
    while stack:
        cls = stack.pop()
        if cls is not PxError:
            found.setdefault(cls.name, cls)
        stack.extend(cls.__subclasses__())
    return found


def error_from_dbus_name(dbus_name: str, message: str) -> PxError:
    """Turn a D-Bus error reply back into the matching PxError (client side)."""
    if dbus_name.startswith(ERROR_PREFIX):
        cls = _all_error_classes().get(dbus_name[len(ERROR_PREFIX) :], Failed)
        return cls(message)
    if dbus_name == "org.freedesktop.DBus.Error.AccessDenied":
        return AccessDenied(message)
    if dbus_name in (
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
        "org.freedesktop.DBus.Error.NoReply",
    ):
        return DaemonUnavailable(message)
    return Failed(f"{dbus_name}: {message}")


class InvalidOptions(PxError):
    """A method's options (a{sv}) hold an unknown key or a value of the wrong type."""

    name = "InvalidOptions"
