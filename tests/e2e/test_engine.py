"""Issue: idempotent install, upgrade, restart, rollback and crash recovery, on a real node.

Everything here runs against the node's own systemd over its system bus, with the .deb
installed and the demo payload (a real program that serves :9001 and notifies systemd).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nodeharness import Node, wait_for
from pxnode import (
    ENV_FILE,
    RELEASES,
    SPEC_FILE,
    UNIT,
    UNIT_FILE,
    assert_consistent,
    build_payload,
    current_release,
    install,
    invocation,
    mtime,
    payload_status,
    pxhostctl,
    releases,
    service_env,
    temp_files,
    wait_pxhostd,
    write_spec,
)

PODS = "/var/lib/kubelet/pods"
NASTY_VALUE = 'a "quoted" \\path $HOME `cmd` 50% %i grüße'



def base_spec(payload: str, **extra: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "payload": payload,
        "args": ["-c", "cluster-e2e"],
        "env": {"PX_TEST": "one", "PX_NASTY": NASTY_VALUE},
        "mounts": ["/var/lib/pxtest/data:/var/lib/pxtest/data"],
    }
    spec.update(extra)
    return spec


@pytest.fixture
def ready_node(installed_node: Node) -> Node:
    installed_node.run(["mkdir", "-p", "/var/lib/pxtest/data", f"{PODS}/abc/volumes"])
    wait_pxhostd(installed_node)
    return installed_node


def test_install_noop_env_change_and_pod_mounts(ready_node: Node, tmp_path: Path) -> None:
    node = ready_node
    v1 = build_payload(node, tmp_path, "v1", "1.0.0")
    first = install(node, base_spec(v1), "--id", "first-install-42")
    assert "installed 1.0.0" in first.stdout
    # The caller's transaction id is a structured journal field of every record it caused.
    tagged = node.run(["journalctl", "-o", "cat", "PXHOSTD_TXID=first-install-42"]).stdout
    assert "install started, requested by uid 0 via pxhostctl" in tagged
    assert "install portworx - -> 1.0.0: done; started: first install" in tagged
    applied = pxhostctl(node, "get-spec").stdout
    assert f"payload: {v1}" in applied and "PX_TEST: one" in applied
    assert node.systemctl("is-enabled", UNIT).stdout.strip() == "enabled"
    node.wait_active(UNIT)
    status = node.systemctl("status", UNIT, check=False).stdout
    assert 'Status: "pxdemo 1.0.0' in status
    assert payload_status(node)["version"] == "1.0.0"

    # The environment (maybe secrets) is in a root-only file, not in the world-readable
    # unit nor in systemd's public Environment property; the service gets it exactly.
    assert node.run(["stat", "-c", "%a %U", ENV_FILE]).stdout.split() == ["600", "root"]
    assert "PX_TEST" not in node.read_file(UNIT_FILE)
    assert "PX_TEST" not in node.unit_property(UNIT, "Environment")
    assert node.run(["cat", ENV_FILE], user="pxuser", check=False).returncode != 0
    assert service_env(node)["PX_NASTY"] == NASTY_VALUE

    # The same spec again: no restart, no file rewritten, explicitly "nothing to do".
    inv = invocation(node)
    unit_mtime = mtime(node, UNIT_FILE)
    applied_mtime = mtime(node, "/var/lib/pxhostd/applied.json")
    again = install(node, base_spec(v1))
    assert "nothing to do" in again.stdout
    assert invocation(node) == inv
    assert mtime(node, UNIT_FILE) == unit_mtime
    assert mtime(node, "/var/lib/pxhostd/applied.json") == applied_mtime

    # An env change: exactly one restart.
    starts_before = node.journal(UNIT).count("Started")
    changed = install(node, base_spec(v1, env={"PX_TEST": "two", "PX_NASTY": NASTY_VALUE}))
    assert "reconfigured" in changed.stdout
    assert invocation(node) != inv
    assert node.journal(UNIT).count("Started") == starts_before + 1
    assert service_env(node)["PX_TEST"] == "two"

    # A mount change only under the kubelet pods dir: unit updated, no restart.
    inv = invocation(node)
    pods_mount = f"{PODS}/abc/volumes:{PODS}/abc/volumes"
    spec = base_spec(v1, env={"PX_TEST": "two", "PX_NASTY": NASTY_VALUE})
    spec["mounts"] = [*spec["mounts"], pods_mount]  # type: ignore[list-item]
    result = install(node, spec)
    assert "no restart needed" in result.stdout
    assert invocation(node) == inv
    assert f"{PODS}/abc/volumes" in node.read_file(UNIT_FILE)


def test_upgrade_then_broken_release_rolls_back(ready_node: Node, tmp_path: Path) -> None:
    node = ready_node
    v1 = build_payload(node, tmp_path, "v1", "1.0.0")
    v2 = build_payload(node, tmp_path, "v2", "2.0.0")
    v3 = build_payload(node, tmp_path, "v3", "3.0.0", "--broken")
    install(node, base_spec(v1))
    release_v1 = current_release(node)
    up = install(node, base_spec(v2))
    assert "upgraded to 2.0.0" in up.stdout
    assert payload_status(node)["version"] == "2.0.0"
    release_v2 = current_release(node)
    assert release_v1 in releases(node), "the previous release is kept for rollback"

    inv = invocation(node)
    broken = install(node, base_spec(v3), check=False)
    assert broken.returncode == 7, broken.stdout + broken.stderr
    assert "3.0.0 did not become active" in broken.stderr
    assert "rolled back to 2.0.0" in broken.stderr
    assert "pxdemo" in broken.stderr, "the reason quotes the failing unit's log"
    assert current_release(node) == release_v2
    assert node.systemctl("is-active", UNIT, check=False).stdout.strip() == "active"
    assert invocation(node) != inv  # v2 was restarted after the failed switch
    assert payload_status(node)["version"] == "2.0.0"
    assert all(not r.startswith("3.0.0") for r in releases(node))
    history = json.loads(pxhostctl(node, "history", "--json").stdout)
    assert history[0]["result"] == "rolled-back"
    assert_consistent(node, "2.0.0")


BAD_SPECS: list[tuple[str, dict[str, object], str]] = [
    ("relative payload", {"payload": "relative/dir"}, "payload"),
    ("traversal", {"payload": "/var/lib/../etc"}, "payload"),
    ("newline in arg", {"payload": "/p", "args": ["a\nb"]}, "args"),
    ("NUL in env", {"payload": "/p", "env": {"A": "x\x00y"}}, "env"),
    ("bad env name", {"payload": "/p", "env": {"1BAD": "x"}}, "env"),
    ("percent in mount", {"payload": "/p", "mounts": ["/a%n:/b"]}, "mounts"),
    ("quote in mount", {"payload": "/p", "mounts": ['/a":/b']}, "mounts"),
    ("bad mount option", {"payload": "/p", "mounts": ["/a:/b:exec"]}, "mounts"),
    ("unknown key", {"payload": "/p", "bogus": 1}, "bogus"),
    ("wrong type", {"payload": "/p", "args": "not-a-list"}, "args"),
    ("service name", {"payload": "/p", "service": "px/../x"}, "service"),
]


def test_bad_specs_are_named_errors_and_write_nothing(ready_node: Node, tmp_path: Path) -> None:
    node = ready_node
    before = node.run(
        "find /etc/systemd/system /opt/pwx /var/lib/pxhostd -newer /etc/hostname"
        " 2>/dev/null | sort",
        check=False,
    ).stdout
    for label, spec, field in BAD_SPECS:
        result = install(node, spec, check=False)
        assert result.returncode == 2, f"{label}: {result.stderr}"
        assert field in result.stderr, f"{label}: {result.stderr}"
        assert "Traceback" not in result.stderr
    missing = install(node, {"payload": "/var/lib/pxtest/nowhere"}, check=False)
    assert missing.returncode == 2 and "payload" in missing.stderr
    after = node.run(
        "find /etc/systemd/system /opt/pwx /var/lib/pxhostd -newer /etc/hostname"
        " 2>/dev/null | sort",
        check=False,
    ).stdout
    assert [line for line in after.splitlines() if "history" not in line] == [
        line for line in before.splitlines() if "history" not in line
    ]
    assert node.systemctl("is-active", "pxhostd").stdout.strip() == "active"
    assert not node.exists(UNIT_FILE)


def test_tampered_payload_is_refused(ready_node: Node, tmp_path: Path) -> None:
    node = ready_node
    v1 = build_payload(node, tmp_path, "v1", "1.0.0")
    node.run(["sh", "-c", f"echo '# tampered' >> {v1}/pxdemo"])
    result = install(node, base_spec(v1), check=False)
    assert result.returncode == 2, result.stderr
    assert "sha256" in result.stderr
    assert not node.exists(UNIT_FILE)
    assert releases(node) == []


def test_spec_file_reload_reboot_and_uninstall(ready_node: Node, tmp_path: Path) -> None:
    node = ready_node
    v1 = build_payload(node, tmp_path, "v1", "1.0.0")
    write_spec(node, base_spec(v1))
    node.systemctl("reload", "pxhostd")
    wait_for(
        lambda: node.run(["systemctl", "is-active", UNIT], check=False).stdout.strip(),
        lambda s: s == "active",
        timeout=90,
        what="portworx from the spec file",
    )
    wait_pxhostd(node)
    node.reboot()
    node.wait_active(UNIT, timeout=120)
    wait_pxhostd(node)
    assert_consistent(node, "1.0.0")

    node.run(["rm", SPEC_FILE])
    node.write_file("/etc/pwx/keep-me", "x")
    out = pxhostctl(node, "uninstall").stdout
    assert "uninstalled portworx" in out
    assert not node.exists(UNIT_FILE)
    assert releases(node) == [] and not node.exists(f"{RELEASES}/current")
    assert node.systemctl("is-active", UNIT, check=False).stdout.strip() != "active"
    assert node.exists("/etc/pwx/keep-me"), "uninstall keeps /etc/pwx unless wiped"
    again = pxhostctl(node, "uninstall")
    assert "nothing to do" in again.stdout
    gone = pxhostctl(node, "status", "--json", check=False)
    assert gone.returncode == 6 and json.loads(gone.stdout)["installed"] is False
    assert temp_files(node) == []
