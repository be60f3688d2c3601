"""Kill a real child process at every failpoint, recover, and check the host is whole.

The child runs a journaled upgrade (or uninstall) with one failpoint armed; the failpoint
SIGKILLs it. Recovery (journal -> plan_recovery -> undo / finish -> sweep) must then leave
exactly one current release that matches the unit file and the applied state, and no
temp files, journal or half-staged release behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from crashkit import Host

from pxhostd.engine import failpoints as fp
from pxhostd.engine.failpoints import FAILPOINTS_ENV
from pxhostd.engine.history import Result
from pxhostd.engine.journal import RecoveryAction, Snapshot
from pxhostd.engine.state import AppliedState
from pxhostd.hostfs import TEMP_PREFIX
from pxhostd.paths import Paths
from pxhostd.payload.staging import Releases

REPO_ROOT = Path(__file__).resolve().parents[3]
CRASHKIT = Path(__file__).with_name("crashkit.py")
UNIT = "portworx.service"
V0, V1, V2 = "0.9-000000000000", "1.0-111111111111", "2.0-222222222222"


def unit_text(release: str) -> str:
    return f"[Service]\nExecStart=/opt/pwx/releases/current/bin/px --release {release}\n"


def applied_doc(release: str, version: str) -> dict[str, object]:
    return AppliedState(
        spec={"service": "portworx"}, release_id=release, payload_digest=release[-12:],
        restart_digest="r-" + release, unit_digests={UNIT: release}, enabled=True,
        version=version, txid="tx-prev",
    ).to_json()


def make_payload(root: Path, release: str) -> tuple[Path, dict[str, str]]:
    payload = root / "payloads" / release
    files: dict[str, str] = {}
    for n in range(3):
        rel = f"bin/file{n}" if n else "bin/px"
        data = f"{release} {n}\n".encode() * 2000
        (payload / rel).parent.mkdir(parents=True, exist_ok=True)
        (payload / rel).write_bytes(data)
        files[rel] = hashlib.sha256(data).hexdigest()
    (payload / "bin/px").chmod(0o755)
    return payload, files


def installed_host(root: Path, scenario: str) -> None:
    """A node on V1 (V0 still kept), and plan.json for the operation the child runs."""
    paths = Paths().under(root)
    releases = Releases(paths.releases_dir)
    payloads: dict[str, str] = {}
    files: dict[str, dict[str, str]] = {}
    for rel in (V0, V1, V2):
        payload, listed = make_payload(root, rel)
        payloads[rel], files[rel] = str(payload), listed
        if rel != V2:
            releases.stage(payload, rel, listed)
    releases.switch(V1)
    paths.unit_dir.mkdir(parents=True)
    (paths.unit_dir / UNIT).write_text(unit_text(V1))
    paths.state_dir.mkdir(parents=True)
    paths.applied_file.write_text(json.dumps(applied_doc(V1, "1.0")))
    before = Snapshot(release=V1, units={UNIT: unit_text(V1)}, enabled=True, active=True,
                      version="1.0", applied=applied_doc(V1, "1.0"))
    if scenario == "uninstall":
        target = Snapshot(release=None, units={UNIT: None})
    else:
        target = Snapshot(release=V2, units={UNIT: unit_text(V2)}, enabled=True,
                          active=True, version="2.0", applied=applied_doc(V2, "2.0"))
    (root / "plan.json").write_text(json.dumps({
        "txid": "tx-crash", "payloads": payloads, "files": files,
        "before": before.to_json(), "target": target.to_json(),
    }))


def run_child(root: Path, scenario: str, failpoint: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != FAILPOINTS_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    if failpoint:
        env[FAILPOINTS_ENV] = failpoint
    return subprocess.run(
        [sys.executable, str(CRASHKIT), str(root), scenario],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def check_installed_on(root: Path, release: str) -> None:
    host = Host(root)
    assert host.releases.current() == release
    assert release in host.releases.list()
    assert host.releases.verify(release, host.files(release))
    assert (host.paths.unit_dir / UNIT).read_text() == unit_text(release)
    applied = host.applied.load()
    assert applied is not None and applied.release_id == release
    assert not host.paths.journal_file.exists()
    assert leftovers(root) == []


APPLY_BEFORE_COMMIT = [
    fp.AFTER_JOURNAL_BEGIN, fp.MID_STAGE, fp.AFTER_STAGE, fp.AFTER_UNIT_WRITE,
    fp.AFTER_DAEMON_RELOAD, fp.AFTER_ENABLE, fp.AFTER_SWITCH, fp.AFTER_RESTART,
]
APPLY_AFTER_COMMIT = [fp.AFTER_COMMIT, fp.AFTER_SAVE_APPLIED, fp.MID_PRUNE,
                      fp.BEFORE_JOURNAL_DONE]


def crash_at(root: Path, scenario: str, failpoint: str) -> None:
    installed_host(root, scenario)
    proc = run_child(root, scenario, failpoint)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert f"failpoint {failpoint.split('=')[0]} reached" in proc.stderr


@pytest.mark.parametrize("failpoint", APPLY_BEFORE_COMMIT)
def test_crash_before_commit_rolls_back_to_the_old_release(tmp_path: Path, failpoint: str) -> None:
    crash_at(tmp_path, "upgrade", failpoint)
    expected = RecoveryAction.DISCARD if failpoint == fp.AFTER_JOURNAL_BEGIN else (
        RecoveryAction.ROLL_BACK)
    assert Host(tmp_path).recover() is expected
    check_installed_on(tmp_path, V1)
    host = Host(tmp_path)
    assert V2 not in host.releases.list()  # new parts removed, not only switched back
    if expected is RecoveryAction.ROLL_BACK:
        assert host.history.read(1)[0].result is Result.ROLLED_BACK


@pytest.mark.parametrize("failpoint", APPLY_AFTER_COMMIT)
def test_crash_after_commit_rolls_forward_to_the_new_release(
    tmp_path: Path, failpoint: str
) -> None:
    crash_at(tmp_path, "upgrade", failpoint)
    assert Host(tmp_path).recover() is RecoveryAction.ROLL_FORWARD
    check_installed_on(tmp_path, V2)
    assert Host(tmp_path).releases.list() == [V1, V2]  # previous kept, older pruned


@pytest.mark.parametrize("failpoint", [fp.AFTER_ROLLBACK_BEGIN, fp.BEFORE_JOURNAL_DONE])
def test_crash_during_an_automatic_rollback_finishes_the_rollback(
    tmp_path: Path, failpoint: str
) -> None:
    crash_at(tmp_path, "failing-upgrade", failpoint)
    assert Host(tmp_path).recover() is RecoveryAction.ROLL_BACK
    check_installed_on(tmp_path, V1)
    assert V2 not in Host(tmp_path).releases.list()


def test_a_crash_on_the_nth_hit(tmp_path: Path) -> None:
    """mid-prune=2 needs two removals; this upgrade prunes one, so the child survives."""
    installed_host(tmp_path, "upgrade")
    proc = run_child(tmp_path, "upgrade", f"{fp.MID_PRUNE}=2")
    assert proc.returncode == 0, proc.stderr
    check_installed_on(tmp_path, V2)


@pytest.mark.parametrize("scenario,release", [("upgrade", V2), ("failing-upgrade", V1)])
def test_uninterrupted_runs_leave_no_journal(tmp_path: Path, scenario: str, release: str) -> None:
    installed_host(tmp_path, scenario)
    proc = run_child(tmp_path, scenario, None)
    assert proc.returncode == 0, proc.stderr
    check_installed_on(tmp_path, release)
    assert Host(tmp_path).recover() is RecoveryAction.NONE
    entry = Host(tmp_path).history.read(1)[0]
    assert entry.result is (Result.SUCCESS if release == V2 else Result.ROLLED_BACK)
    assert (entry.version_before, entry.version_after) == ("1.0", "2.0")


@pytest.mark.parametrize("failpoint", [
    None, fp.AFTER_JOURNAL_BEGIN, fp.AFTER_STOP, fp.AFTER_DISABLE, fp.AFTER_UNIT_REMOVE,
    fp.AFTER_DAEMON_RELOAD, fp.MID_RELEASE_REMOVE, fp.BEFORE_JOURNAL_DONE,
])
def test_an_interrupted_uninstall_is_completed(tmp_path: Path, failpoint: str | None) -> None:
    installed_host(tmp_path, "uninstall")
    proc = run_child(tmp_path, "uninstall", failpoint)
    if failpoint is None:
        assert proc.returncode == 0, proc.stderr
        assert Host(tmp_path).recover() is RecoveryAction.NONE
    else:
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        assert Host(tmp_path).recover() is RecoveryAction.ROLL_FORWARD
    host = Host(tmp_path)
    assert not host.paths.releases_dir.exists()
    assert not (host.paths.unit_dir / UNIT).exists()
    assert host.applied.load() is None
    assert not host.paths.journal_file.exists()
    assert leftovers(tmp_path) == []
