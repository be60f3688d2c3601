"""pxhostctl as an operator uses it, on a booted node: plan before apply, rollback,
re-attach with watch, the journal lines, status and its exit codes, honest output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from nodeharness import Node
from pxnode import (
    ENV_FILE,
    UNIT,
    UNIT_FILE,
    build_payload,
    current_release,
    install,
    invocation,
    mtime,
    payload_status,
    pxhostctl,
    wait_pxhostd,
    write_spec,
)

SPEC = "/var/lib/pxtest/spec.yaml"
APPLIED = "/var/lib/pxhostd/applied.json"


def spec(payload: str, value: str = "one") -> dict[str, object]:
    return {"payload": payload, "args": ["-c", "cluster-op"], "env": {"PX_TEST": value}}


@pytest.fixture
def ready_node(installed_node: Node) -> Node:
    wait_pxhostd(installed_node)
    return installed_node


def facts(node: Node) -> tuple[str, ...]:
    """What a plan must not change: the service's invocation and the files' mtimes."""
    return (invocation(node), *(mtime(node, p) for p in (UNIT_FILE, ENV_FILE, APPLIED)))


def journal(node: Node, *args: str) -> str:
    return str(node.run(["journalctl", "-u", "pxhostd", "--no-pager", "-o", "cat", *args]).stdout)


def test_plan_rollback_watch_journal_status(ready_node: Node, tmp_path: Path) -> None:
    node = ready_node
    v1 = build_payload(node, tmp_path, "v1", "1.0.0")
    v2 = build_payload(node, tmp_path, "v2", "2.0.0")
    broken = build_payload(node, tmp_path, "v3", "3.0.0", "--broken")
    assert pxhostctl(node, "rollback", check=False).returncode == 6  # nothing installed
    install(node, spec(v1), "--id", "op-install")

    # The unit documents itself.
    assert node.run(["systemctl", "show", "-p", "Documentation", "--value", UNIT]).stdout.strip()

    # plan for an env change: names the variable, says restart and why, changes nothing.
    before = facts(node)
    write_spec(node, spec(v1, "two"), SPEC)
    plan = pxhostctl(node, "plan", "--spec", SPEC, check=False)
    assert plan.returncode == 10, plan
    assert "env PX_TEST changed" in plan.stdout
    assert "service: restart (env PX_TEST changed)" in plan.stdout
    dry = pxhostctl(node, "--json", "install", "--dry-run", "--spec", SPEC, check=False)
    assert dry.returncode == 10
    assert json.loads(dry.stdout)["service_action"] == "restart"
    assert json.loads(dry.stdout)["reasons"] == ["env PX_TEST changed"]
    assert facts(node) == before, "plan changed the host"

    # plan for the same spec: nothing to do, exit 0.
    write_spec(node, spec(v1), SPEC)
    same = pxhostctl(node, "plan", "--spec", SPEC)
    assert same.stdout.startswith("nothing to do"), same.stdout

    # A duplicate key is refused before anything reaches the daemon.
    node.write_file("/var/lib/pxtest/twice.yaml", f"payload: {v1}\npayload: {v2}\n")
    twice = pxhostctl(node, "install", "--spec", "/var/lib/pxtest/twice.yaml", check=False)
    assert twice.returncode == 2 and "duplicate key 'payload'" in twice.stderr

    # Upgrade; the result and the journal say what changed and why it restarted.
    up = install(node, spec(v2), "--id", "op-upgrade")
    assert "upgraded to 2.0.0 (restarted: payload changed (1.0.0 -> 2.0.0))" in up.stdout
    status = json.loads(pxhostctl(node, "--json", "status").stdout)
    assert status["previous_version"] == "1.0.0" and status["previous_release"]
    lines = journal(node, "PXHOSTD_TXID=op-upgrade")
    assert "upgrade portworx 1.0.0 -> 2.0.0: done; restarted: payload changed" in lines
    assert "requested by uid 0 via pxhostctl" in lines and "(txid op-upgrade)" in lines
    assert "/transaction/" not in lines and "pxhostd.bus" not in lines

    # rollback brings 1.0.0 back; a downgrade is not called an upgrade.
    back = pxhostctl(node, "rollback", "--id", "op-back")
    assert "rolled back to 1.0.0 (from 2.0.0)" in back.stdout, back.stdout
    assert payload_status(node)["version"] == "1.0.0"
    status = json.loads(pxhostctl(node, "--json", "status").stdout)
    assert status["payload_version"] == "1.0.0" and status["previous_version"] == "2.0.0"
    warnings = journal(node, "-p", "warning")
    assert "rollback portworx 2.0.0 -> 1.0.0: done; restarted: payload changed" in warnings

    # --no-block, then watch --id: ends with the install's own exit code (7: rolled back).
    txid = pxhostctl(node, "install", "--no-block", "--spec",
                     write_spec(node, spec(broken), SPEC), "--id", "op-broken").stdout.strip()
    assert txid == "op-broken"
    watched = pxhostctl(node, "watch", "--id", txid, check=False)
    assert watched.returncode == 7, watched
    assert "did not become active" in watched.stderr
    warnings = journal(node, "-p", "warning")
    assert "failed, RolledBack: 3.0.0 did not become active" in warnings
    assert "restart reason: payload changed (1.0.0 -> 3.0.0)" in warnings
    assert payload_status(node)["version"] == "1.0.0"

    # History is JSON with the common keys; status is scriptable and quiet in a pipe.
    history = json.loads(pxhostctl(node, "--json", "history").stdout)
    assert [e["txid"] for e in history[:3]] == ["op-broken", "op-back", "op-upgrade"]
    assert history[0]["result"] == "rolled-back" and history[1]["operation"] == "rollback"
    piped = node.run(["bash", "-c", "set -o pipefail; pxhostctl status | head -1"],
                     check=False)
    assert piped.returncode == 0 and "Traceback" not in piped.stderr, piped
    assert pxhostctl(node, "status", "-q").stdout == ""

    # Holds and enablement show in status; stopped on request still counts as specified.
    pxhostctl(node, "stop")
    pxhostctl(node, "disable")
    text = pxhostctl(node, "status").stdout
    assert "stopped (until start or restart)" in text and "disabled at boot" in text
    assert re.search(r"^enabled:\s+disabled$", text, re.MULTILINE), text
    assert pxhostctl(node, "status", "-q", check=False).returncode == 0  # stopped as asked
    # This test starts the service many times within systemd's StartLimitIntervalSec=;
    # clear the rate limit as an operator would, so `start` tests pxhostd, not the limit.
    node.run(["systemctl", "reset-failed", UNIT], check=False)
    pxhostctl(node, "start")
    node.run(["systemctl", "stop", UNIT])  # behind pxhostd's back: not as specified
    down = pxhostctl(node, "status", check=False)
    assert down.returncode == 9, down
    assert current_release(node) == status["release"]
