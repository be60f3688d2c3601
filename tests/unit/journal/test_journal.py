"""The operation journal file and the recovery rule, step by step."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pxhostd.engine import journal as j
from pxhostd.engine.journal import Journal, RecoveryAction, Snapshot, Undo, plan_recovery
from pxhostd.engine.state import CorruptStateFile
from pxhostd.errors import HostStateError

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


REBOOT = "portworx-reboot.service"
BEFORE = Snapshot(release="1.0-a", units={"portworx.service": "old", REBOOT: None},
                  enabled=True, active=True, version="1.0", applied={"schema": 1})
TARGET = Snapshot(release="2.0-b", units={"portworx.service": "new", REBOOT: "r"},
                  enabled=True, active=True, version="2.0", applied={"schema": 1, "x": 2})


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "state" / "journal.json")


def test_begin_step_load_roundtrip(journal: Journal) -> None:
    rec = run(journal.begin(j.OP_UPGRADE, "tx1", BEFORE, TARGET))
    run(rec.step(j.STEP_STAGE, release="2.0-b", preexisting=False))
    loaded = journal.load()
    assert loaded is not None
    assert (loaded.op, loaded.txid, loaded.started) == ("upgrade", "tx1", rec.started)
    assert loaded.before == BEFORE and loaded.target == TARGET
    assert [s.name for s in loaded.steps] == ["stage"]
    assert loaded.step_data(j.STEP_STAGE) == {"release": "2.0-b", "preexisting": False}
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600  # holds unit text, env


def test_each_step_is_on_disk_before_step_returns(journal: Journal) -> None:
    rec = run(journal.begin(j.OP_INSTALL, "tx1", Snapshot(), TARGET))
    for name in (j.STEP_STAGE, j.STEP_WRITE_UNITS, j.STEP_DAEMON_RELOAD):
        run(rec.step(name))
        on_disk = json.loads(journal.path.read_text())
        assert on_disk["steps"][-1]["name"] == name
        assert on_disk["schema"] == j.JOURNAL_SCHEMA


def test_done_removes_the_journal_and_closes_the_record(journal: Journal) -> None:
    rec = run(journal.begin(j.OP_INSTALL, "tx1", Snapshot(), TARGET))
    run(rec.done())
    assert not journal.path.exists()
    assert journal.load() is None
    with pytest.raises(HostStateError, match="closed"):
        run(rec.step(j.STEP_STAGE))


def test_begin_refuses_while_an_interrupted_operation_is_unrecovered(journal: Journal) -> None:
    run(journal.begin(j.OP_INSTALL, "tx1", Snapshot(), TARGET))
    with pytest.raises(HostStateError, match="recovered before the next operation"):
        run(journal.begin(j.OP_UPGRADE, "tx2", BEFORE, TARGET))
    loaded = journal.load()
    assert loaded is not None and loaded.txid == "tx1"


def test_unknown_operation_and_foreign_steps_are_refused(journal: Journal) -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        run(journal.begin("upgrde", "tx1", BEFORE, TARGET))
    rec = run(journal.begin(j.OP_UPGRADE, "tx1", BEFORE, TARGET))
    with pytest.raises(ValueError, match="not a step of a upgrade"):
        run(rec.step(j.STEP_STOP))
    with pytest.raises(ValueError, match="not a step"):
        run(rec.step("stagee"))


def test_cannot_commit_after_rollback_began(journal: Journal) -> None:
    rec = run(journal.begin(j.OP_UPGRADE, "tx1", BEFORE, TARGET))
    run(rec.step(j.STEP_SWITCH))
    run(rec.begin_rollback("not active"))
    with pytest.raises(HostStateError, match="rolls back"):
        run(rec.commit())


@pytest.mark.parametrize("text", [
    "{not json",
    "[]",
    '{"schema": 99}',
    '{"schema": 1, "op": "reboot", "txid": "t", "started": "s", "steps": []}',
    '{"schema": 1, "op": "upgrade", "txid": "t", "started": "s", "steps": [{"name": "x"}]}',
    '{"schema": 1, "op": "upgrade", "txid": "t", "started": "s", "steps": [], "before": {}}',
    "\xff\xfe",
])
def test_a_corrupt_journal_is_a_named_error(journal: Journal, text: str) -> None:
    journal.path.parent.mkdir(parents=True)
    journal.path.write_bytes(text.encode("latin-1"))
    with pytest.raises(CorruptStateFile, match="operation journal"):
        journal.load()
    assert issubclass(CorruptStateFile, HostStateError)
    assert CorruptStateFile("x").name == "HostStateError"


def test_quarantine_moves_a_corrupt_journal_aside(journal: Journal) -> None:
    journal.path.parent.mkdir(parents=True)
    journal.path.write_text("garbage 1")
    first = journal.quarantine()
    journal.path.write_text("garbage 2")
    second = journal.quarantine()
    assert first is not None and first.name == "journal.json.corrupt"
    assert second is not None and second.name == "journal.json.corrupt.1"
    assert (first.read_text(), second.read_text()) == ("garbage 1", "garbage 2")
    assert journal.load() is None
    assert journal.quarantine() is None


# -- the recovery rule ----------------------------------------------------------------------


def record_with(journal: Journal, op: str, *steps: str, **stage_data: object) -> j.JournalRecord:
    rec = run(journal.begin(op, "tx", BEFORE, TARGET))
    for name in steps:
        if name == j.STEP_STAGE:
            run(rec.step(name, **stage_data))
        elif name == j.STEP_ROLLBACK:
            run(rec.begin_rollback("failed to start"))
        else:
            run(rec.step(name))
    loaded = journal.load()  # plan from what is on disk, as after a crash
    assert loaded is not None
    return loaded


def test_no_journal_means_nothing_to_recover() -> None:
    assert plan_recovery(None).action is RecoveryAction.NONE


def test_begun_without_a_step_is_discarded(journal: Journal) -> None:
    plan = plan_recovery(record_with(journal, j.OP_UPGRADE))
    assert plan.action is RecoveryAction.DISCARD
    assert plan.undo == ()


@pytest.mark.parametrize("steps,undo", [
    ((j.STEP_STAGE,), (Undo.REMOVE_STAGED,)),
    ((j.STEP_STAGE, j.STEP_WRITE_UNITS),
     (Undo.RESTORE_UNITS, Undo.DAEMON_RELOAD, Undo.REMOVE_STAGED)),
    ((j.STEP_STAGE, j.STEP_WRITE_UNITS, j.STEP_DAEMON_RELOAD, j.STEP_ENABLE),
     (Undo.RESTORE_UNITS, Undo.DAEMON_RELOAD, Undo.RESTORE_ENABLEMENT, Undo.REMOVE_STAGED)),
    ((j.STEP_STAGE, j.STEP_WRITE_UNITS, j.STEP_DAEMON_RELOAD, j.STEP_ENABLE, j.STEP_SWITCH),
     (Undo.SWITCH_BACK, Undo.RESTORE_UNITS, Undo.DAEMON_RELOAD, Undo.RESTORE_ENABLEMENT,
      Undo.REMOVE_STAGED)),
    ((j.STEP_STAGE, j.STEP_WRITE_UNITS, j.STEP_DAEMON_RELOAD, j.STEP_ENABLE, j.STEP_SWITCH,
      j.STEP_RESTART),
     (Undo.SWITCH_BACK, Undo.RESTORE_UNITS, Undo.DAEMON_RELOAD, Undo.RESTORE_ENABLEMENT,
      Undo.RESTART_PREVIOUS, Undo.REMOVE_STAGED)),
    ((j.STEP_RESTART,), (Undo.RESTART_PREVIOUS,)),  # a plain restart operation
])
def test_before_commit_rolls_back_only_what_was_reached(
    journal: Journal, steps: tuple[str, ...], undo: tuple[Undo, ...]
) -> None:
    plan = plan_recovery(record_with(journal, j.OP_UPGRADE, *steps, preexisting=False))
    assert plan.action is RecoveryAction.ROLL_BACK
    assert plan.undo == undo
    assert plan.record is not None and plan.record.txid == "tx"


def test_a_release_that_existed_before_is_never_removed(journal: Journal) -> None:
    plan = plan_recovery(record_with(journal, j.OP_UPGRADE, j.STEP_STAGE, preexisting=True))
    assert plan.action is RecoveryAction.ROLL_BACK
    assert Undo.REMOVE_STAGED not in plan.undo


def test_same_release_before_and_after_is_never_removed(journal: Journal) -> None:
    rec = run(journal.begin(j.OP_RECONFIGURE, "tx", BEFORE, Snapshot(release=BEFORE.release)))
    run(rec.step(j.STEP_STAGE, preexisting=False))
    assert Undo.REMOVE_STAGED not in plan_recovery(rec).undo


@pytest.mark.parametrize("extra", [(), (j.STEP_SAVE_APPLIED,)])
def test_after_commit_rolls_forward(journal: Journal, extra: tuple[str, ...]) -> None:
    steps = (j.STEP_STAGE, j.STEP_SWITCH, j.STEP_RESTART, j.STEP_COMMIT, *extra)
    plan = plan_recovery(record_with(journal, j.OP_INSTALL, *steps, preexisting=False))
    assert plan.action is RecoveryAction.ROLL_FORWARD
    assert plan.remaining == (j.STEP_SAVE_APPLIED,)
    assert plan.undo == ()


def test_an_interrupted_rollback_is_continued_with_its_reason(journal: Journal) -> None:
    rec = record_with(journal, j.OP_UPGRADE, j.STEP_STAGE, j.STEP_SWITCH, j.STEP_RESTART,
                      j.STEP_ROLLBACK, preexisting=False)
    plan = plan_recovery(rec)
    assert plan.action is RecoveryAction.ROLL_BACK
    assert plan.undo == (Undo.SWITCH_BACK, Undo.RESTART_PREVIOUS, Undo.REMOVE_STAGED)
    assert "failed to start" in plan.reason


@pytest.mark.parametrize("steps", [(), (j.STEP_STOP,), j.steps_of(j.REMOVE)])
def test_uninstall_always_rolls_forward(journal: Journal, steps: tuple[str, ...]) -> None:
    target = Snapshot(units={"portworx.service": None})
    rec = run(journal.begin(j.OP_UNINSTALL, "tx", BEFORE, target))
    for name in steps:
        run(rec.step(name))
    plan = plan_recovery(rec)
    assert plan.action is RecoveryAction.ROLL_FORWARD
    assert plan.remaining == j.steps_of(j.REMOVE)


@pytest.mark.parametrize("steps", [(), (j.STEP_PRUNE,), (j.STEP_PRUNE, j.STEP_COLLECT)])
def test_an_interrupted_collection_always_rolls_forward(
    journal: Journal, steps: tuple[str, ...]
) -> None:
    plan = plan_recovery(record_with(journal, j.OP_COLLECT, *steps))
    assert plan.action is RecoveryAction.ROLL_FORWARD
    assert plan.remaining == (j.STEP_PRUNE, j.STEP_COLLECT)


def test_a_collection_records_only_its_own_steps(journal: Journal) -> None:
    rec = run(journal.begin(j.OP_COLLECT, "tx", BEFORE, BEFORE))
    with pytest.raises(ValueError, match="not a step of a collect operation"):
        run(rec.step(j.STEP_SWITCH))
