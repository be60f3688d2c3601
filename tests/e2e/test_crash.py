"""Crash safety on a real node: kill -9 at every failpoint, and a power cut mid-upgrade.

After each crash the daemon is restarted by systemd, recovers before READY=1, and the host
must be consistent: one release current, the unit matching it, the service active on it,
no temp files, no journal left.
"""

from __future__ import annotations

import json
from pathlib import Path

from nodeharness import Node, wait_for
from pxnode import (
    UNIT,
    assert_consistent,
    build_payload,
    install,
    payload_status,
    pxhostctl,
    wait_pxhostd,
)

#: Failpoints that are reached after the upgrade has reported success: pruning the
#: oldest release and collecting its objects happen then, out of the downtime window.
AFTER_REPLY = frozenset({"mid-prune", "after-prune", "mid-spare"})

#: Failpoints an upgrade passes, and whether recovery ends on the new version.
UPGRADE_FAILPOINTS: list[tuple[str, bool]] = [
    ("after-journal-begin", False),
    ("mid-stage", False),
    ("after-stage", False),
    ("after-unit-write", False),
    ("after-daemon-reload", False),
    ("after-switch", False),
    ("after-restart", False),
    ("after-commit", True),
    ("after-save-applied", True),
    ("before-journal-done", True),
    ("mid-prune", True),
    ("after-prune", True),
    ("mid-spare", True),
]


def spec_for(payload: str, n: int) -> dict[str, object]:
    # The env differs per step so that every upgrade also rewrites the unit file.
    return {"payload": payload, "args": ["-c", "crash"], "env": {"STEP": str(n)}}


def arm(node: Node, failpoint: str) -> None:
    node.write_file("/var/lib/pxhostd/failpoints", failpoint + "\n", mode=0o600)
    # Crash tests restart pxhostd far more often than StartLimitBurst= allows in real life.
    node.systemctl("reset-failed", "pxhostd")
    node.systemctl("restart", "pxhostd")
    wait_pxhostd(node)


def test_kill_at_every_failpoint_recovers(installed_node: Node, tmp_path: Path) -> None:
    node = installed_node
    wait_pxhostd(node)
    base = build_payload(node, tmp_path, "base", "1.0.0")
    install(node, spec_for(base, 0))
    version = "1.0.0"
    for n, (failpoint, forward) in enumerate(UPGRADE_FAILPOINTS, start=1):
        new_version = f"2.{n}.0"
        payload = build_payload(node, tmp_path, f"p{n}", new_version)
        arm(node, failpoint)
        pid = node.unit_property("pxhostd", "MainPID")
        result = install(node, spec_for(payload, n), check=False)
        if failpoint in AFTER_REPLY:
            assert result.returncode == 0, f"{failpoint}: {result.stdout}{result.stderr}"
        else:
            assert result.returncode != 0, f"{failpoint}: the daemon should have died"
        assert "Traceback" not in result.stderr
        wait_for(
            lambda: node.unit_property("pxhostd", "MainPID"),
            lambda p, old=pid: p not in ("0", old),
            timeout=60,
            what=f"pxhostd to be restarted after {failpoint}",
        )
        wait_pxhostd(node)
        if forward:
            version = new_version
        assert_consistent(node, version)
        assert "failpoint" in node.journal("pxhostd.service"), failpoint


UNINSTALL_FAILPOINTS = [
    "after-journal-begin", "after-stop", "after-disable", "after-unit-remove",
    "after-daemon-reload", "after-forget", "before-journal-done",
]


def test_kill_at_every_step_of_uninstall_wipe_completes_it(
    installed_node: Node, tmp_path: Path
) -> None:
    """The wipe is journaled with the intent at the start: recovery after a crash at any
    step removes the service and /etc/pwx, as asked."""
    node = installed_node
    wait_pxhostd(node)
    payload = build_payload(node, tmp_path, "base", "1.0.0")
    for n, failpoint in enumerate(UNINSTALL_FAILPOINTS):
        install(node, spec_for(payload, n))
        node.write_file("/etc/pwx/config.json", "{}")
        arm(node, failpoint)
        pid = node.unit_property("pxhostd", "MainPID")
        result = pxhostctl(node, "uninstall", "--wipe", check=False)
        assert result.returncode != 0, f"{failpoint}: the daemon should have died"
        wait_for(
            lambda: node.unit_property("pxhostd", "MainPID"),
            lambda p, old=pid: p not in ("0", old),
            timeout=60,
            what=f"pxhostd to be restarted after {failpoint}",
        )
        wait_pxhostd(node)
        assert not node.exists("/etc/systemd/system/portworx.service"), failpoint
        assert not node.exists("/var/lib/pxhostd/applied.json"), failpoint
        assert not node.exists("/var/lib/pxhostd/journal.json"), failpoint
        assert not node.exists("/etc/pwx"), f"{failpoint}: the wipe was lost"
        assert node.run(["systemctl", "is-active", UNIT], check=False).stdout.strip() != "active"


def test_power_cut_mid_upgrade(installed_node: Node, tmp_path: Path) -> None:
    node = installed_node
    wait_pxhostd(node)
    v1 = build_payload(node, tmp_path, "v1", "1.0.0")
    slow = build_payload(node, tmp_path, "v2", "2.0.0", "--slow-start", "8")
    install(node, spec_for(v1, 0))
    node.write_file("/var/lib/pxtest/up.yaml", json.dumps(spec_for(slow, 1)))
    pxhostctl(node, "install", "--no-block", "--spec", "/var/lib/pxtest/up.yaml")
    wait_for(
        lambda: node.run(["cat", "/var/lib/pxhostd/journal.json"], check=False).stdout,
        lambda text: '"restart"' in text,
        timeout=60,
        what="the upgrade to reach its restart step",
    )
    node.power_cut()
    node.wait_active("pxhostd", timeout=120)
    wait_pxhostd(node)
    wait_for(
        lambda: node.run(["systemctl", "is-active", UNIT], check=False).stdout.strip(),
        lambda s: s == "active",
        timeout=90,
        what="portworx after the power cut",
    )
    assert_consistent(node, "1.0.0")
    assert payload_status(node)["version"] == "1.0.0"
