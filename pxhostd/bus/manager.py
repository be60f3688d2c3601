"""The exported interface com.portworx.pxhostd1.Manager at /com/portworx/pxhostd1.

Thin by design: it converts wire values, checks options, and hands work to the backend (the
daemon). Mutating methods return a transaction path at once; the work runs in the
transaction. Every failure leaves through `dbus_errors` as a named error.
"""

from collections.abc import Mapping
from typing import Any, Protocol

from dbus_fast import PropertyAccess, Variant
from dbus_fast.service import ServiceInterface, dbus_property, method

from pxhostd.bus.errormap import dbus_errors
from pxhostd.bus.names import MANAGER_INTERFACE, NO_TRANSACTION
from pxhostd.bus.transactions import options_txid
from pxhostd.engine.api import Request
from pxhostd.errors import InvalidOptions
from pxhostd.redact import public_text
from pxhostd.variants import to_vardict, unwrap

#: Options every mutating method accepts, with their expected Python type after unwrap.
COMMON_OPTIONS: dict[str, type] = {"id": str}
UNINSTALL_OPTIONS: dict[str, type] = {**COMMON_OPTIONS, "wipe": bool}
INSTALL_OPTIONS: dict[str, type] = {**COMMON_OPTIONS}
#: Plan takes no options yet; the argument keeps the signature open for them.
PLAN_OPTIONS: dict[str, type] = {}

#: History(limit) is capped so one call cannot ask for an unbounded reply.
HISTORY_MAX = 1000


class ManagerBackend(Protocol):
    """What the interface needs from the daemon."""

    def status(self) -> dict[str, Any]: ...
    def get_spec(self) -> dict[str, Any]: ...
    def history(self, limit: int) -> list[dict[str, Any]]: ...
    def submit(self, request: Request) -> str: ...
    def install_request(self, raw_spec: Any, txid: str) -> Request: ...
    async def plan(self, raw_spec: Mapping[str, Any] | None) -> dict[str, Any]: ...


def check_options(raw: Mapping[str, Any], allowed: Mapping[str, type]) -> dict[str, Any]:
    """Unwrap options and reject unknown keys or wrong types with a named error."""
    if not isinstance(raw, Mapping):
        raise InvalidOptions("options must be a dictionary (a{sv})")
    options = {str(k): unwrap(v) for k, v in raw.items()}
    for key, value in options.items():
        expected = allowed.get(key)
        if expected is None:
            raise InvalidOptions(
                f"unknown option {key!r}; allowed: {', '.join(sorted(allowed)) or 'none'}"
            )
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise InvalidOptions(f"option {key!r} must be of type {expected.__name__}")
    return options


class ManagerInterface(ServiceInterface):
    """com.portworx.pxhostd1.Manager."""

    def __init__(self, backend: ManagerBackend) -> None:
        super().__init__(MANAGER_INTERFACE)
        self._backend = backend
        self._props: dict[str, Any] = {
            "Version": "",
            "PayloadVersion": "",
            "State": "starting",
            "ServiceState": "",
            "ActiveTransaction": NO_TRANSACTION,
            "LastError": "",
        }

    def update(self, **changes: Any) -> None:
        """Set properties; emit PropertiesChanged for the ones that really changed.

        Properties and their signals reach everyone, so they hold the public view only
        (`pxhostd.redact.public_text`); root reads the full text from Status().
        """
        public = {k: public_text(v) if isinstance(v, str) else v for k, v in changes.items()}
        changed = {k: v for k, v in public.items() if self._props.get(k) != v}
        if not changed:
            return
        self._props.update(changed)
        self.emit_properties_changed(changed)

    def prop(self, name: str) -> Any:
        return self._props[name]

    # -- read-only methods -------------------------------------------------------------

    @method()
    @dbus_errors
    def Status(self) -> "a{sv}":
        return to_vardict(self._backend.status())

    @method()
    @dbus_errors
    def GetSpec(self) -> "a{sv}":
        return to_vardict(self._backend.get_spec())

    @method()
    @dbus_errors
    def History(self, limit: "u") -> "aa{sv}":
        entries = self._backend.history(min(int(limit), HISTORY_MAX) or HISTORY_MAX)
        return [to_vardict(e) for e in entries]

    # -- mutating methods (root only by bus policy) -----------------------------------

    @method()
    @dbus_errors
    def Install(self, spec: "a{sv}", options: "a{sv}") -> "o":
        opts = check_options(options, INSTALL_OPTIONS)
        raw_spec = {str(k): unwrap(v) for k, v in spec.items()}
        request = self._backend.install_request(raw_spec, options_txid(opts))
        return self._backend.submit(request)

    @method()
    @dbus_errors
    async def Plan(self, spec: "a{sv}", options: "a{sv}") -> "a{sv}":
        """What Install(spec) would change and why (empty spec: the desired state).

        Root only (bus policy): it reads the payload and runs systemd-analyze verify.
        """
        check_options(options, PLAN_OPTIONS)
        raw_spec = {str(k): unwrap(v) for k, v in spec.items()}
        return to_vardict(await self._backend.plan(raw_spec or None))

    @method()
    @dbus_errors
    def Rollback(self, options: "a{sv}") -> "o":
        """Back to the previous kept release and its spec, as a transaction."""
        return self._simple("rollback", options)

    def _simple(self, operation: str, options: Mapping[str, Variant]) -> str:
        opts = check_options(options, COMMON_OPTIONS)
        return self._backend.submit(Request(operation, {}, options_txid(opts)))

    @method()
    @dbus_errors
    def Start(self, options: "a{sv}") -> "o":
        return self._simple("start", options)

    @method()
    @dbus_errors
    def Stop(self, options: "a{sv}") -> "o":
        return self._simple("stop", options)

    @method()
    @dbus_errors
    def Restart(self, options: "a{sv}") -> "o":
        return self._simple("restart", options)

    @method()
    @dbus_errors
    def Enable(self, options: "a{sv}") -> "o":
        return self._simple("enable", options)

    @method()
    @dbus_errors
    def Disable(self, options: "a{sv}") -> "o":
        return self._simple("disable", options)

    @method()
    @dbus_errors
    def Uninstall(self, options: "a{sv}") -> "o":
        opts = check_options(options, UNINSTALL_OPTIONS)
        params = {"wipe": bool(opts.get("wipe", False))}
        return self._backend.submit(Request("uninstall", params, options_txid(opts)))

    @method()
    @dbus_errors
    def Reconcile(self, options: "a{sv}") -> "o":
        """Re-read the spec file and make the host match it (what SIGHUP does)."""
        return self._simple("reconcile", options)

    @method()
    @dbus_errors
    def Verify(self, options: "a{sv}") -> "o":
        """Re-check every installed file against its sha256 (like `ostree fsck`)."""
        return self._simple("verify", options)

    # -- properties ----------------------------------------------------------------------

    @dbus_property(access=PropertyAccess.READ)
    def Version(self) -> "s":
        return str(self._props["Version"])

    @dbus_property(access=PropertyAccess.READ)
    def PayloadVersion(self) -> "s":
        return str(self._props["PayloadVersion"])

    @dbus_property(access=PropertyAccess.READ)
    def State(self) -> "s":
        return str(self._props["State"])

    @dbus_property(access=PropertyAccess.READ)
    def ServiceState(self) -> "s":
        return str(self._props["ServiceState"])

    @dbus_property(access=PropertyAccess.READ)
    def ActiveTransaction(self) -> "o":
        return str(self._props["ActiveTransaction"])

    @dbus_property(access=PropertyAccess.READ)
    def LastError(self) -> "s":
        return str(self._props["LastError"])
