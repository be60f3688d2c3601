"""Losing the bus mid-upgrade is not the user's failed operation, on a real node.

pxhostd's own bus connection is cut for real in the middle of an upgrade (its socket to
dbus-daemon shut down from outside, tests/e2e/nodeside/drop_bus.py; the bus daemon and
everyone else stay connected): pxhostd exits, systemd restarts it, recovery rolls the
upgrade back, and the history's one entry for it says that pxhostd lost its D-Bus
connection. The same with `systemctl kill --kill-whom=main -s SIGKILL pxhostd`, where it cannot say
why: the entry says it restarted during the transaction.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nodeharness import REPO_ROOT, Node, wait_for
from pxnode import assert_consistent, build_payload, install, pxhostctl, wait_pxhostd

DROP_SRC = REPO_ROOT / "tests" / "e2e" / "nodeside" / "drop_bus.py"
DROP = "/var/lib/pxtest/drop_bus.py"
LOST_BUS = "pxhostd lost its D-Bus connection during the transaction"
RESTARTED = "pxhostd restarted during the transaction (it was killed or crashed)"


def spec_for(payload: str, n: int) -> dict[str, object]:
    return {"payload": payload, "args": ["-c", "busloss"], "env": {"STEP": str(n)}}


def upgrade_until_restart_step(node: Node, payload: str, n: int, txid: str) -> str:
    """Start an upgrade (not waiting for it) and wait until it restarts the service."""
    node.write_file("/var/lib/pxtest/up.yaml", json.dumps(spec_for(payload, n)))
    pxhostctl(node, "install", "--no-block", "--id", txid, "--spec", "/var/lib/pxtest/up.yaml")
    wait_for(
        lambda: node.run(["cat", "/var/lib/pxhostd/journal.json"], check=False).stdout,
        lambda text: '"restart"' in text,
        timeout=60,
        what=f"upgrade {txid} to reach its restart step",
    )
    return node.unit_property("pxhostd.service", "MainPID")


def entries_of(node: Node, txid: str) -> list[dict[str, Any]]:
    out = pxhostctl(node, "history", "--json", "--limit", "50").stdout
    doc = json.loads(out)
    items = doc["entries"] if isinstance(doc, dict) else doc
    return [e for e in items if e["txid"] == txid]


def restarted_and_recovered(node: Node, old_pid: str) -> None:
    wait_for(
        lambda: node.unit_property("pxhostd.service", "MainPID"),
        lambda pid: pid not in ("0", old_pid),
        timeout=90,
        what="systemd to restart pxhostd",
    )
    wait_pxhostd(node)


def test_a_lost_bus_connection_mid_upgrade_is_rolled_back_and_the_history_says_why(
    installed_node: Node, tmp_path: Path
) -> None:
    node = installed_node
    wait_pxhostd(node)
    node.run(["mkdir", "-p", "/var/lib/pxtest"])
    node.copy_in(DROP_SRC, DROP, mode=0o755)
    v1 = build_payload(node, tmp_path, "v1", "1.0.0")
    slow = build_payload(node, tmp_path, "v2", "2.0.0", "--slow-start", "8")
    slow3 = build_payload(node, tmp_path, "v3", "3.0.0", "--slow-start", "8")
    install(node, spec_for(v1, 0))
    restarts = int(node.unit_property("pxhostd.service", "NRestarts"))

    pid = upgrade_until_restart_step(node, slow, 1, "cut-bus")
    cut = node.run(["python3", DROP, pid])
    assert cut.stdout.strip().isdigit(), cut.stdout + cut.stderr
    restarted_and_recovered(node, pid)
    assert int(node.unit_property("pxhostd.service", "NRestarts")) == restarts + 1
    assert "lost the bus connection" in node.journal("pxhostd.service")
    assert_consistent(node, "1.0.0")
    entries = entries_of(node, "cut-bus")
    assert len(entries) == 1, entries  # no "failed" entry beside the recovery's
    (entry,) = entries
    assert entry["result"] == "rolled-back", entry
    assert entry["error"] == "Interrupted", entry
    assert entry["operation"] == "upgrade", entry
    assert LOST_BUS in entry["message"] and "rolled it back" in entry["message"], entry
    assert (entry["version_before"], entry["version_after"]) == ("1.0.0", "1.0.0"), entry
    assert not node.exists("/var/lib/pxhostd/interrupted.json")

    # The same upgrade again completes: nothing of the interrupted one is in the way.
    install(node, spec_for(slow, 2))
    assert_consistent(node, "2.0.0")

    # Killed, pxhostd cannot say why: the history says it restarted.
    pid = upgrade_until_restart_step(node, slow3, 3, "killed")
    node.systemctl("kill", "--kill-whom=main", "-s", "SIGKILL", "pxhostd")
    restarted_and_recovered(node, pid)
    assert_consistent(node, "2.0.0")
    (entry,) = entries_of(node, "killed")
    assert entry["result"] == "rolled-back" and entry["error"] == "Interrupted", entry
    assert RESTARTED in entry["message"], entry
    assert LOST_BUS not in entry["message"], entry
