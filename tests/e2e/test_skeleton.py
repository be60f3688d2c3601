"""Walking skeleton, end to end: pxhostd installed from its .deb on a booted Debian 12 node
runs as a real systemd service, answers on the system bus, survives restart, reload and
kill -9, keeps its bus name to root, and pxhostctl reports clearly when it is down."""

from __future__ import annotations

import json
import re
import textwrap
from typing import Any

from nodeharness import Node, wait_for

BUS_NAME = "com.portworx.pxhostd1"
OBJECT = "/com/portworx/pxhostd1"
IFACE = "com.portworx.pxhostd1.Manager"
#: pxhostctl's documented exit code for "pxhostd is not running".
EXIT_UNAVAILABLE = 3
#: Bound for systemd bringing pxhostd back (RestartSec=1s plus start-up).
RESTART_TIMEOUT = 60.0


def busctl_json(node: Node, *args: str, user: str | None = None) -> Any:
    res = node.run(["busctl", "--json=short", *args], user=user)
    return json.loads(res.stdout)


def main_pid(node: Node) -> int:
    return int(node.unit_property("pxhostd", "MainPID"))


def test_installed_daemon_is_active_and_shows_its_status_line(installed_node: Node) -> None:
    node = installed_node
    assert node.run(["systemctl", "is-active", "pxhostd"]).stdout.strip() == "active"
    assert node.run(["systemctl", "is-enabled", "pxhostd"]).stdout.strip() == "enabled"
    status = node.run(["systemctl", "status", "--no-pager", "pxhostd"]).stdout
    match = re.search(r"^\s*Status: \"(.+)\"$", status, re.MULTILINE)
    assert match, status
    assert "pxhostd" in match.group(1)
    assert node.unit_property("pxhostd", "StatusText") == match.group(1)


def test_status_and_properties_answer_on_the_system_bus(installed_node: Node) -> None:
    node = installed_node
    reply = busctl_json(node, "call", BUS_NAME, OBJECT, IFACE, "Status")
    assert reply["type"] == "a{sv}"
    status = {key: value["data"] for key, value in reply["data"][0].items()}
    assert status["pid"] == main_pid(node)

    version = busctl_json(node, "get-property", BUS_NAME, OBJECT, IFACE, "Version")
    state = busctl_json(node, "get-property", BUS_NAME, OBJECT, IFACE, "State")
    assert version["type"] == "s" and state["type"] == "s"
    assert version["data"] == status["daemon_version"]
    deb_version = node.run(["dpkg-query", "-W", "-f", "${Version}", "pxhostd"]).stdout
    assert deb_version.startswith(version["data"])
    # Ready and nothing to do: idle.
    assert state["data"] == status["state"] == "idle"

    # Reading is open to everyone.
    as_user = busctl_json(node, "call", BUS_NAME, OBJECT, IFACE, "Status", user="pxuser")
    assert as_user["type"] == "a{sv}"


def test_pxhostctl_status_human_and_json(installed_node: Node) -> None:
    node = installed_node
    human = node.run(["pxhostctl", "status"], check=False)
    assert human.returncode == 6, "nothing installed yet: status says so by its exit code"
    assert re.search(r"^state:\s+idle$", human.stdout, re.MULTILINE), human.stdout
    assert human.stderr == ""
    parsed = json.loads(node.run(["pxhostctl", "status", "--json"], check=False).stdout)
    version = busctl_json(node, "get-property", BUS_NAME, OBJECT, IFACE, "Version")["data"]
    assert parsed["daemon_version"] == version
    assert parsed["state"] == "idle"
    # The same for a user without rights.
    as_user = json.loads(
        node.run(["pxhostctl", "status", "--json"], user="pxuser", check=False).stdout
    )
    assert as_user["state"] == "idle"


def test_restart_and_reload_come_back_ready(installed_node: Node) -> None:
    node = installed_node
    before = main_pid(node)
    node.run(["systemctl", "restart", "pxhostd"])  # returns once READY=1 arrived
    assert node.run(["systemctl", "is-active", "pxhostd"]).stdout.strip() == "active"
    restarted = main_pid(node)
    assert restarted not in (0, before)

    node.run(["systemctl", "reload", "pxhostd"])
    node.wait_active("pxhostd")
    assert main_pid(node) == restarted  # a reload keeps the process
    assert node.unit_property("pxhostd", "NRestarts") == "0"
    assert node.run(["pxhostctl", "status", "--json"], check=False).stdout


def test_killed_daemon_is_restarted_by_systemd(installed_node: Node) -> None:
    node = installed_node
    victim = main_pid(node)
    node.run(["kill", "-9", str(victim)])
    wait_for(
        lambda: (main_pid(node), node.run(["systemctl", "is-active", "pxhostd"], check=False)),
        lambda seen: seen[0] not in (0, victim) and seen[1].stdout.strip() == "active",
        timeout=RESTART_TIMEOUT,
        what="systemd to restart pxhostd after kill -9",
    )
    assert int(node.unit_property("pxhostd", "NRestarts")) >= 1
    status = node.run(["pxhostctl", "status", "--json"], check=False).stdout
    assert json.loads(status)["state"] == "idle"


_REQUEST_NAME = textwrap.dedent(f"""\
    import asyncio, sys
    from dbus_fast import BusType
    from dbus_fast.aio import MessageBus
    from dbus_fast.errors import DBusError

    async def main() -> int:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            reply = await bus.request_name("{BUS_NAME}")
        except DBusError as exc:
            print(exc.type)
            return 1
        print("granted", reply)
        return 0

    sys.exit(asyncio.run(main()))
    """)


def test_only_root_may_own_the_bus_name(installed_node: Node) -> None:
    node = installed_node
    node.write_file("/var/lib/pxtest/request_name.py", _REQUEST_NAME)
    argv = ["python3", "/var/lib/pxtest/request_name.py"]
    denied = "org.freedesktop.DBus.Error.AccessDenied"

    taken = node.run(argv, user="pxuser", check=False)
    assert (taken.returncode, taken.stdout.strip()) == (1, denied), taken

    # Also while the name is free: the refusal is the bus policy, not a queue.
    node.run(["systemctl", "stop", "pxhostd"])
    free = node.run(argv, user="pxuser", check=False)
    assert (free.returncode, free.stdout.strip()) == (1, denied), free

    # Changing anything is root's: a user's Install is refused by the bus itself.
    node.run(["systemctl", "start", "pxhostd"])
    install = node.run(
        ["busctl", "call", BUS_NAME, OBJECT, IFACE, "Install", "a{sv}a{sv}", "0", "0"],
        user="pxuser",
        check=False,
    )
    assert install.returncode != 0
    assert "Access denied" in install.stderr, install.stderr


def test_pxhostctl_status_when_daemon_is_stopped(installed_node: Node) -> None:
    node = installed_node
    node.run(["systemctl", "stop", "pxhostd"])
    assert node.run(["systemctl", "is-active", "pxhostd"], check=False).stdout.strip() != "active"
    for user in (None, "pxuser"):
        res = node.run(["pxhostctl", "status"], check=False, user=user)
        assert res.returncode == EXIT_UNAVAILABLE, res
        assert res.stdout == ""
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert "not running" in lines[0]
        assert "Traceback" not in res.stderr
