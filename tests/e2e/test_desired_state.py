"""One desired state, faults that roll back, units pxhostd does not own: on a booted node.

- v1 from the spec file, then `pxhostctl install --spec v2`: a daemon restart, a package
  reinstall and a reload with the file unchanged all leave v2 running on the same
  invocation; after a reboot v2 runs, started once, by systemd.
- A payload with a wrong sha256, a full filesystem under /opt/pwx, a read-only
  /etc/systemd/system, a failure right after daemon-reload: a named error, the running
  service untouched, no journal left, and the next good install succeeds with the same
  pxhostd PID.
- An administrator's own unit of the same name is refused and left byte-identical and
  running; reserved names are refused; uninstall leaves a file pxhostd did not write.
- A full /run/pxhostd for 40 s: pxhostd keeps feeding its watchdog, the status file never
  claims READY=1 while stale, and it is right again after.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from nodeharness import Node, wait_for
from pxnode import (
    SPEC_FILE,
    UNIT,
    assert_consistent,
    build_payload,
    install,
    invocation,
    pxhostctl,
    wait_pxhostd,
    write_spec,
)

JOURNAL = "/var/lib/pxhostd/journal.json"
STATUS = "/run/pxhostd/status"


def spec_of(payload: str, **extra: object) -> dict[str, object]:
    return {"payload": payload, "args": ["-c", "desired"], **extra}


def finished_transactions(node: Node) -> int:
    out = node.run(["journalctl", "-u", "pxhostd", "-o", "cat", "--no-pager"]).stdout
    # A transaction's end line ("<what>: done|nothing to do|failed...; requested by ...
    # (txid T)"); its start line says "started, requested by".
    return sum(1 for line in out.splitlines()
               if line.endswith(")") and "; requested by " in line and "(txid " in line)


def after_reconcile(node: Node, seen: int, action: list[str]) -> None:
    """Run `action` (systemctl ...), then wait for the reconcile it causes to finish."""
    node.run(action, timeout=300)
    wait_pxhostd(node)
    wait_for(lambda: finished_transactions(node), lambda n: n > seen, timeout=120,
             what=f"the reconcile after {' '.join(action)}")
    wait_pxhostd(node)


def last_error(node: Node) -> str:
    """The named error of the last failed operation, as Status() reports it."""
    error: str = json.loads(pxhostctl(node, "status", "--json", check=False).stdout)["last_error"]
    return error


def pxhostd_pid(node: Node) -> str:
    return node.unit_property("pxhostd", "MainPID")


def test_one_desired_state_survives_restart_reinstall_reload_and_reboot(
    installed_node: Node, tmp_path: Path, pxhostd_deb: Path
) -> None:
    node = installed_node
    wait_pxhostd(node)
    v1 = build_payload(node, tmp_path, "v1", "1.0.0")
    v2 = build_payload(node, tmp_path, "v2", "2.0.0")
    write_spec(node, spec_of(v1))
    after_reconcile(node, finished_transactions(node), ["systemctl", "reload", "pxhostd"])
    assert_consistent(node, "1.0.0")
    status = json.loads(pxhostctl(node, "status", "--json", check=False).stdout)
    assert status["desired_source"] == f"spec file {SPEC_FILE}"

    install(node, spec_of(v2))
    assert_consistent(node, "2.0.0")
    status = json.loads(pxhostctl(node, "status", "--json", check=False).stdout)
    assert status["desired_source"] == "Install over D-Bus" and status["desired_at"]
    assert re.search(r"^desired state: +Install over D-Bus, 20", pxhostctl(node, "status").stdout,
                     re.MULTILINE)
    running = invocation(node)

    node.copy_in(pxhostd_deb, "/var/lib/pxtest/pxhostd.deb")
    for action in (
        ["systemctl", "restart", "pxhostd"],
        ["apt-get", "install", "-y", "--reinstall", "/var/lib/pxtest/pxhostd.deb"],
        ["systemctl", "reload", "pxhostd"],
    ):
        after_reconcile(node, finished_transactions(node), action)
        assert_consistent(node, "2.0.0")
        assert invocation(node) == running, f"{action}: the service was restarted"

    node.reboot()
    node.wait_active("pxhostd", timeout=120)
    wait_pxhostd(node)
    node.wait_active(UNIT, timeout=120)
    # The start-up reconcile has run (a no-op: it leaves no transaction in the history).
    wait_for(lambda: node.journal("pxhostd.service", this_boot=True),
             lambda text: any(": reconcile" in line and "(txid " in line
                              and " started, " not in line for line in text.splitlines()),
             timeout=120,
             what="the start-up reconcile after the reboot")
    assert_consistent(node, "2.0.0")
    starts = [line for line in node.run(
        ["journalctl", "-b", "-u", UNIT, "-o", "cat", "--no-pager"]).stdout.splitlines()
        if line.startswith("Started ")]
    assert len(starts) == 1, starts  # by systemd at boot; pxhostd did not start it again
    assert node.unit_property(UNIT, "NRestarts") == "0"


def test_faults_roll_back_and_the_next_install_succeeds(
    installed_node: Node, tmp_path: Path
) -> None:
    node = installed_node
    wait_pxhostd(node)
    # A real daemon-reload cannot be made to fail on demand: fail the operation right after
    # its second one (the first is v1's install) with an injected error.
    node.write_file("/var/lib/pxhostd/failpoints", "error:after-daemon-reload=2\n", mode=0o600)
    node.systemctl("restart", "pxhostd")
    wait_pxhostd(node)
    v1 = build_payload(node, tmp_path, "v1", "1.0.0")
    install(node, spec_of(v1))
    running, pid = invocation(node), pxhostd_pid(node)

    def refused(payload: str, error: str, n: int) -> None:
        result = install(node, spec_of(payload, env={"N": str(n)}), check=False)
        assert result.returncode != 0
        assert last_error(node).startswith(error + ":"), result
        assert "Traceback" not in result.stderr
        assert not node.exists(JOURNAL)
        assert_consistent(node, "1.0.0")
        assert invocation(node) == running and pxhostd_pid(node) == pid

    # A payload whose file does not match its sha256.
    bad = build_payload(node, tmp_path, "bad", "3.0.0")
    node.run(["sh", "-c", f"echo tampered >> {bad}/VERSION"])
    refused(bad, "InvalidPayload", 1)

    # A full filesystem under /opt/pwx (a copy on a small tmpfs, bound over it).
    v2 = build_payload(node, tmp_path, "v2", "2.0.0")
    node.run("mkdir -p /mnt/small && mount -t tmpfs -o size=4m tmpfs /mnt/small"
             " && cp -a /opt/pwx/. /mnt/small/ && mount --bind /mnt/small /opt/pwx")
    node.run("dd if=/dev/zero of=/mnt/small/filler bs=64k 2>/dev/null || true")
    refused(v2, "HostStateError", 2)
    node.run("umount -l /opt/pwx && umount -l /mnt/small")

    # A read-only /etc/systemd/system.
    node.run("mount --bind /etc/systemd/system /etc/systemd/system"
             " && mount -o remount,ro,bind /etc/systemd/system")
    refused(v2, "HostStateError", 3)
    node.run(["umount", "/etc/systemd/system"])

    # A failure right after daemon-reload (the unit files were written and loaded).
    refused(v2, "Failed", 5)
    assert "injected failure at failpoint after-daemon-reload" in last_error(node)

    good = install(node, spec_of(v2, env={"N": "4"}))
    assert "upgraded to 2.0.0" in good.stdout
    assert_consistent(node, "2.0.0")
    assert pxhostd_pid(node) == pid


def test_an_admins_own_unit_is_never_touched(installed_node: Node, tmp_path: Path) -> None:
    node = installed_node
    wait_pxhostd(node)
    mine = "[Unit]\nDescription=the admin's own foo\n[Service]\nExecStart=/bin/sleep infinity\n" \
           "[Install]\nWantedBy=multi-user.target\n"
    node.write_file("/etc/systemd/system/foo.service", mine)
    node.systemctl("daemon-reload")
    node.systemctl("enable", "--now", "foo.service")
    before = node.read_bytes("/etc/systemd/system/foo.service")
    foo = node.unit_property("foo.service", "InvocationID")
    v1 = build_payload(node, tmp_path, "v1", "1.0.0")
    result = install(node, spec_of(v1, service="foo"), check=False)
    assert result.returncode != 0 and last_error(node).startswith("ForeignUnit:"), result
    assert node.read_bytes("/etc/systemd/system/foo.service") == before
    assert node.unit_property("foo.service", "InvocationID") == foo
    assert not node.exists(JOURNAL)

    # A vendor unit elsewhere is not shadowed; reserved names never get that far.
    getty = install(node, spec_of(v1, service="getty-extra"), check=False)
    assert getty.returncode != 0 and "reserved" in getty.stdout + getty.stderr
    logind = install(node, spec_of(v1, service="systemd-logind"), check=False)
    assert logind.returncode != 0 and "reserved" in logind.stdout + logind.stderr

    # Uninstall never removes a file pxhostd did not write: here the admin took over the
    # unit; pxhostd's own environment file beside it goes.
    install(node, spec_of(v1, env={"A": "1"}))
    taken = "# mine now\n[Service]\nExecStart=/bin/sleep infinity\n"
    node.write_file(f"/etc/systemd/system/{UNIT}", taken)
    pxhostctl(node, "uninstall")
    assert node.read_file(f"/etc/systemd/system/{UNIT}") == taken
    assert not node.exists(f"/etc/systemd/system/{UNIT}.d/pxhostd.env")
    assert node.read_bytes("/etc/systemd/system/foo.service") == before
    assert node.unit_property("foo.service", "ActiveState") == "active"


def status_doc(node: Node) -> dict[str, str] | None:
    proc = node.run(["cat", STATUS], check=False)
    if proc.returncode != 0:
        return None
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def test_a_full_run_pxhostd_never_lies_and_never_kills_pxhostd(
    installed_node: Node, tmp_path: Path
) -> None:
    node = installed_node
    wait_pxhostd(node)
    # /run/pxhostd on a small filesystem of its own, so it can be filled without filling
    # the node's /run.
    node.run("mount -t tmpfs -o size=64k,mode=0755 tmpfs /run/pxhostd")
    install(node, spec_of(build_payload(node, tmp_path, "v1", "1.0.0")))
    wait_for(lambda: status_doc(node), lambda d: d is not None and d.get("READY") == "1",
             timeout=60, what="READY=1")
    pid = pxhostd_pid(node)
    node.run("dd if=/dev/zero of=/run/pxhostd/filler bs=4k 2>/dev/null || true")
    end = time.monotonic() + 40
    while time.monotonic() < end:
        # Every write fails while the old file holds the last free blocks; the writer then
        # removes it and writes again. Whenever the file is there, it is current.
        doc = status_doc(node)
        if doc is not None and doc.get("READY") == "1":
            age = float(node.run(["date", "+%s.%N"]).stdout) - float(doc["HEARTBEAT"])
            assert age < 15, f"READY=1 with a heartbeat {age:.0f} s old"
        time.sleep(2)
    assert pxhostd_pid(node) == pid, "the watchdog restarted pxhostd"
    assert "cannot write the status file" in node.journal("pxhostd.service")
    node.run(["rm", "/run/pxhostd/filler"])
    wait_for(lambda: status_doc(node), lambda d: d is not None and d.get("READY") == "1",
             timeout=30, what="the status file right again")
    assert pxhostd_pid(node) == pid
    assert json.loads(pxhostctl(node, "status", "--json", check=False).stdout)["state"] == "idle"


def test_a_missing_configuration_restarts_once_never_at_every_reconcile(
    installed_node: Node, tmp_path: Path
) -> None:
    """Without `-c NAME` the demo writes no /etc/pwx/config.json, as a payload may never
    write it: a daemon restart, a reload and a re-submitted spec leave the service alone.
    A configuration that was there and went missing restarts the service once (it writes
    it again), and only once."""
    node = installed_node
    wait_pxhostd(node)
    config = "/etc/pwx/config.json"
    payload = build_payload(node, tmp_path, "noconf", "5.0.0")
    write_spec(node, {"payload": payload, "args": []})  # the desired state, from the file
    after_reconcile(node, finished_transactions(node), ["systemctl", "reload", "pxhostd"])
    assert_consistent(node, "5.0.0")
    assert not node.exists(config)
    running = invocation(node)
    for action in (["systemctl", "restart", "pxhostd"], ["systemctl", "reload", "pxhostd"]):
        after_reconcile(node, finished_transactions(node), action)
        assert invocation(node) == running, f"{action}: restarted for a missing configuration"
    install(node, {"payload": payload, "args": []})  # the same spec submitted again
    assert invocation(node) == running

    write_spec(node, spec_of(payload))  # -c desired: the service writes the configuration
    after_reconcile(node, finished_transactions(node), ["systemctl", "reload", "pxhostd"])
    wait_for(lambda: node.exists(config), lambda there: there, timeout=60,
             what="the service to write its configuration")
    running = invocation(node)
    node.run(["rm", "-f", config])
    after_reconcile(node, finished_transactions(node), ["systemctl", "reload", "pxhostd"])
    assert invocation(node) != running, "a configuration gone missing restarts the service"
    assert node.exists(config)
    running = invocation(node)
    after_reconcile(node, finished_transactions(node), ["systemctl", "reload", "pxhostd"])
    assert invocation(node) == running
