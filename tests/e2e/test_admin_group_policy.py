"""The optional `pxhostd-admin` bus policy (docs/swarm.md, "Least privilege").

On a booted node with the .deb installed, the real system bus decides: a non-root user is
refused pxhostd's mutating methods; being in the `pxhostd-admin` group changes nothing
while the shipped policy is not enabled (off by default); once an administrator installs
it into /etc/dbus-1/system.d, the group's members get pxhostd's methods and nothing else:
not the name, not systemd's own methods.
"""

from __future__ import annotations

from nodeharness import Node

POLICY_SRC = "/usr/share/pxhostd/dbus/pxhostd-admin-group.conf"
POLICY_DST = "/etc/dbus-1/system.d/pxhostd-admin-group.conf"
RESTART = ["busctl", "call", "com.portworx.pxhostd1", "/com/portworx/pxhostd1",
           "com.portworx.pxhostd1.Manager", "Restart", "a{sv}", "0"]
START_UNIT = ["busctl", "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
              "org.freedesktop.systemd1.Manager", "StartUnit", "ss", "pxhostd.service",
              "replace"]
OWN_NAME = ["python3", "-c", """
import asyncio
from dbus_fast import BusType
from dbus_fast.aio import MessageBus
async def main():
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        print(await bus.request_name("com.portworx.pxhostd1"))
    except Exception as exc:
        print("refused:", exc)
asyncio.run(main())
"""]


def as_pxuser(node: Node, argv: list[str]) -> str:
    result = node.run(argv, user="pxuser", check=False)
    return result.stdout + result.stderr


def test_group_policy_is_off_by_default_and_grants_only_pxhostd(installed_node: Node) -> None:
    node = installed_node
    assert "Access denied" in as_pxuser(node, RESTART)
    node.run(["groupadd", "--system", "pxhostd-admin"])
    node.run(["usermod", "--append", "--groups", "pxhostd-admin", "pxuser"])
    assert "pxhostd-admin" in node.run(["id", "-nG", "pxuser"]).stdout
    # Shipped, not enabled: membership alone grants nothing.
    assert node.exists(POLICY_SRC)
    assert "Access denied" in as_pxuser(node, RESTART)

    node.run(["install", "-m", "0644", POLICY_SRC, POLICY_DST])
    node.systemctl("reload", "dbus")
    answer = as_pxuser(node, RESTART)
    # Through the bus policy to pxhostd itself, which answers (nothing installed here).
    assert "Access denied" not in answer
    assert "NotInstalled" in answer or answer.startswith("o ")
    # Nothing else: not pxhostd's name, not systemd's mutating methods.
    assert "refused:" in as_pxuser(node, OWN_NAME)
    start = as_pxuser(node, START_UNIT)
    assert "Access denied" in start or "Interactive authentication required" in start
    # A user outside the group is still refused.
    node.run(["gpasswd", "--delete", "pxuser", "pxhostd-admin"])
    assert "Access denied" in as_pxuser(node, RESTART)
