"""Transaction objects: one per long operation, as rpm-ostree does it.

Every mutating call returns the object path of a transaction at
`/com/portworx/pxhostd1/transaction/i<instance>_N` (unique per daemon instance). Its
properties carry progress and, once finished, the result; the `Finished` signal announces
the end. Finished transactions stay exported for a while (RETENTION_SECONDS, at most
RETAIN_MAX) so a client that attaches late still reads the result. Only one transaction
runs at a time: an identical request (same operation and parameters) joins the running
one; a different one gets `Error.Busy` naming what runs. Each logs one journal line at its
start and one at its end (`txlog`), naming the caller and the txid.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from dbus_fast import PropertyAccess, Variant
from dbus_fast.aio.message_bus import MessageBus
from dbus_fast.service import ServiceInterface, dbus_property, method, signal

from pxhostd.bus import txlog
from pxhostd.bus.caller import CallerTracker
from pxhostd.bus.names import TRANSACTION_INTERFACE, TRANSACTION_PATH_PREFIX
from pxhostd.engine.api import Outcome, ProgressFn, Request, new_txid
from pxhostd.engine.interruption import LOST_BUS, STOPPED
from pxhostd.errors import Busy, Interrupted, PxError
from pxhostd.log import current_txid
from pxhostd.redact import public_text
from pxhostd.variants import to_vardict

log = logging.getLogger(__name__)

#: How long a finished transaction stays readable on the bus.
RETENTION_SECONDS = 600.0
#: How many finished transactions stay exported at most.
RETAIN_MAX = 32
#: Seconds the interruption note may take to write (pxhostd is stopping meanwhile).
NOTE_TIMEOUT = 5.0


Runner = Callable[[Request, ProgressFn], Awaitable[Outcome]]
FinishedHook = Callable[["Transaction"], None]


class TransactionInterface(ServiceInterface):
    """com.portworx.pxhostd1.Transaction: progress and result of one operation."""

    def __init__(self, tx: "Transaction") -> None:
        super().__init__(TRANSACTION_INTERFACE)
        self._tx = tx

    @dbus_property(access=PropertyAccess.READ)
    def Id(self) -> "s":
        return self._tx.request.txid

    @dbus_property(access=PropertyAccess.READ)
    def Operation(self) -> "s":
        return self._tx.request.operation

    @dbus_property(access=PropertyAccess.READ)
    def Percent(self) -> "u":
        return self._tx.percent

    @dbus_property(access=PropertyAccess.READ)
    def Message(self) -> "s":
        return public_text(self._tx.message)

    @dbus_property(access=PropertyAccess.READ)
    def Finished(self) -> "b":
        return self._tx.finished

    @dbus_property(access=PropertyAccess.READ)
    def Success(self) -> "b":
        return self._tx.success

    @dbus_property(access=PropertyAccess.READ)
    def Changed(self) -> "b":
        return self._tx.changed

    @dbus_property(access=PropertyAccess.READ)
    def ErrorName(self) -> "s":
        return self._tx.error_name

    @dbus_property(access=PropertyAccess.READ)
    def ErrorMessage(self) -> "s":
        return public_text(self._tx.error_message)

    @method()
    def GetResult(self) -> "a{sv}":
        return to_vardict(self._tx.as_dict())

    @signal(name="Progress")
    def progress_signal(self) -> "us":
        return [self._tx.percent, public_text(self._tx.message)]

    @signal(name="Finished")
    def finished_signal(self) -> "bss":
        return [self._tx.success, self._tx.error_name, public_text(self._tx.error_message)]


class Transaction:
    """One operation's life: running, then finished with a result."""

    def __init__(self, number: int, request: Request, instance: str = "", sender: str = "") -> None:
        self.number = number
        self.request = request
        # Unique per daemon instance, so a path seen before a restart never names another
        # transaction after it (operators read the txid; the path is for programs).
        self.path = f"{TRANSACTION_PATH_PREFIX}/{instance}{number}"
        self.sender = sender
        self.percent = 0
        self.message = "queued"
        self.finished = False
        self.success = False
        self.changed = False
        self.error_name = ""
        self.error_message = ""
        self.details: dict[str, Any] = {}
        self.started_at = time.time()
        self.finished_at = 0.0
        self.interface = TransactionInterface(self)
        self.done = asyncio.get_running_loop().create_future()

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.request.txid,
            "operation": self.request.operation,
            "path": self.path,
            "percent": self.percent,
            "message": self.message,
            "finished": self.finished,
            "success": self.success,
            "changed": self.changed,
            "error_name": self.error_name,
            "error_message": self.error_message,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "details": dict(self.details),
        }

    def set_progress(self, percent: int, message: str) -> None:
        self.percent = max(0, min(100, int(percent)))
        self.message = message.replace("\n", " ")[:500]
        self.interface.emit_properties_changed(
            {"Percent": self.percent, "Message": public_text(self.message)}
        )
        self.interface.progress_signal()

    def finish(self, *, outcome: Outcome | None, error: PxError | None) -> None:
        self.finished = True
        self.finished_at = time.time()
        self.percent = 100
        if error is None and outcome is not None:
            self.success = True
            self.changed = outcome.changed
            self.message = outcome.message
            self.details = dict(outcome.details)
        else:
            assert error is not None
            self.error_name = error.dbus_name
            self.error_message = str(error) or error.name
            self.message = f"failed: {self.error_message}"
            self.details = dict(getattr(error, "details", {}) or {})
        self.interface.emit_properties_changed(
            {
                "Percent": self.percent,
                "Message": public_text(self.message),
                "Finished": True,
                "Success": self.success,
                "Changed": self.changed,
                "ErrorName": self.error_name,
                "ErrorMessage": public_text(self.error_message),
            }
        )
        self.interface.finished_signal()
        if not self.done.done():
            self.done.set_result(None)


class TransactionManager:
    """Runs one transaction at a time and keeps finished ones readable for a while."""

    def __init__(
        self,
        bus: MessageBus,
        runner: Runner,
        *,
        on_active_changed: Callable[[str], None],
        on_finished: FinishedHook,
    ) -> None:
        self._bus = bus
        self._runner = runner
        self._on_active_changed = on_active_changed
        self._on_finished = on_finished
        #: Persists why a transaction is interrupted, for its recovery (set by the daemon).
        self.on_interrupted: Callable[[str, str], Awaitable[None]] | None = None
        #: The managed service's name, for the journal lines (set by the daemon).
        self.service_name: Callable[[], str] | None = None
        self._counter = 0
        self._instance = f"i{uuid.uuid4().hex[:12]}_"
        self._callers = CallerTracker(bus)
        self._active: Transaction | None = None
        self._retained: deque[Transaction] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop_reason = STOPPED
        self._stopping = False

    @property
    def active(self) -> Transaction | None:
        return self._active

    def submit(self, request: Request, *, internal: bool = False) -> Transaction:
        """Start `request`, join an identical running one, or raise Busy.

        `internal`: pxhostd asks itself (start-up reconcile, SIGHUP), not a bus caller.
        """
        sender = "" if internal else self._callers.take()
        if self._active is not None:
            if self._active.request.key == request.key:
                log.info("request %s joins running transaction %s", request.txid,
                         self._active.request.txid)
                return self._active
            running = self._active
            raise Busy(
                f"busy: {running.request.operation} is running as transaction "
                f"{running.request.txid} ({running.path}); follow it with: "
                f"pxhostctl watch {running.request.txid}"
            )
        self._counter += 1
        tx = Transaction(self._counter, request, self._instance, sender)
        self._bus.export(tx.path, tx.interface)
        self._active = tx
        self._on_active_changed(tx.path)
        task = asyncio.get_running_loop().create_task(self._run(tx), name=f"tx-{tx.number}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return tx

    async def _run(self, tx: Transaction) -> None:
        current_txid.set(tx.request.txid)  # this task's context: every record carries it
        caller = str(await self._callers.describe(tx.sender))
        log.info("%s", txlog.start_line(tx.request.operation, tx.request.txid, caller))
        outcome: Outcome | None = None
        error: PxError | None = None
        try:
            try:
                outcome = await self._runner(tx.request, tx.set_progress)
            except BaseException as exc:
                # pxhostd stopping under it (its bus connection lost: every call the
                # runner made then failed) is not the request's failure: the journal
                # stays for recovery at the next start, which records the outcome.
                reason = self._interruption()
                if reason is None:
                    raise
                error = Interrupted(
                    f"interrupted: {reason}; recovery finishes or rolls it back when "
                    "pxhostd starts again (see pxhostctl history)"
                )
                await self._note_interrupted(tx.request.txid, reason)
                if isinstance(exc, asyncio.CancelledError):
                    raise
        except PxError as exc:
            error = exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the runner's bug must not kill the daemon
            log.exception("transaction %s crashed", tx.request.txid)
            error = PxError(f"internal error ({type(exc).__name__}: {exc})")
        finally:
            tx.finish(outcome=outcome, error=error)
            self._active = None
            self._on_active_changed("/")
            self._retain(tx)
            try:
                self._on_finished(tx)
            except Exception:
                log.exception("recording transaction %s failed", tx.request.txid)
            level, line = txlog.end_line(
                operation=tx.request.operation,
                txid=tx.request.txid,
                caller=caller,
                service=str(tx.details.get("service") or self._service_name()),
                success=tx.success,
                changed=tx.changed,
                error_name=tx.error_name,
                message=tx.error_message,
                details=tx.details,
            )
            log.log(level, "%s", line)

    def _interruption(self) -> str | None:
        """Why pxhostd is stopping under the running transaction; None: it is not."""
        if not self._bus.connected:
            return LOST_BUS
        return self._stop_reason if self._stopping else None

    async def _note_interrupted(self, txid: str, reason: str) -> None:
        if self.on_interrupted is None:
            return
        try:
            await asyncio.wait_for(self.on_interrupted(txid, reason), NOTE_TIMEOUT)
        except Exception as exc:  # the history then says "restarted": no worse
            log.error("cannot record why transaction %s stops: %s", txid, exc)

    def _service_name(self) -> str:
        return self.service_name() if self.service_name is not None else "service"

    def _retain(self, tx: Transaction) -> None:
        self._retained.append(tx)
        while len(self._retained) > RETAIN_MAX:
            self._unexport(self._retained.popleft())
        asyncio.get_running_loop().call_later(RETENTION_SECONDS, self._expire, tx)

    def _expire(self, tx: Transaction) -> None:
        if tx in self._retained:
            self._retained.remove(tx)
            self._unexport(tx)

    def _unexport(self, tx: Transaction) -> None:
        with contextlib.suppress(Exception):
            self._bus.unexport(tx.path, tx.interface)

    async def shutdown(self, reason: str = STOPPED) -> None:
        """Cancel the running transaction (its journal stays for recovery), saying why."""
        self._stop_reason = reason
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def options_txid(options: Mapping[str, Variant | Any]) -> str:
    """The caller's transaction id from the options, or a fresh one."""
    raw = options.get("id")
    value = raw.value if isinstance(raw, Variant) else raw
    if isinstance(value, str) and value and len(value) <= 128 and value.isprintable():
        return value
    return new_txid()
