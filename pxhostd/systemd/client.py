"""systemd's Manager over D-Bus: jobs with their results, unit state, unit files, watches.

One `Systemd` per bus connection.  `connect()` installs the signal handler and the
JobRemoved match and calls `Subscribe()` before any job can be queued (without Subscribe
systemd only emits job signals while some other client happens to be subscribed).
Every wait is bounded; expiry raises `pxhostd.errors.Timeout` naming the unit, the job and
the unit's state at that moment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable, Sequence

from dbus_fast.aio.message_bus import MessageBus

from pxhostd.errors import PxError, SystemdError, Timeout
from pxhostd.systemd import constants as c
from pxhostd.systemd.jobs import JobTracker
from pxhostd.systemd.transport import Signal, Transport, bounded, match_rule
from pxhostd.systemd.unit import (
    ActiveState,
    JobResult,
    JobResultKind,
    UnitActivity,
    UnitFileChange,
    UnitState,
    type_interface,
    unit_object_path,
)
from pxhostd.systemd.watch import ActivityCallback, UnitWatch

log = logging.getLogger(__name__)


class Systemd:
    """Client for org.freedesktop.systemd1 on a connected dbus-fast MessageBus."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport
        self._jobs = JobTracker()
        self._owner = ""
        self._watches: dict[str, list[UnitWatch]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._job_rule = match_rule(
            type="signal", sender=c.BUS_NAME, path=c.MANAGER_PATH,
            interface=c.MANAGER_INTERFACE, member=c.JOB_REMOVED,
        )
        self._owner_rule = match_rule(
            type="signal", sender=c.DBUS_NAME, path=c.DBUS_PATH,
            interface=c.DBUS_INTERFACE, member=c.NAME_OWNER_CHANGED, arg0=c.BUS_NAME,
        )
        self._closed = False

    # -- connection -------------------------------------------------------------------

    @classmethod
    async def connect(cls, bus: MessageBus, timeout: float = c.METHOD_TIMEOUT) -> Systemd:
        """Subscribe and install the one JobRemoved handler; bus stays owned by the caller."""
        self = cls(Transport(bus))
        self._t.add_signal_handler(self._on_signal)
        try:
            async with bounded(timeout, "connecting to systemd"):
                await self._t.add_match(self._owner_rule)
                await self._t.add_match(self._job_rule)
                self._owner = await self._t.name_owner(c.BUS_NAME)
                await self._manager(c.SUBSCRIBE, what="Subscribe")
        except BaseException:
            self._t.remove_signal_handler(self._on_signal)
            raise
        return self

    async def close(self) -> None:
        """Unsubscribe and drop matches and watches; pending job waits fail at once."""
        if self._closed:
            return
        self._closed = True
        for watches in list(self._watches.values()):
            for watch in list(watches):
                await watch.close()
        for task in list(self._tasks):
            task.cancel()
        self._jobs.fail_all(SystemdError("systemd client closed while waiting for a job"))
        try:
            async with bounded(c.METHOD_TIMEOUT, "closing the systemd client"):
                await self._manager(c.UNSUBSCRIBE, what="Unsubscribe")
                await self._t.remove_match(self._job_rule)
                await self._t.remove_match(self._owner_rule)
        except PxError as exc:
            log.debug("systemd client close: %s", exc)
        finally:
            self._t.remove_signal_handler(self._on_signal)

    async def __aenter__(self) -> Systemd:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- jobs -------------------------------------------------------------------------

    async def start_unit(self, name: str, timeout: float = c.JOB_TIMEOUT) -> JobResult:
        return await self._job(c.START_UNIT, name, timeout)

    async def stop_unit(self, name: str, timeout: float = c.JOB_TIMEOUT) -> JobResult:
        return await self._job(c.STOP_UNIT, name, timeout)

    async def restart_unit(self, name: str, timeout: float = c.JOB_TIMEOUT) -> JobResult:
        return await self._job(c.RESTART_UNIT, name, timeout)

    async def _job(self, method: str, name: str, timeout: float) -> JobResult:
        what = f"{method} {name}"
        job = ""
        try:
            async with bounded(timeout, what):
                (reply,) = await self._manager(
                    method, "ss", [name, c.JOB_MODE_REPLACE], what=what
                )
                job = str(reply)
                # expect() checks for an early JobRemoved and registers in one step.
                future = self._jobs.expect(job)
                try:
                    result = await future
                finally:
                    self._jobs.forget(job)
        except Timeout as exc:
            raise Timeout(f"{exc} (job {job or 'not queued'}; {await self.state_hint(name)})"
                          ) from exc
        log.debug("%s: job %s finished: %s", what, job, result.result)
        return result

    async def unit_call(self, name: str, path: str, member: str) -> None:
        """A no-argument method on a unit object (Ref, Unref), bounded."""
        what = f"{member} {name}"
        async with bounded(c.METHOD_TIMEOUT, what):
            await self._t.call(path, c.UNIT_INTERFACE, member, what=what)

    async def state_hint(self, name: str) -> str:
        """The unit's state for an error message; never raises."""
        try:
            return (await self.unit_state(name, timeout=min(5.0, c.METHOD_TIMEOUT))).describe()
        except PxError as exc:
            return f"state of {name} unknown: {exc}"

    # -- state --------------------------------------------------------------------------

    async def load_unit(self, name: str, timeout: float = c.METHOD_TIMEOUT) -> str:
        """The unit's object path, loading it if needed (also for units without a file)."""
        async with bounded(timeout, f"LoadUnit {name}"):
            (path,) = await self._manager(c.LOAD_UNIT, "s", [name], what=f"LoadUnit {name}")
        return str(path)

    async def unit_state(self, name: str, timeout: float = c.METHOD_TIMEOUT) -> UnitState:
        async with bounded(timeout, f"reading the state of {name}"):
            path = await self.load_unit(name, timeout)
            iface = type_interface(name)
            typed: dict[str, object] = {}
            if iface is None:
                unit = await self._get_all(path, c.UNIT_INTERFACE, name)
            else:
                unit, typed = await asyncio.gather(
                    self._get_all(path, c.UNIT_INTERFACE, name),
                    self._get_all(path, iface, name),
                )
        return UnitState.from_properties(name, unit, typed)

    async def _get_all(self, path: str, interface: str, name: str) -> dict[str, object]:
        (props,) = await self._t.call(
            path, c.PROPERTIES_INTERFACE, c.GET_ALL, "s", [interface],
            what=f"properties of {name} ({interface})",
        )
        if not isinstance(props, dict):
            raise SystemdError(f"properties of {name}: unexpected reply {props!r}")
        return {str(k): v for k, v in props.items()}

    # -- unit files and the manager -----------------------------------------------------

    async def daemon_reload(self, timeout: float = c.JOB_TIMEOUT) -> None:
        """Manager.Reload: systemd answers when the reload is complete; bounded anyway."""
        async with bounded(timeout, "daemon-reload"):
            await self._manager(c.RELOAD, what="Reload")

    async def enable_unit_files(
        self,
        names: Iterable[str],
        runtime: bool = False,
        force: bool = True,
        timeout: float = c.METHOD_TIMEOUT,
    ) -> list[UnitFileChange]:
        """The symlink changes made; empty means nothing changed.  Reload afterwards."""
        files = list(names)
        what = f"EnableUnitFiles {' '.join(files)}"
        async with bounded(timeout, what):
            _carries_install_info, changes = await self._manager(
                c.ENABLE_UNIT_FILES, "asbb", [files, runtime, force], what=what
            )
        return _changes(changes)

    async def disable_unit_files(
        self, names: Iterable[str], runtime: bool = False, timeout: float = c.METHOD_TIMEOUT
    ) -> list[UnitFileChange]:
        files = list(names)
        what = f"DisableUnitFiles {' '.join(files)}"
        async with bounded(timeout, what):
            (changes,) = await self._manager(
                c.DISABLE_UNIT_FILES, "asb", [files, runtime], what=what
            )
        return _changes(changes)

    async def reset_failed_unit(self, name: str, timeout: float = c.METHOD_TIMEOUT) -> None:
        async with bounded(timeout, f"ResetFailedUnit {name}"):
            await self._manager(c.RESET_FAILED_UNIT, "s", [name],
                                what=f"ResetFailedUnit {name}")

    # -- watches ------------------------------------------------------------------------

    async def watch_unit(
        self,
        name: str,
        callback: ActivityCallback | None = None,
        timeout: float = c.METHOD_TIMEOUT,
    ) -> UnitWatch:
        """Follow a unit's ActiveState/SubState from PropertiesChanged, no polling.

        The callback first gets the current state, then every change.  The object path is
        a pure function of the name, so the watch survives the unit being unloaded and
        loaded again.  Close the handle (or use `async with`) to unsubscribe.
        """
        path = await self.load_unit(name, timeout)
        if path != unit_object_path(name):
            log.warning("systemd path %s for %s differs from the escaped name", path, name)
        watch = UnitWatch(name, path, callback, self._close_watch)
        siblings = self._watches.setdefault(path, [])
        siblings.append(watch)
        try:
            if len(siblings) == 1:
                await self._t.add_match(self._properties_rule(path))
            watch.initial(await self._activity(path, name, timeout))
        except BaseException:
            await watch.close()
            raise
        return watch

    async def _close_watch(self, watch: UnitWatch) -> None:
        siblings = self._watches.get(watch.path, [])
        if watch in siblings:
            siblings.remove(watch)
        if not siblings:
            self._watches.pop(watch.path, None)
            await self._t.remove_match(self._properties_rule(watch.path))

    @staticmethod
    def _properties_rule(path: str) -> str:
        return match_rule(
            type="signal", sender=c.BUS_NAME, path=path,
            interface=c.PROPERTIES_INTERFACE, member=c.PROPERTIES_CHANGED,
        )

    async def _activity(self, path: str, name: str, timeout: float) -> UnitActivity:
        async with bounded(timeout, f"reading the activity of {name}"):
            props = await self._get_all(path, c.UNIT_INTERFACE, name)
        sub = props.get(c.P_SUB_STATE)
        return UnitActivity(
            ActiveState.parse(props.get(c.P_ACTIVE_STATE, "unknown")),
            sub if isinstance(sub, str) else "",
        )

    # -- signals ------------------------------------------------------------------------

    def _on_signal(self, sig: Signal) -> None:
        if sig.member == c.NAME_OWNER_CHANGED and sig.interface == c.DBUS_INTERFACE:
            self._owner_changed(sig)
        elif sig.sender != self._owner:
            return
        elif sig.member == c.JOB_REMOVED and sig.path == c.MANAGER_PATH:
            _id, job, unit, result = sig.body
            self._jobs.job_removed(
                JobResult(unit=str(unit), job=str(job), result=JobResultKind.parse(result))
            )
        elif sig.member == c.PROPERTIES_CHANGED and sig.path in self._watches:
            iface, changed, invalidated = sig.body
            if iface != c.UNIT_INTERFACE or not isinstance(changed, dict):
                return
            gone = [str(x) for x in invalidated] if isinstance(invalidated, list) else []
            for watch in list(self._watches[sig.path]):
                if watch.properties_changed(changed, gone):
                    self._spawn(self._refresh(watch))

    def _owner_changed(self, sig: Signal) -> None:
        if sig.sender != c.DBUS_NAME or not sig.body or sig.body[0] != c.BUS_NAME:
            return
        new_owner = str(sig.body[2])
        log.info("systemd bus owner changed: %r -> %r", self._owner, new_owner)
        self._owner = new_owner
        if new_owner:
            # After daemon-reexec systemd comes back under a new unique name; jobs and
            # our subscription survive, but subscribing again costs nothing.
            self._spawn(self._resubscribe())

    async def _resubscribe(self) -> None:
        try:
            async with bounded(c.METHOD_TIMEOUT, "Subscribe again"):
                await self._manager(c.SUBSCRIBE, what="Subscribe")
        except PxError as exc:
            if not (isinstance(exc, SystemdError) and exc.reply_name == c.ERR_ALREADY_SUBSCRIBED):
                log.warning("could not subscribe to systemd again: %s", exc)

    async def _refresh(self, watch: UnitWatch) -> None:
        try:
            watch.refreshed(await self._activity(watch.path, watch.name, c.METHOD_TIMEOUT))
        except PxError as exc:
            log.warning("could not re-read the state of %s: %s", watch.name, exc)

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        if self._closed:
            coro.close()
            return
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _manager(
        self, member: str, signature: str = "", body: Sequence[object] = (), *, what: str
    ) -> tuple[object, ...]:
        return await self._t.call(
            c.MANAGER_PATH, c.MANAGER_INTERFACE, member, signature, body, what=what
        )


def _changes(raw: object) -> list[UnitFileChange]:
    if not isinstance(raw, list):
        return []
    return [UnitFileChange(str(t), str(f), str(d)) for t, f, d in raw]
