"""The daemon's life: own the bus name, recover, announce readiness, serve, stop cleanly.

Order matters and is the contract with systemd (Type=notify): connect to the bus, export
the interface, own the name, let the engine finish or roll back an interrupted operation,
and only then send READY=1. SIGTERM sends STOPPING=1, releases the name and exits 0; a
running transaction is cancelled at a step boundary and its journal lets the next start
recover. SIGHUP (`systemctl reload pxhostd`) re-reads the spec file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dbus_fast import BusType, NameFlag, RequestNameReply
from dbus_fast.aio.message_bus import MessageBus

from pxhostd import __version__
from pxhostd.bus.connection import PxMessageBus
from pxhostd.bus.manager import ManagerInterface
from pxhostd.bus.names import BUS_NAME, NO_TRANSACTION, OBJECT_PATH
from pxhostd.bus.transactions import Transaction, TransactionManager
from pxhostd.daemon.notify import Notifier, watchdog_interval
from pxhostd.daemon.supervise import Backoff
from pxhostd.engine.api import (
    Engine,
    EngineHost,
    Outcome,
    ProgressFn,
    Recovered,
    Request,
    new_txid,
)
from pxhostd.engine.history import History, HistoryEntry, Result
from pxhostd.engine.interruption import LOST_BUS, STOPPED
from pxhostd.engine.journal import RecoveryAction
from pxhostd.errors import (
    ERROR_PREFIX,
    Busy,
    Failed,
    Interrupted,
    NotInstalled,
    PxError,
    RolledBack,
)
from pxhostd.paths import Paths
from pxhostd.redact import public_text
from pxhostd.spec.digest import applied_spec_digest
from pxhostd.spec.validate import spec_from_dict
from pxhostd.status.statusfile import HEARTBEAT_INTERVAL, DaemonState, Status, StatusFile

log = logging.getLogger(__name__)

#: STATE while an operation runs (the rest: installing).
RUNNING_STATE = {
    "uninstall": DaemonState.UNINSTALLING,
    **dict.fromkeys(("start", "stop", "restart", "enable", "disable"), DaemonState.BUSY),
}

#: Failures after which the service is as it was before the request: nothing to act on,
#: or the new release was rolled back and the previous one runs again.
HARMLESS_ERRORS = (NotInstalled, Busy, RolledBack)
#: First retry delay of a failed status-file write (doubling up to the heartbeat interval).
STATUS_RETRY_MIN = 0.5

#: Bound on closing the engine's systemd watches at exit (RemoveMatch calls on the bus).
CLOSE_TIMEOUT = 5.0


@dataclass(frozen=True)
class DaemonOptions:
    paths: Paths
    bus_address: str | None = None  # None: the system bus
    bus_type: BusType = BusType.SYSTEM


EngineFactory = Callable[[EngineHost], Engine]


class Daemon:
    def __init__(self, options: DaemonOptions, engine_factory: EngineFactory) -> None:
        self.options = options
        self.paths = options.paths
        self.notifier = Notifier()
        self.state: str = DaemonState.STARTING
        self.service_state = ""
        self.last_error = ""
        self.bus: MessageBus | None = None
        self.interface = ManagerInterface(self)
        self.transactions: TransactionManager | None = None
        self.engine = engine_factory(self)
        self.history_store = History(self.paths.history_file)
        #: The history as the bus serves it, newest first: read from the file once at start
        #: (in a thread), then kept in step with each append, so History() does no I/O.
        self._history: list[HistoryEntry] = []
        self.status_file = StatusFile(self.paths.status_file)
        self._status_dirty = asyncio.Event()
        self._stop = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        #: Non-zero once an essential task died: systemd must restart the daemon.
        self.exit_code = 0
        # One periodic wake-up serves both the watchdog and the status-file heartbeat.
        self.tick = min(watchdog_interval() or HEARTBEAT_INTERVAL, HEARTBEAT_INTERVAL)

    # -- ManagerBackend ----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        snap = self.engine.snapshot()
        active = self.transactions.active if self.transactions else None
        return {
            "daemon_version": __version__,
            "state": self.state,
            "installed": snap.installed,
            "service": snap.service,
            "service_state": self.service_state,
            "payload_name": snap.payload_name,
            "payload_version": snap.payload_version,
            "release": snap.release,
            "health_url": snap.health_url,
            "unit_change_pending": snap.unit_change_pending,
            "active_transaction": active.path if active else NO_TRANSACTION,
            "active_txid": active.request.txid if active else "",
            "held_stopped": snap.held_stopped,
            "held_disabled": snap.held_disabled,
            "previous_version": snap.previous_version,
            "previous_release": snap.previous_release,
            "last_error": self.last_error,
            "pid": os.getpid(),
            "desired_source": snap.desired_source,
            "desired_at": snap.desired_at,
        }

    def get_spec(self) -> dict[str, Any]:
        """The applied spec, whole: a non-root caller gets the bus's public view of it
        (env names only, secret arguments redacted; `pxhostd.bus.connection`)."""
        spec = self.engine.snapshot().spec
        if spec is None:
            raise NotInstalled("no spec has been applied yet")
        return dict(spec)

    def history(self, limit: int) -> list[dict[str, Any]]:
        return [entry.to_json() for entry in self._history[: max(0, limit)]]

    def install_request(self, raw_spec: Any, txid: str) -> Request:
        """Validate at once, so a bad spec is a named error reply, not a failed transaction."""
        spec = spec_from_dict(raw_spec)
        return Request("install", spec.to_dict(), txid, origin="Install over D-Bus")

    async def plan(self, raw_spec: Any) -> dict[str, Any]:
        if self.state in (DaemonState.STARTING, DaemonState.STOPPING):
            raise Failed(f"the daemon is {self.state}; try again shortly")
        return await self.engine.plan(raw_spec)

    def submit(self, request: Request, *, internal: bool = False) -> str:
        if self.transactions is None or self.state in (
            DaemonState.STARTING,
            DaemonState.STOPPING,
        ):
            raise Failed(f"the daemon is {self.state}; try again shortly")
        return self.transactions.submit(request, internal=internal).path

    # -- state publication -------------------------------------------------------------

    def set_service_state(self, state: str) -> None:
        self.service_state = state
        self.publish()

    def publish(self) -> None:
        """Mirror the current state to D-Bus properties, systemd's status line and the file."""
        snap = self.engine.snapshot()
        self.interface.update(
            State=self.state,
            Version=__version__,
            PayloadVersion=snap.payload_version,
            ServiceState=self.service_state,
            LastError=self.last_error,
        )
        # systemd's status line is world-readable (`systemctl status`): the public view.
        self.notifier.status(public_text(self.status_line()))
        self._status_dirty.set()

    def file_status(self) -> Status:
        """What the pod's probe reads: READY follows the service itself, event-driven.

        While an operation runs the node is not ready either, so a DaemonSet RollingUpdate
        (maxUnavailable 1) waits for this node's upgrade to finish before the next node's.
        """
        snap = self.engine.snapshot()
        ready = (
            snap.installed
            and self.service_state.startswith("active/")
            and self.state in (DaemonState.IDLE, DaemonState.FAILED)
        )
        # The file is world-readable: the public view only (no journal lines, no secrets).
        return Status(
            ready=ready,
            status=public_text(self.status_line()),
            state=self.state,
            version=snap.payload_version,
            service_state=self.service_state,
            last_error=public_text(self.last_error),
            health_url=snap.health_url,
            spec_digest=applied_spec_digest(snap.spec),
            release=snap.release,
        )

    async def _status_writer(self) -> None:
        """The status file's only writer: after each change and at each tick, off the loop.

        A failed write (a full /run) is logged once and retried with backoff; meanwhile the
        file is removed, so it never claims READY=1 while nobody keeps it current.
        """
        backoff = Backoff(STATUS_RETRY_MIN, HEARTBEAT_INTERVAL)
        failing = False
        while True:
            await self._status_dirty.wait()
            self._status_dirty.clear()
            try:
                await asyncio.to_thread(self.status_file.write, self.file_status())
            except (PxError, OSError) as exc:
                if not failing:
                    log.error("cannot write the status file, retrying: %s", exc)
                    failing = True
                await asyncio.to_thread(self._withdraw_status_file)
                self._status_dirty.set()
                await asyncio.sleep(backoff.next())
                continue
            if failing:
                log.info("status file %s written again", self.paths.status_file)
                failing = False
            backoff.reset()

    def _withdraw_status_file(self) -> None:
        """Best effort: no file reads as "not ready", a stale READY=1 would lie."""
        try:
            self.status_file.remove()
        except (PxError, OSError) as exc:
            log.debug("cannot remove the status file either: %s", exc)

    def status_line(self) -> str:
        snap = self.engine.snapshot()
        if not snap.installed:
            what = f"{snap.service}: not installed"
        else:
            what = f"{snap.service} {snap.payload_version} {self.service_state or 'unknown'}"
        line = f"pxhostd {__version__} {self.state}; {what}"
        if self.last_error:
            line += f"; last error: {self.last_error}"
        return line

    # -- transactions ------------------------------------------------------------------

    async def _run_request(self, request: Request, progress: ProgressFn) -> Outcome:
        self.state = RUNNING_STATE.get(request.operation, DaemonState.INSTALLING)
        self.publish()
        failed = False
        try:
            outcome = await self.engine.run(request, progress)
        except PxError as exc:
            self.last_error = f"{exc.name}: {exc}"
            # STATE=failed only while something is broken: a refused request (nothing
            # installed) or a rollback that restored the previous release leaves the
            # service as it was; LAST_ERROR still says what happened.
            failed = not isinstance(exc, HARMLESS_ERRORS)
            raise
        else:
            self.last_error = ""
            return outcome
        finally:
            if self._stop.is_set():
                self.state = DaemonState.STOPPING
            else:
                self.state = DaemonState.FAILED if failed else DaemonState.IDLE
            self.publish()

    def _active_changed(self, path: str) -> None:
        self.interface.update(ActiveTransaction=path)

    def _finished(self, tx: Transaction) -> None:
        if tx.success and not tx.changed:
            # A no-op writes nothing to the host, history included; the transaction's own
            # result still says "nothing to do" to every client that asks.
            return
        if tx.error_name == Interrupted().dbus_name:
            # pxhostd is stopping under it: its journal stays, and the recovery at the next
            # start records how it ended and why (`_record_recovered`), once.
            return
        self._append_history(history_entry(tx))

    def _record_recovered(self) -> None:
        """A history entry for each operation the engine recovered, saying why it was
        interrupted and what recovery made of it."""
        for done in self.engine.take_recovered():
            if done.txid is not None:
                self._append_history(recovered_entry(done, _iso(time.time())))

    def _append_history(self, entry: HistoryEntry) -> None:
        self._history.insert(0, entry)
        del self._history[self.history_store.max_entries :]
        self._spawn(asyncio.to_thread(self.history_store.append, entry), "history-append")

    # -- lifecycle ---------------------------------------------------------------------

    async def _connect(self) -> PxMessageBus:
        return await PxMessageBus(self.options.bus_address, self.options.bus_type).connect()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._spawn_reload)

        self.bus = await self._connect()
        self.bus.export(OBJECT_PATH, self.interface)
        reply = await self.bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            log.error("cannot own %s (%s): another pxhostd runs?", BUS_NAME, reply.name)
            self.bus.disconnect()
            return 1
        self.transactions = TransactionManager(
            self.bus,
            self._run_request,
            on_active_changed=self._active_changed,
            on_finished=self._finished,
        )
        self.transactions.service_name = lambda: self.engine.snapshot().service
        self.transactions.on_interrupted = self.engine.interrupted

        self.notifier.status("recovering")
        try:
            self._history = await asyncio.to_thread(
                self.history_store.read, self.history_store.max_entries
            )
        except PxError as exc:
            log.error("cannot read the history: %s", exc)
        try:
            await self.engine.start()
            self._record_recovered()
        except PxError as exc:
            # Stay up and report: a broken host state must be visible, not a restart loop.
            self.last_error = f"{exc.name}: {exc}"
            log.error("start-up recovery failed: %s", exc)
        self.state = DaemonState.IDLE
        self._spawn(self._status_writer(), "status-writer", essential=True)
        self.publish()
        self.notifier.ready(public_text(self.status_line()))
        log.info("pxhostd %s ready on %s", __version__, BUS_NAME)
        self._spawn(self._ticker(), "ticker", essential=True)
        if self.paths.spec_file.exists():
            self._submit_quietly("reconcile")

        disconnected = asyncio.ensure_future(
            self.bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
        )
        stop = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait({disconnected, stop}, return_when=asyncio.FIRST_COMPLETED)
        code = self.exit_code
        reason = STOPPED
        if disconnected in done:
            cause = disconnected.exception()
            log.error("lost the bus connection (%s); exiting so systemd restarts pxhostd",
                      type(cause).__name__ if cause else "closed")
            code = 1
            reason = LOST_BUS
        else:
            disconnected.cancel()
        await self._shutdown(reason)
        return code

    def request_stop(self) -> None:
        if not self._stop.is_set():
            log.info("stop requested")
            self.state = DaemonState.STOPPING
            self.notifier.stopping()
            self._stop.set()

    async def _shutdown(self, reason: str = STOPPED) -> None:
        if self.transactions is not None:
            active = self.transactions.active
            if active is not None:
                log.warning("stopping with transaction %s running (%s); recovery finishes "
                            "or rolls it back at the next start", active.request.txid, reason)
            await self.transactions.shutdown(reason)
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            # Bounded: after the bus dropped us, calls on the dead connection never return.
            await asyncio.wait_for(self.engine.close(), CLOSE_TIMEOUT)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.status_file.write, self.file_status())
        if self.bus is not None and self.bus.connected:
            with contextlib.suppress(Exception):
                await self.bus.release_name(BUS_NAME)
            self.bus.disconnect()
        log.info("pxhostd stopped")

    def _spawn(self, coro: Any, name: str, *, essential: bool = False) -> None:
        """Run a background task; if an essential one ends, the daemon exits non-zero so
        that systemd restarts it (a daemon without its ticker or status writer lies)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)

        def _done(t: asyncio.Task[Any]) -> None:
            self._background.discard(t)
            if t.cancelled() and not essential:
                return
            error = None if t.cancelled() else t.exception()
            if error is not None:
                log.error("background task %s died", name, exc_info=error)
            if essential and not self._stop.is_set():
                log.critical("essential task %s ended; exiting so systemd restarts pxhostd",
                             name)
                self.exit_code = 1
                self.request_stop()

        task.add_done_callback(_done)

    async def _ticker(self) -> None:
        """The only periodic wake-up: watchdog ping, and a heartbeat through the writer.

        Nothing here can fail on the host's disks: the watchdog keeps being fed while the
        status writer retries a full /run.
        """
        while True:
            self.notifier.watchdog()
            self._status_dirty.set()
            await asyncio.sleep(self.tick)

    def _spawn_reload(self) -> None:
        self.notifier.reloading()
        self.engine.reload_config()
        self._submit_quietly("reconcile")
        self.notifier.ready(public_text(self.status_line()))

    def _submit_quietly(self, operation: str) -> None:
        try:
            self.submit(Request(operation, {}, new_txid()), internal=True)
        except PxError as exc:
            log.warning("could not start %s: %s", operation, exc)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def recovered_entry(done: Recovered, finished: str) -> HistoryEntry:
    """The history entry of an operation that recovery finished or rolled back."""
    forward = done.action == RecoveryAction.ROLL_FORWARD
    became = ("recovery finished it" if forward
              else "recovery rolled it back" if done.action == RecoveryAction.ROLL_BACK
              else "it had changed nothing, recovery dropped it")
    return HistoryEntry(
        txid=done.txid or "",
        operation=done.operation,
        started=done.started,
        finished=finished,
        result=Result.SUCCESS if forward else Result.ROLLED_BACK,
        error=None if forward else Interrupted.name,
        message=f"{done.cause}; {became} when pxhostd started again ({done.note})",
        version_before=done.version_before,
        version_after=done.version_after,
    )


def history_entry(tx: Transaction) -> HistoryEntry:
    """What a finished transaction leaves in the persistent history."""
    error = tx.error_name.removeprefix(ERROR_PREFIX) or None
    if tx.success:
        result = Result.SUCCESS if tx.changed else Result.NOTHING_TO_DO
    elif error == "RolledBack":
        result = Result.ROLLED_BACK
    else:
        result = Result.FAILED
    before = tx.details.get("version_before")
    after = tx.details.get("version_after")
    return HistoryEntry(
        txid=tx.request.txid,
        operation=tx.request.operation,
        started=_iso(tx.started_at),
        finished=_iso(tx.finished_at),
        result=result,
        error=error,
        message=tx.error_message if error else tx.message,
        version_before=str(before) if before else None,
        version_after=str(after) if after else None,
    )
