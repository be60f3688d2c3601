"""The packaged D-Bus policy, enforced by a real dbus-daemon with Debian's system bus rules.

A private bus reads /usr/share/dbus-1/system.conf (minus its socket, user and include
directories) plus the policy file from the built .deb. A stand-in service owns the name
as root; `busctl` calls it as root and as the unprivileged user nobody. The stand-in only
has to carry the method names: what is under test is which calls the bus lets through.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from pkgfiles import need_tools

NAME = "com.portworx.pxhostd1"
OBJECT = "/com/portworx/pxhostd1"
MANAGER = "com.portworx.pxhostd1.Manager"
TRANSACTION_OBJECT = "/com/portworx/pxhostd1/transaction/1"
TRANSACTION = "com.portworx.pxhostd1.Transaction"
PROPS = "org.freedesktop.DBus.Properties"
POLICY = "usr/share/dbus-1/system.d/com.portworx.pxhostd1.conf"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]

STAND_IN = r'''
import asyncio, sys
from dbus_fast import DBusError, PropertyAccess
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, dbus_property, method

class Manager(ServiceInterface):
    def __init__(self):
        super().__init__("com.portworx.pxhostd1.Manager")
    @method()
    def Status(self) -> "a{sv}":
        return {}
    @method()
    def GetSpec(self) -> "s":
        return ""
    @method()
    def History(self, limit: "u") -> "as":
        return []
    @method()
    def Install(self, spec: "s", options: "a{sv}") -> "o":
        return "/com/portworx/pxhostd1/transaction/1"
    @method()
    def Restart(self, options: "a{sv}") -> "o":
        return "/com/portworx/pxhostd1/transaction/1"
    @method()
    def Uninstall(self, options: "a{sv}") -> "o":
        return "/com/portworx/pxhostd1/transaction/1"
    @dbus_property(access=PropertyAccess.READWRITE)
    def State(self) -> "s":
        return "idle"
    @State.setter
    def State(self, value: "s"):
        pass

class Transaction(ServiceInterface):
    def __init__(self):
        super().__init__("com.portworx.pxhostd1.Transaction")
    @dbus_property(access=PropertyAccess.READ)
    def Operation(self) -> "s":
        return "install"
    @method()
    def Cancel(self):
        pass

async def main(address, mode):
    bus = await MessageBus(bus_address=address).connect()
    bus.export("/com/portworx/pxhostd1", Manager())
    bus.export("/com/portworx/pxhostd1/transaction/1", Transaction())
    try:
        await bus.request_name("com.portworx.pxhostd1")
    except DBusError as exc:
        print(exc.type, flush=True)
        sys.exit(3)
    print("owner", flush=True)
    if mode == "serve":
        await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2]))
'''


def bus_config(policy: Path, socket: Path) -> str:
    """Debian's system bus configuration, listening on `socket`, with only our policy."""
    tree = ET.parse("/usr/share/dbus-1/system.conf")
    config = tree.getroot()
    for tag in ("user", "fork", "pidfile", "syslog", "servicehelper",
                "standard_system_servicedirs", "listen", "include", "includedir"):
        for element in config.findall(tag):
            config.remove(element)
    ET.SubElement(config, "listen").text = f"unix:path={socket}"
    ET.SubElement(config, "include").text = str(policy)
    return ET.tostring(config, encoding="unicode")


@pytest.fixture(scope="module")
def bus(deb_root: Path) -> Iterator[str]:
    """Address of a private system-like bus where the stand-in owns the name as root."""
    need_tools("dbus-daemon", "busctl", "setpriv", "/usr/bin/python3")
    if os.geteuid() != 0:
        pytest.fail("the policy check needs root (to own the name, and to become nobody)",
                    pytrace=False)
    # Not pytest's tmp_path: nobody must be able to reach the socket.
    with tempfile.TemporaryDirectory(prefix="pxhostd-policy-") as scratch:
        directory = Path(scratch)
        directory.chmod(0o755)
        socket = directory / "bus"
        config = directory / "bus.conf"
        config.write_text(bus_config(deb_root / POLICY, socket))
        daemon = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        service = None
        try:
            address = daemon.stdout.readline().strip() if daemon.stdout else ""
            if not address:
                pytest.fail("dbus-daemon did not start", pytrace=False)
            service = subprocess.Popen(
                ["/usr/bin/python3", "-c", STAND_IN, address, "serve"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            first = service.stdout.readline().strip() if service.stdout else ""
            if first != "owner":
                pytest.fail(f"root could not own {NAME}: {first!r}", pytrace=False)
            yield address
        finally:
            for proc in (service, daemon):
                if proc is not None:
                    proc.terminate()
                    proc.communicate(timeout=10)  # reaps it and closes its pipes


def busctl(address: str, *argv: str, as_nobody: bool) -> subprocess.CompletedProcess[str]:
    command = ["busctl", f"--address={address}", "--timeout=10", "call", NAME, *argv]
    return subprocess.run((NOBODY if as_nobody else []) + command,
                          capture_output=True, text=True, check=False)


READS = {
    "Status": (OBJECT, MANAGER, "Status"),
    "GetSpec": (OBJECT, MANAGER, "GetSpec"),
    "History": (OBJECT, MANAGER, "History", "u", "5"),
    "Get": (OBJECT, PROPS, "Get", "ss", MANAGER, "State"),
    "GetAll": (OBJECT, PROPS, "GetAll", "s", MANAGER),
    "Introspect": (OBJECT, "org.freedesktop.DBus.Introspectable", "Introspect"),
    "Ping": (OBJECT, "org.freedesktop.DBus.Peer", "Ping"),
    "transaction Get": (TRANSACTION_OBJECT, PROPS, "Get", "ss", TRANSACTION, "Operation"),
    "transaction GetAll": (TRANSACTION_OBJECT, PROPS, "GetAll", "s", TRANSACTION),
}
WRITES = {
    "Install": (OBJECT, MANAGER, "Install", "sa{sv}", "service: portworx", "0"),
    "Restart": (OBJECT, MANAGER, "Restart", "a{sv}", "0"),
    "Uninstall": (OBJECT, MANAGER, "Uninstall", "a{sv}", "0"),
    "Set": (OBJECT, PROPS, "Set", "ssv", MANAGER, "State", "s", "x"),
    "transaction Cancel": (TRANSACTION_OBJECT, TRANSACTION, "Cancel"),
}


@pytest.mark.parametrize("call", READS.values(), ids=list(READS))
def test_anyone_may_read(bus: str, call: tuple[str, ...]) -> None:
    result = busctl(bus, *call, as_nobody=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("call", WRITES.values(), ids=list(WRITES))
def test_only_root_may_change_state(bus: str, call: tuple[str, ...]) -> None:
    refused = busctl(bus, *call, as_nobody=True)
    assert refused.returncode != 0
    assert "Access denied" in refused.stderr, refused.stderr
    allowed = busctl(bus, *call, as_nobody=False)
    assert allowed.returncode == 0, allowed.stderr


def test_nobody_else_may_own_the_name(bus: str) -> None:
    attempt = subprocess.run(
        [*NOBODY, "/usr/bin/python3", "-c", STAND_IN, bus, "own"],
        capture_output=True, text=True, check=False, timeout=30,
    )
    assert attempt.stdout.strip() == "org.freedesktop.DBus.Error.AccessDenied", (
        attempt.stdout + attempt.stderr
    )
