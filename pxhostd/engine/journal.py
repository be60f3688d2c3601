"""Write-ahead journal of the one multi-step operation in flight, and the recovery rule.

Before each step that changes the host, the engine records "about to do <step>" in
`journal.json` (atomic replace, so the file is always a whole, earlier-or-later version).
The record also carries `before` (what rollback restores) and `target` (what the operation
installs). When the operation ends, the file is removed durably. A journal found at start
therefore means an operation was interrupted; `plan_recovery` decides, from the steps it
reached, whether to roll back to `before` or roll forward to `target`. See
docs/crash-safety.md for the rule per step.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pxhostd.engine.state import (
    STATE_FILE_MODE,
    CorruptStateFile,
    dump_json,
    read_json_object,
    utc_now,
)
from pxhostd.errors import HostStateError
from pxhostd.failpoints import (
    AFTER_COMMIT,
    AFTER_DAEMON_RELOAD,
    AFTER_DISABLE,
    AFTER_ENABLE,
    AFTER_FORGET,
    AFTER_JOURNAL_BEGIN,
    AFTER_PRUNE,
    AFTER_RESTART,
    AFTER_ROLLBACK_BEGIN,
    AFTER_SAVE_APPLIED,
    AFTER_STAGE,
    AFTER_STOP,
    AFTER_SWITCH,
    AFTER_UNIT_REMOVE,
    AFTER_UNIT_WRITE,
    BEFORE_JOURNAL_DONE,
    DISABLED,
    Failpoints,
)
from pxhostd.failpoints import register as register_failpoint
from pxhostd.hostfs import atomic_write, fsync_dir, remove_file

JOURNAL_SCHEMA = 1

# Operations. "Apply" operations roll back until they commit; uninstall always rolls forward.
OP_INSTALL = "install"
OP_UPGRADE = "upgrade"
OP_RECONFIGURE = "reconfigure"
OP_RESTART = "restart"
OP_ROLLBACK = "rollback"
OP_UNINSTALL = "uninstall"
#: Pruning old releases and collecting unreferenced objects, after an operation reported.
OP_COLLECT = "collect"
APPLY_OPS = frozenset({OP_INSTALL, OP_UPGRADE, OP_RECONFIGURE, OP_RESTART, OP_ROLLBACK})
REMOVE_OPS = frozenset({OP_UNINSTALL})
COLLECT_OPS = frozenset({OP_COLLECT})
ALL_OPS = APPLY_OPS | REMOVE_OPS | COLLECT_OPS

class Undo(enum.StrEnum):
    """One restore action of a rollback; the engine performs them in this order."""

    SWITCH_BACK = "switch-back"  # point `current` at before.release (or drop the link)
    RESTORE_UNITS = "restore-units"  # write before.units (remove those that are None)
    DAEMON_RELOAD = "daemon-reload"  # systemd must re-read the restored unit files
    RESTORE_ENABLEMENT = "restore-enablement"  # enable/disable as before.enabled
    RESTART_PREVIOUS = "restart-previous"  # bring the service to before.active again
    REMOVE_STAGED = "remove-staged"  # remove target.release (new, not before's)


#: Kinds of operation: which steps each may record.
APPLY = "apply"
REMOVE = "remove"
COLLECT = "collect"


@dataclass(frozen=True)
class StepDef:
    """A journaled step, declared once: which operations take it, what undoes it, and the
    failpoint hit right after its work (so a crash test can stop there)."""

    name: str
    kinds: frozenset[str]
    undo: tuple[Undo, ...] = ()
    failpoint: str | None = None


#: Every step, in the order an operation of its kind takes them.
STEPS: dict[str, StepDef] = {}


def declare_step(
    name: str, *kinds: str, undo: tuple[Undo, ...] = (), failpoint: str | None = None
) -> str:
    """Declare a journaled step; returns its name (the STEP_* constant).

    This is the only edit a new step needs besides the code that does its work inside
    `async with record.doing(STEP_X, ...)`: the step list of its operations, the undo plan
    of a rollback, the journal's validation and the failpoint all derive from here.
    """
    if name in STEPS:
        raise ValueError(f"step {name!r} is declared twice")
    if not kinds or not set(kinds) <= {APPLY, REMOVE, COLLECT}:
        raise ValueError(f"step {name!r}: kinds must be among {APPLY!r}, {REMOVE!r}, "
                         f"{COLLECT!r}")
    if failpoint is not None:
        register_failpoint(failpoint)
    STEPS[name] = StepDef(name, frozenset(kinds), undo, failpoint)
    return name


# Apply steps (recorded before each is done), then uninstall steps.
STEP_STAGE = declare_step("stage", APPLY, undo=(Undo.REMOVE_STAGED,), failpoint=AFTER_STAGE)
STEP_WRITE_UNITS = declare_step(
    "write-units", APPLY, undo=(Undo.RESTORE_UNITS, Undo.DAEMON_RELOAD),
    failpoint=AFTER_UNIT_WRITE,
)
STEP_DAEMON_RELOAD = declare_step(
    "daemon-reload", APPLY, REMOVE, undo=(Undo.DAEMON_RELOAD,), failpoint=AFTER_DAEMON_RELOAD
)
STEP_ENABLE = declare_step(
    "enable", APPLY, undo=(Undo.RESTORE_ENABLEMENT,), failpoint=AFTER_ENABLE
)
STEP_SWITCH = declare_step("switch", APPLY, undo=(Undo.SWITCH_BACK,), failpoint=AFTER_SWITCH)
#: Start on first install, restart otherwise.
STEP_RESTART = declare_step(
    "restart", APPLY, undo=(Undo.RESTART_PREVIOUS,), failpoint=AFTER_RESTART
)
#: The new state is live and verified: from here recovery rolls forward.
STEP_COMMIT = declare_step("commit", APPLY, failpoint=AFTER_COMMIT)
STEP_SAVE_APPLIED = declare_step("save-applied", APPLY, failpoint=AFTER_SAVE_APPLIED)
#: The engine gave up on `target` and restores `before`.
STEP_ROLLBACK = declare_step("rollback", APPLY, failpoint=AFTER_ROLLBACK_BEGIN)
STEP_STOP = declare_step("stop", REMOVE, failpoint=AFTER_STOP)
STEP_DISABLE = declare_step("disable", REMOVE, failpoint=AFTER_DISABLE)
STEP_REMOVE_UNITS = declare_step("remove-units", REMOVE, failpoint=AFTER_UNIT_REMOVE)
STEP_REMOVE_RELEASES = declare_step("remove-releases", REMOVE)
STEP_FORGET = declare_step("forget", REMOVE, failpoint=AFTER_FORGET)
# A collection (after an operation reported): prune old releases, then the store's garbage.
STEP_PRUNE = declare_step("prune", COLLECT, failpoint=AFTER_PRUNE)
STEP_COLLECT = declare_step("collect-objects", COLLECT)


def steps_of(kind: str) -> tuple[str, ...]:
    return tuple(d.name for d in STEPS.values() if kind in d.kinds)


#: Apply steps a committed operation still has to finish (each idempotent).
APPLY_FINISH_STEPS: tuple[str, ...] = (STEP_SAVE_APPLIED,)
UNINSTALL_STEPS = steps_of(REMOVE)
#: A collection always rolls forward: removing what no release needs is idempotent.
COLLECT_STEPS = steps_of(COLLECT)


def _kind(op: str) -> str:
    return REMOVE if op in REMOVE_OPS else COLLECT if op in COLLECT_OPS else APPLY


#: The file a corrupt journal is moved to, for the administrator to inspect.
QUARANTINE_SUFFIX = ".corrupt"


@dataclass(frozen=True)
class Snapshot:
    """One side of an operation: the host before it, or the host it aims for."""

    #: Release id `current` points at (None: no link / nothing installed).
    release: str | None = None
    #: Unit file name -> full text (None: the file is absent).
    units: dict[str, str | None] = field(default_factory=dict)
    #: Whether the service unit is enabled.
    enabled: bool = False
    #: Whether the service is (to be) active.
    active: bool = False
    #: Payload version, for history and messages.
    version: str | None = None
    #: The applied-state document (AppliedState.to_json()), None when there is none.
    applied: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "units": dict(self.units),
            "enabled": self.enabled,
            "active": self.active,
            "version": self.version,
            "applied": self.applied,
        }

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Snapshot:
        def bad(key: str) -> CorruptStateFile:
            return CorruptStateFile(f"operation journal {where}: {key!r} is malformed")

        if not isinstance(doc, dict):
            raise bad("snapshot")
        release, units = doc.get("release"), doc.get("units")
        enabled, active = doc.get("enabled"), doc.get("active")
        version, applied = doc.get("version"), doc.get("applied")
        if release is not None and not isinstance(release, str):
            raise bad("release")
        if not isinstance(units, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in units.items()
        ):
            raise bad("units")
        if not isinstance(enabled, bool):
            raise bad("enabled")
        if not isinstance(active, bool):
            raise bad("active")
        if version is not None and not isinstance(version, str):
            raise bad("version")
        if applied is not None and not isinstance(applied, dict):
            raise bad("applied")
        return cls(release, dict(units), enabled, active, version, applied)


@dataclass(frozen=True)
class Step:
    name: str
    at: str
    data: dict[str, Any]


class JournalRecord:
    """The operation in flight, bound to its journal file; every change is persisted first.

    Writes (an fsync'd atomic replace each) run in a worker thread: the event loop, and so
    the bus, stays live while an operation journals.
    """

    def __init__(
        self,
        journal: Journal,
        op: str,
        txid: str,
        started: str,
        before: Snapshot,
        target: Snapshot,
        steps: list[Step],
        intent: dict[str, Any] | None = None,
    ) -> None:
        self._journal = journal
        self.op = op
        self.txid = txid
        self.started = started
        self.before = before
        self.target = target
        #: What was asked, recorded at the start (e.g. an uninstall's `wipe`), so recovery
        #: completes or undoes exactly that.
        self.intent: dict[str, Any] = dict(intent or {})
        self._steps = steps
        self._closed = False

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(self._steps)

    def reached(self, name: str) -> bool:
        """True if the step was recorded (so it may have been done, wholly or partly)."""
        return any(s.name == name for s in self._steps)

    def step_data(self, name: str) -> dict[str, Any] | None:
        """Data of the first recording of step `name`, None if not reached."""
        return next((s.data for s in self._steps if s.name == name), None)

    @property
    def last_step(self) -> str | None:
        return self._steps[-1].name if self._steps else None

    @property
    def committed(self) -> bool:
        return self.reached(STEP_COMMIT)

    @property
    def rolling_back(self) -> bool:
        return self.reached(STEP_ROLLBACK)

    async def step(self, name: str, **data: Any) -> None:
        """Persist "about to do step `name`" (with JSON-able `data`) before doing it."""
        if self._closed:
            raise HostStateError(f"journal of {self.txid} is closed; cannot record {name}")
        known = STEPS.get(name)
        if known is None or _kind(self.op) not in known.kinds:
            raise ValueError(f"{name!r} is not a step of a {self.op} operation")
        if name == STEP_COMMIT and self.rolling_back:
            raise HostStateError(f"{self.txid}: cannot commit an operation that rolls back")
        self._steps.append(Step(name, self._journal.clock(), dict(data)))
        try:
            await asyncio.to_thread(self._journal.write, self)
        except BaseException:
            self._steps.pop()
            raise

    @contextlib.asynccontextmanager
    async def doing(self, name: str, **data: Any) -> AsyncIterator[None]:
        """Journal step `name`, run the body, then hit the step's failpoint."""
        await self.step(name, **data)
        yield
        failpoint = STEPS[name].failpoint
        if failpoint is not None:
            self._journal.failpoints.hit(failpoint)

    async def commit(self) -> None:
        """Mark the commit point: from here on recovery rolls forward."""
        async with self.doing(STEP_COMMIT):
            pass

    async def begin_rollback(self, reason: str) -> None:
        """Mark that `target` failed and `before` is being restored (recovery continues it)."""
        async with self.doing(STEP_ROLLBACK, reason=reason):
            pass

    async def done(self) -> None:
        """The operation ended (success, failure or rollback): remove the journal durably."""
        self._journal.failpoints.hit(BEFORE_JOURNAL_DONE)
        await asyncio.to_thread(self._journal.discard)
        self._closed = True

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": JOURNAL_SCHEMA,
            "op": self.op,
            "txid": self.txid,
            "started": self.started,
            "intent": dict(self.intent),
            "before": self.before.to_json(),
            "target": self.target.to_json(),
            "steps": [{"name": s.name, "at": s.at, "data": s.data} for s in self._steps],
        }


class Journal:
    """The journal file (Paths.journal_file). At most one operation is journaled at a time."""

    def __init__(
        self,
        path: Path,
        failpoints: Failpoints = DISABLED,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self.path = path
        self.failpoints = failpoints
        self.clock = clock

    async def begin(
        self,
        op: str,
        txid: str,
        before: Snapshot,
        target: Snapshot,
        intent: dict[str, Any] | None = None,
    ) -> JournalRecord:
        """Start journaling an operation; refuses while an interrupted one is unrecovered."""
        if op not in ALL_OPS:
            raise ValueError(f"unknown operation {op!r}")
        if await asyncio.to_thread(self.path.exists):
            raise HostStateError(
                f"an interrupted operation is journaled in {self.path}; it is recovered "
                "before the next operation"
            )
        record = JournalRecord(self, op, txid, self.clock(), before, target, [], intent)
        await asyncio.to_thread(self.write, record)
        self.failpoints.hit(AFTER_JOURNAL_BEGIN)
        return record

    def pending(self) -> bool:
        """True if a journal file is there (an operation was interrupted or is running)."""
        return self.path.exists()

    def write(self, record: JournalRecord) -> None:
        """Replace the journal file with `record` (atomic, durable)."""
        atomic_write(self.path, dump_json(record.to_json()), mode=STATE_FILE_MODE)

    def load(self) -> JournalRecord | None:
        """The interrupted operation, None if there is none.

        Raises CorruptStateFile (a HostStateError) if the file is not a journal this
        pxhostd wrote; the caller quarantines it and reconciles from the desired spec.
        """
        doc = read_json_object(self.path, "operation journal", JOURNAL_SCHEMA)
        if doc is None:
            return None
        where = str(self.path)
        op, txid, started = doc.get("op"), doc.get("txid"), doc.get("started")
        if op not in ALL_OPS:
            raise CorruptStateFile(f"operation journal {where}: unknown operation {op!r}")
        if not isinstance(txid, str) or not isinstance(started, str):
            raise CorruptStateFile(f"operation journal {where}: 'txid'/'started' malformed")
        intent = doc.get("intent", {})
        if not isinstance(intent, dict):
            raise CorruptStateFile(f"operation journal {where}: 'intent' is malformed")
        raw_steps = doc.get("steps")
        if not isinstance(raw_steps, list):
            raise CorruptStateFile(f"operation journal {where}: 'steps' is malformed")
        steps: list[Step] = []
        for raw in raw_steps:
            if (
                not isinstance(raw, dict)
                or raw.get("name") not in STEPS
                or not isinstance(raw.get("at"), str)
                or not isinstance(raw.get("data"), dict)
            ):
                raise CorruptStateFile(f"operation journal {where}: a step is malformed")
            steps.append(Step(raw["name"], raw["at"], raw["data"]))
        before = Snapshot.from_json(doc.get("before"), where)
        target = Snapshot.from_json(doc.get("target"), where)
        return JournalRecord(self, op, txid, started, before, target, steps, intent)

    def discard(self) -> bool:
        """Remove the journal durably (after recovery); False if there was none."""
        return remove_file(self.path)

    def quarantine(self) -> Path | None:
        """Move an unreadable journal aside (`journal.json.corrupt`) so work can go on."""
        if not self.path.exists():
            return None
        dest = self.path.with_name(self.path.name + QUARANTINE_SUFFIX)
        n = 0
        while dest.exists():
            n += 1
            dest = self.path.with_name(f"{self.path.name}{QUARANTINE_SUFFIX}.{n}")
        try:
            self.path.rename(dest)
            fsync_dir(self.path.parent)
        except OSError as exc:
            raise HostStateError(f"cannot move {self.path} aside: {exc.strerror}") from exc
        return dest


class RecoveryAction(enum.StrEnum):
    NONE = "none"  # no journal: nothing was interrupted
    DISCARD = "discard"  # journal begun but no step reached: drop it
    ROLL_BACK = "roll-back"  # restore `before` (the undo list says what)
    ROLL_FORWARD = "roll-forward"  # finish towards `target` (the remaining steps)


_UNDO_ORDER: tuple[Undo, ...] = tuple(Undo)


@dataclass(frozen=True)
class Recovery:
    action: RecoveryAction
    record: JournalRecord | None
    reason: str
    #: ROLL_BACK: restore actions, in the order to perform them.
    undo: tuple[Undo, ...] = ()
    #: ROLL_FORWARD: the steps to (re-)run, in order; every one is idempotent.
    remaining: tuple[str, ...] = ()


def _undo_for(record: JournalRecord) -> tuple[Undo, ...]:
    wanted: set[Undo] = set()
    if record.intent.get("imported") is True:
        wanted.add(Undo.REMOVE_STAGED)  # imported just before the journal opened
    for step in record.steps:
        if step.name == STEP_ROLLBACK:
            break
        wanted.update(STEPS[step.name].undo)
    stage = record.step_data(STEP_STAGE)
    if Undo.REMOVE_STAGED in wanted and (
        record.target.release is None
        or record.target.release == record.before.release
        or (stage is not None and stage.get("preexisting") is True)
        or record.intent.get("preexisting") is True
    ):
        wanted.discard(Undo.REMOVE_STAGED)  # never delete a release that was there before
    return tuple(u for u in _UNDO_ORDER if u in wanted)


def plan_recovery(record: JournalRecord | None) -> Recovery:
    """Decide what to do about an interrupted operation (pure: reads the record only)."""
    if record is None:
        return Recovery(RecoveryAction.NONE, None, "no interrupted operation")
    what = f"{record.op} {record.txid}"
    if record.op in COLLECT_OPS:
        return Recovery(
            RecoveryAction.ROLL_FORWARD,
            record,
            f"{what} was interrupted; finishing it (it only removes what no release needs)",
            remaining=COLLECT_STEPS,
        )
    if record.op in REMOVE_OPS:
        return Recovery(
            RecoveryAction.ROLL_FORWARD,
            record,
            f"{what} was interrupted; an uninstall always completes",
            remaining=UNINSTALL_STEPS,
        )
    if record.rolling_back:
        data = record.step_data(STEP_ROLLBACK) or {}
        return Recovery(
            RecoveryAction.ROLL_BACK,
            record,
            f"{what} was rolling back ({data.get('reason', 'no reason recorded')}); "
            "finishing the rollback",
            undo=_undo_for(record),
        )
    if record.committed:
        return Recovery(
            RecoveryAction.ROLL_FORWARD,
            record,
            f"{what} was interrupted after its commit point; finishing it",
            remaining=APPLY_FINISH_STEPS,
        )
    if not record.steps:
        return Recovery(
            RecoveryAction.DISCARD, record, f"{what} was interrupted before its first step",
            undo=_undo_for(record),
        )
    return Recovery(
        RecoveryAction.ROLL_BACK,
        record,
        f"{what} was interrupted at step {record.last_step!r} before its commit point; "
        "rolling back",
        undo=_undo_for(record),
    )
