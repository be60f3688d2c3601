"""The .deb's lifecycle on a booted Debian 12 node: install -> upgrade -> remove -> purge.

A stand-in portworx.service (written by hand, as an installed Portworx would leave it)
runs before pxhostd arrives; at every step it must stay active with the same
InvocationID, and /etc/pwx and /opt/pwx must stay. pxhostd's own state follows the
rules in docs/packaging.md. (The same sequence with Portworx installed by pxhostd itself
belongs with the engine's end-to-end tests.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from nodeharness import Node

pytestmark = pytest.mark.node

STAND_IN = """\
[Unit]
Description=stand-in for the storage service
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
"""
PXHOSTD_OWN = ("/etc/pxhostd", "/var/lib/pxhostd", "/run/pxhostd")
NOT_PXHOSTDS = ("/etc/pwx/config.json", "/opt/pwx/marker", "/etc/systemd/system/portworx.service")


@pytest.fixture
def node(node_root: Path) -> Iterator[Node]:
    with Node(node_root) as booted:
        yield booted


def invocation(node: Node, unit: str) -> tuple[str, str]:
    return (node.run(["systemctl", "is-active", unit], check=False).stdout.strip(),
            node.unit_property(unit, "InvocationID"))


def test_install_upgrade_remove_purge_leave_the_storage_service_alone(
    node: Node, deb_file: Path, upgrade_deb_file: Path
) -> None:
    node.write_file("/etc/systemd/system/portworx.service", STAND_IN)
    node.write_file("/etc/pwx/config.json", "{}\n")
    node.write_file("/opt/pwx/marker", "kept\n")
    node.systemctl("enable", "--now", "portworx.service")
    storage = invocation(node, "portworx.service")
    assert storage[0] == "active"

    node.install_deb(deb_file)
    node.wait_active("pxhostd.service")
    assert node.systemctl("is-enabled", "pxhostd.service").stdout.strip() == "enabled"
    assert invocation(node, "portworx.service") == storage
    assert not node.run("find /usr/share/pxhostd -name __pycache__").stdout
    first = invocation(node, "pxhostd.service")

    node.install_deb(upgrade_deb_file)
    node.wait_active("pxhostd.service")
    upgraded = invocation(node, "pxhostd.service")
    assert upgraded[1] != first[1], "the upgrade did not restart pxhostd"
    assert invocation(node, "portworx.service") == storage

    node.run(["dpkg", "--remove", "pxhostd"])
    assert invocation(node, "pxhostd.service")[0] == "inactive"
    assert invocation(node, "portworx.service") == storage
    assert node.exists("/etc/pxhostd/pxhostd.conf"), "remove must keep the conffile"
    assert node.exists("/var/lib/pxhostd"), "remove must keep pxhostd's state"

    node.run(["dpkg", "--purge", "pxhostd"])
    assert [p for p in PXHOSTD_OWN if node.exists(p)] == []
    assert [p for p in NOT_PXHOSTDS if not node.exists(p)] == []
    assert invocation(node, "portworx.service") == storage


def test_lifecycle_with_portworx_installed_by_pxhostd(
    node: Node, deb_file: Path, upgrade_deb_file: Path, tmp_path: Path
) -> None:
    """The same sequence, with the service installed the real way: through pxhostctl."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
    from pxnode import build_payload, pxhostctl, wait_pxhostd, write_spec

    node.install_deb(deb_file)
    wait_pxhostd(node)
    payload = build_payload(node, tmp_path, "v1", "1.0.0")
    write_spec(node, {"payload": payload, "args": ["-c", "lifecycle"]})
    assert "installed 1.0.0" in pxhostctl(node, "reconcile").stdout
    storage = invocation(node, "portworx.service")
    assert storage[0] == "active"

    node.install_deb(upgrade_deb_file)
    wait_pxhostd(node)  # its start-up reconcile of the spec file is a no-op
    assert invocation(node, "portworx.service") == storage
    status = json.loads(pxhostctl(node, "status", "--json").stdout)
    assert "+" in status["daemon_version"], "the upgraded daemon answers"
    assert status["installed"] is True and status["payload_version"] == "1.0.0"
    assert "nothing to do" in pxhostctl(node, "reconcile").stdout

    node.run(["dpkg", "--remove", "pxhostd"])
    assert invocation(node, "pxhostd.service")[0] == "inactive"
    assert invocation(node, "portworx.service") == storage

    node.run(["dpkg", "--purge", "pxhostd"])
    assert [p for p in PXHOSTD_OWN if node.exists(p)] == []
    assert invocation(node, "portworx.service") == storage
    assert node.exists("/etc/pwx/config.json"), "purge never touches /etc/pwx"
    assert node.exists("/opt/pwx/releases/current"), "purge never touches the releases"
