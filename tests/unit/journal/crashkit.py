"""A journaled operation built only from the crash-safety parts, for crash tests.

Run as a child process (`python crashkit.py ROOT SCENARIO`) with PXHOSTD_FAILPOINTS set: a
failpoint SIGKILLs it. The parent then runs `recover()` the way the daemon does at start
and checks the host. The systemd steps are recorded but have nothing to do here; the file
side (releases, `current`, unit files, applied state, journal, history) is all real.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pxhostd.engine import failpoints as fp
from pxhostd.engine.failpoints import DISABLED, Failpoints
from pxhostd.engine.history import History, HistoryEntry, Result
from pxhostd.engine.journal import (
    APPLY_OPS,
    STEP_DAEMON_RELOAD,
    STEP_DISABLE,
    STEP_ENABLE,
    STEP_FORGET,
    STEP_PRUNE,
    STEP_REMOVE_RELEASES,
    STEP_REMOVE_UNITS,
    STEP_RESTART,
    STEP_SAVE_APPLIED,
    STEP_STAGE,
    STEP_STOP,
    STEP_SWITCH,
    STEP_WRITE_UNITS,
    Journal,
    JournalRecord,
    RecoveryAction,
    Snapshot,
    Undo,
    plan_recovery,
)
from pxhostd.engine.state import AppliedState, AppliedStateStore, utc_now
from pxhostd.hostfs import atomic_write, remove_file, sweep_temp_files
from pxhostd.paths import Paths
from pxhostd.payload.staging import Releases


class Host:
    """The file side of one node below `root`; `plan.json` describes the operation."""

    def __init__(self, root: Path, failpoints: Failpoints = DISABLED) -> None:
        self.paths = Paths().under(root)
        self.plan: dict[str, Any] = json.loads((root / "plan.json").read_text())
        self.failpoints = failpoints
        self.releases = Releases(self.paths.releases_dir, failpoints)
        self.journal = Journal(self.paths.journal_file, failpoints)
        self.applied = AppliedStateStore(self.paths.applied_file)
        self.history = History(self.paths.history_file)

    def files(self, release: str) -> dict[str, str]:
        files: dict[str, str] = self.plan["files"][release]
        return files

    # -- operations ----------------------------------------------------------------------

    def apply(self, op: str, before: Snapshot, target: Snapshot, fail: bool) -> None:
        assert target.release is not None
        rec = self.journal.begin(op, self.plan["txid"], before, target)
        rec.step(STEP_STAGE, release=target.release,
                 preexisting=self.releases.exists(target.release))
        self.releases.stage(Path(self.plan["payloads"][target.release]), target.release,
                            self.files(target.release))
        self.failpoints.hit(fp.AFTER_STAGE)
        rec.step(STEP_WRITE_UNITS)
        self.write_units(target.units)
        self.failpoints.hit(fp.AFTER_UNIT_WRITE)
        rec.step(STEP_DAEMON_RELOAD)
        self.failpoints.hit(fp.AFTER_DAEMON_RELOAD)
        rec.step(STEP_ENABLE)
        self.failpoints.hit(fp.AFTER_ENABLE)
        rec.step(STEP_SWITCH, release=target.release)
        self.releases.switch(target.release)
        self.failpoints.hit(fp.AFTER_SWITCH)
        rec.step(STEP_RESTART)
        self.failpoints.hit(fp.AFTER_RESTART)
        if fail:
            rec.begin_rollback("the new release did not become active")
            self.undo(rec, plan_recovery(rec).undo)
            self.record(rec, Result.ROLLED_BACK, "RolledBack")
            rec.done()
            return
        rec.commit()
        self.finish_apply(rec)
        self.record(rec, Result.SUCCESS, None)
        rec.done()

    def finish_apply(self, rec: JournalRecord) -> None:
        """The steps after the commit point; rerun as they are by a roll-forward."""
        assert rec.target.applied is not None and rec.target.release is not None
        rec.step(STEP_SAVE_APPLIED)
        self.applied.save(AppliedState.from_json(rec.target.applied))
        self.failpoints.hit(fp.AFTER_SAVE_APPLIED)
        rec.step(STEP_PRUNE)
        keep = {r for r in (rec.target.release, rec.before.release) if r}
        self.releases.prune(keep)

    def uninstall(self, rec: JournalRecord) -> None:
        """Every uninstall step; each is idempotent, so a roll-forward reruns them all."""
        rec.step(STEP_STOP)
        self.failpoints.hit(fp.AFTER_STOP)
        rec.step(STEP_DISABLE)
        self.failpoints.hit(fp.AFTER_DISABLE)
        rec.step(STEP_REMOVE_UNITS)
        for name in rec.before.units:
            remove_file(self.paths.unit_dir / name)
        self.failpoints.hit(fp.AFTER_UNIT_REMOVE)
        rec.step(STEP_DAEMON_RELOAD)
        self.failpoints.hit(fp.AFTER_DAEMON_RELOAD)
        rec.step(STEP_REMOVE_RELEASES)
        self.releases.remove_all()
        rec.step(STEP_FORGET)
        self.applied.clear()

    # -- pieces ----------------------------------------------------------------------------

    def write_units(self, units: dict[str, str | None]) -> None:
        for name, text in units.items():
            if text is None:
                remove_file(self.paths.unit_dir / name)
            else:
                atomic_write(self.paths.unit_dir / name, text)

    def undo(self, rec: JournalRecord, undo: tuple[Undo, ...]) -> None:
        for action in undo:
            if action is Undo.SWITCH_BACK:
                if rec.before.release:
                    self.releases.switch(rec.before.release)
                else:
                    self.releases.unlink_current()
            elif action is Undo.RESTORE_UNITS:
                names = set(rec.before.units) | set(rec.target.units)
                self.write_units({n: rec.before.units.get(n) for n in names})
            elif action is Undo.REMOVE_STAGED:
                assert rec.target.release is not None
                if self.releases.current() != rec.target.release:
                    self.releases.remove(rec.target.release)
            # DAEMON_RELOAD, RESTORE_ENABLEMENT, RESTART_PREVIOUS: systemd's part.

    def record(self, rec: JournalRecord, result: Result, error: str | None) -> None:
        self.history.append(HistoryEntry(
            txid=rec.txid, operation=rec.op, started=rec.started, finished=utc_now(),
            result=result, error=error, version_before=rec.before.version,
            version_after=rec.target.version,
        ))

    # -- what the daemon does at start ---------------------------------------------------

    def recover(self) -> RecoveryAction:
        rec = self.journal.load()
        plan = plan_recovery(rec)
        if rec is not None:
            if plan.action is RecoveryAction.ROLL_BACK:
                self.undo(rec, plan.undo)
                self.record(rec, Result.ROLLED_BACK, "RolledBack")
            elif plan.action is RecoveryAction.ROLL_FORWARD:
                if rec.op in APPLY_OPS:
                    self.finish_apply(rec)
                else:
                    self.uninstall(rec)
                self.record(rec, Result.SUCCESS, None)
            rec.done()
        for directory in (self.paths.releases_dir, self.paths.unit_dir, self.paths.state_dir):
            sweep_temp_files(directory)
        return plan.action


def main(root: Path, scenario: str) -> None:
    host = Host(root, Failpoints.from_env())
    before = Snapshot.from_json(host.plan["before"], "plan")
    target = Snapshot.from_json(host.plan["target"], "plan")
    if scenario == "uninstall":
        rec = host.journal.begin("uninstall", host.plan["txid"], before, target)
        host.uninstall(rec)
        host.record(rec, Result.SUCCESS, None)
        rec.done()
    else:
        host.apply("upgrade", before, target, fail=scenario == "failing-upgrade")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
