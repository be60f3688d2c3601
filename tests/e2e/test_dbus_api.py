"""Issue: the D-Bus interface end to end, on a booted node with the real .deb.

Every method and property is driven through real clients nobody here wrote: `busctl`
(systemd's) and, where an error's *name* must be seen (busctl prints only the message), a
bare dbus-fast driver (bench/nodeside/busdriver.py) run inside the node. pxhostctl is
driven too, as users meet it. The non-root checks run as the node's user `pxuser`, so the
installed bus policy is what refuses them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from nodeharness import REPO_ROOT, Node, wait_for
from pxnode import (
    ENV_FILE,
    RELEASES,
    UNIT,
    UNIT_FILE,
    build_payload,
    invocation,
    pxhostctl,
    untag,
    wait_pxhostd,
)

DEST = "com.portworx.pxhostd1"
OBJ = "/com/portworx/pxhostd1"
MGR = "com.portworx.pxhostd1.Manager"
TXI = "com.portworx.pxhostd1.Transaction"
ERR = "com.portworx.pxhostd1.Error."
DENIED = "org.freedesktop.DBus.Error.AccessDenied"
DRIVER_SRC = REPO_ROOT / "bench" / "nodeside" / "busdriver.py"
DRIVER = "/var/lib/pxtest/busdriver.py"
USER = "pxuser"

MANAGER_PROPS = ("Version", "PayloadVersion", "State", "ServiceState", "ActiveTransaction",
                 "LastError")
TX_PROPS = ("Id", "Operation", "Percent", "Message", "Finished", "Success", "Changed",
            "ErrorName", "ErrorMessage")


# -- busctl ------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """busctl's JSON ({"type": T, "data": D} for every typed value) as plain Python values."""
    if isinstance(value, dict):
        if set(value) == {"type", "data"}:
            return plain(value["data"])
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def busctl(node: Node, *args: str, user: str | None = None,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    return node.run(["busctl", "--json=short", *args], user=user, check=check)


def bcall(node: Node, member: str, *sig_args: str, path: str = OBJ, iface: str = MGR,
          user: str | None = None) -> list[Any]:
    """`busctl call` (`--` so arguments like `-c` are not taken for options); the out-args."""
    out = busctl(node, "call", "--", DEST, path, iface, member, *sig_args, user=user).stdout
    result: list[Any] = plain(json.loads(out))
    return result


def bcall_fails(node: Node, member: str, *sig_args: str, path: str = OBJ,
                iface: str = MGR, user: str | None = None) -> str:
    """A call that must fail; busctl's error text (it prints the message, not the name)."""
    proc = busctl(node, "call", "--", DEST, path, iface, member, *sig_args, user=user,
                  check=False)
    assert proc.returncode != 0, f"{member} succeeded: {proc.stdout}"
    return proc.stderr.strip()


def bprop(node: Node, name: str, *, path: str = OBJ, iface: str = MGR,
          user: str | None = None) -> Any:
    out = busctl(node, "get-property", DEST, path, iface, name, user=user).stdout
    return plain(json.loads(out))


def wait_finished(node: Node, path: str, timeout: float = 120) -> dict[str, Any]:
    """Follow a transaction as a late, polling busctl client would; return GetResult."""
    wait_for(lambda: bprop(node, "Finished", path=path, iface=TXI), bool, timeout=timeout,
             what=f"{path} to finish")
    (result,) = bcall(node, "GetResult", path=path, iface=TXI)
    assert isinstance(result, dict)
    return result


def tx_props(node: Node, path: str, user: str | None = None) -> dict[str, Any]:
    return {p: bprop(node, p, path=path, iface=TXI, user=user) for p in TX_PROPS}


# -- the in-node dbus-fast driver (for error names) --------------------------------------


def driver(node: Node, requests: list[dict[str, Any]], user: str | None = None) -> list[Any]:
    if not node.exists(DRIVER):
        node.run(["mkdir", "-p", str(Path(DRIVER).parent)])
        node.copy_in(DRIVER_SRC, DRIVER, mode=0o755)
    lines = "".join(json.dumps(r) + "\n" for r in requests)
    out = node.run(["python3", DRIVER], user=user, input=lines, timeout=120).stdout
    replies = [json.loads(line) for line in out.splitlines()]
    assert len(replies) == len(requests), out
    return replies


def call_req(member: str, sig: str = "", body: list[Any] | None = None, *,
             path: str = OBJ, iface: str = MGR) -> dict[str, Any]:
    return {"call": {"path": path, "iface": iface, "member": member, "sig": sig,
                     "body": body or []}}


def v(sig: str, value: Any) -> dict[str, Any]:
    return {"$v": [sig, value]}


def error_name(node: Node, member: str, sig: str = "", body: list[Any] | None = None, *,
               path: str = OBJ, iface: str = MGR, user: str | None = None) -> tuple[str, str]:
    """The error name and message of a call that must fail."""
    (reply,) = driver(node, [call_req(member, sig, body, path=path, iface=iface)], user=user)
    assert not reply["ok"], reply
    return reply["error"], reply["message"]


# -- facts about the node ----------------------------------------------------------------


def main_pid(node: Node) -> str:
    return node.unit_property("pxhostd.service", "MainPID")


def is_active(node: Node) -> str:
    return node.run(["systemctl", "is-active", UNIT], check=False).stdout.strip()


def is_enabled(node: Node) -> str:
    return node.run(["systemctl", "is-enabled", UNIT], check=False).stdout.strip()


def wait_prop(node: Node, name: str, value: Any, timeout: float = 60) -> None:
    wait_for(lambda: bprop(node, name), lambda got: got == value, timeout=timeout,
             what=f"{name} == {value!r}")


def bus_spec_args(payload: str, env_value: str = "one") -> list[str]:
    """An Install call's arguments in busctl's notation: spec a{sv} (args as, env a{ss})."""
    return [
        "a{sv}a{sv}",
        "4",
        "payload", "s", payload,
        "args", "as", "2", "-c", "cluster-bus",
        "env", "a{ss}", "1", "PX_TEST", env_value,
        "mounts", "as", "0",
    ]


@pytest.fixture
def ready_node(installed_node: Node) -> Node:
    wait_pxhostd(installed_node)
    return installed_node


# -- every method and property through busctl ---------------------------------------------


def test_every_method_and_property_through_busctl(ready_node: Node, tmp_path: Path) -> None:
    node = ready_node
    v1 = build_payload(node, tmp_path, "v1", "1.0.0")
    version = node.run(["dpkg-query", "-W", "-f", "${Version}", "pxhostd"]).stdout.strip()

    # Read-only surface before anything is installed.
    (status,) = bcall(node, "Status")
    assert status["daemon_version"] == version
    assert status["state"] == "idle" and status["installed"] is False
    assert str(status["pid"]) == main_pid(node)
    assert status["active_transaction"] == "/"
    assert bprop(node, "Version") == version
    assert bprop(node, "PayloadVersion") == ""
    assert bprop(node, "State") == "idle"
    assert bprop(node, "ActiveTransaction") == "/"
    assert bprop(node, "LastError") == ""
    assert bcall(node, "History", "u", "0") == [[]]
    assert "no spec has been applied" in bcall_fails(node, "GetSpec")
    assert error_name(node, "GetSpec")[0] == ERR + "NotInstalled"

    # Install with an a{sv} spec and a caller's transaction id.
    (path,) = bcall(node, "Install", *bus_spec_args(v1), "1", "id", "s", "bus-install-1")
    assert path.startswith(OBJ + "/transaction/")
    result = wait_finished(node, path)
    assert result["success"] is True and result["changed"] is True, result
    assert result["id"] == "bus-install-1" and result["operation"] == "install"
    assert result["details"]["version_after"] == "1.0.0"
    props = tx_props(node, path)
    assert props == {
        "Id": "bus-install-1", "Operation": "install", "Percent": 100,
        "Message": result["message"], "Finished": True, "Success": True, "Changed": True,
        "ErrorName": "", "ErrorMessage": "",
    }
    assert is_active(node) == "active" and is_enabled(node) == "enabled"
    assert 'PX_TEST="one"' in node.read_file(ENV_FILE)
    assert bprop(node, "PayloadVersion") == "1.0.0"
    wait_prop(node, "ServiceState", "active/running")
    assert bprop(node, "ActiveTransaction") == "/"
    (spec,) = bcall(node, "GetSpec")
    assert spec == {"payload": v1, "service": "portworx", "args": ["-c", "cluster-bus"],
                    "env": {"PX_TEST": "one"}, "mounts": []}

    # The same spec again: success, nothing changed, said so.
    (again,) = bcall(node, "Install", *bus_spec_args(v1), "0")
    noop = wait_finished(node, again)
    assert noop["success"] is True and noop["changed"] is False
    assert noop["message"].startswith("nothing to do")

    # Stop, Start, Restart, Disable, Enable: each a transaction, each visible in systemd.
    def act(member: str) -> dict[str, Any]:
        (tx,) = bcall(node, member, "a{sv}", "1", "id", "s", f"bus-{member.lower()}")
        res = wait_finished(node, tx)
        assert res["success"] is True, res
        assert res["operation"] == member.lower()
        return res

    act("Stop")
    assert is_active(node) == "inactive"
    wait_prop(node, "ServiceState", "inactive/dead")
    act("Start")
    assert is_active(node) == "active"
    wait_prop(node, "ServiceState", "active/running")
    before = invocation(node)
    act("Restart")
    assert invocation(node) != before and is_active(node) == "active"
    act("Disable")
    assert is_enabled(node) == "disabled"
    assert is_active(node) == "active", "disable keeps the service running"
    act("Enable")
    assert is_enabled(node) == "enabled"

    # Reconcile re-reads the spec file on the host.
    node.write_file("/etc/pxhostd/spec.yaml",
                    f"payload: {v1}\nargs: [-c, cluster-bus]\nenv: {{PX_TEST: reconciled}}\n")
    rec = act("Reconcile")
    assert rec["changed"] is True
    assert 'PX_TEST="reconciled"' in node.read_file(ENV_FILE)
    node.run(["rm", "/etc/pxhostd/spec.yaml"])

    # A failing operation: the transaction carries the named error; LastError and State
    # show it until the next success.
    (bad,) = bcall(node, "Install", *bus_spec_args("/var/lib/pxtest/nowhere"), "0")
    failed = wait_finished(node, bad)
    assert failed["success"] is False
    assert failed["error_name"] == ERR + "InvalidPayload", failed
    assert bprop(node, "ErrorName", path=bad, iface=TXI) == ERR + "InvalidPayload"
    assert bprop(node, "LastError").startswith("InvalidPayload: ")
    assert bprop(node, "State") == "failed"
    act("Restart")
    assert bprop(node, "LastError") == "" and bprop(node, "State") == "idle"

    # History: newest first, with the caller's ids, the same after a daemon restart.
    (history,) = bcall(node, "History", "u", "0")
    ids = [e["txid"] for e in history]
    assert "bus-install-1" in ids and ids.index("bus-restart") < ids.index("bus-install-1")
    assert history[ids.index("bus-install-1")]["result"] == "success"
    assert any(e["result"] == "failed" and e["error"] == "InvalidPayload" for e in history)
    pid = main_pid(node)
    node.systemctl("restart", "pxhostd")
    wait_pxhostd(node)
    assert main_pid(node) != pid
    assert bcall(node, "History", "u", "0") == [history]
    (limited,) = bcall(node, "History", "u", "2")
    assert limited == history[:2]

    # Uninstall with wipe removes units, releases and the service's configuration.
    assert node.exists("/etc/pwx")
    (tx,) = bcall(node, "Uninstall", "a{sv}", "2", "wipe", "b", "true", "id", "s", "bus-rm")
    gone = wait_finished(node, tx)
    assert gone["success"] is True and gone["operation"] == "uninstall", gone
    assert not node.exists(UNIT_FILE)
    assert node.run(["ls", "-A", RELEASES], check=False).stdout.split() == []
    assert not node.exists("/etc/pwx")
    (status,) = bcall(node, "Status")
    assert status["installed"] is False
    assert bprop(node, "PayloadVersion") == ""
    assert error_name(node, "GetSpec")[0] == ERR + "NotInstalled"


def test_service_state_follows_systemd_behind_pxhostds_back(
    ready_node: Node, tmp_path: Path
) -> None:
    """`systemctl stop/start portworx` by hand: ServiceState follows, as PropertiesChanged."""
    node = ready_node
    v1 = build_payload(node, tmp_path, "v1", "1.0.0")
    (path,) = bcall(node, "Install", *bus_spec_args(v1), "0")
    assert wait_finished(node, path)["success"] is True
    wait_prop(node, "ServiceState", "active/running")

    match = f"type='signal',sender='{DEST}',path='{OBJ}',member='PropertiesChanged'"
    node.run(
        f"busctl --json=short monitor --match \"{match}\" >/run/pxmon.json 2>/run/pxmon.err &"
        " echo $! >/run/pxmon.pid"
    )
    wait_for(lambda: node.read_file("/run/pxmon.err"), lambda err: "Monitoring" in err,
             timeout=30, what="busctl monitor to listen")
    node.systemctl("stop", UNIT)
    wait_prop(node, "ServiceState", "inactive/dead")
    node.systemctl("start", UNIT)
    wait_prop(node, "ServiceState", "active/running")
    node.run("kill $(cat /run/pxmon.pid)")

    seen = []
    for line in node.read_file("/run/pxmon.json").splitlines():
        interface, changed, _ = plain(json.loads(line)["payload"])
        if interface == MGR and "ServiceState" in changed:
            seen.append(changed["ServiceState"])
    assert "inactive/dead" in seen and "active/running" in seen, seen
    assert seen.index("inactive/dead") < len(seen) - 1 - seen[::-1].index("active/running")
    # Every value is one systemd really had (ActiveState/SubState), never a guess.
    assert all(s.split("/")[0] in {"active", "inactive", "activating", "deactivating",
                                   "failed", "reloading"} for s in seen), seen
    # pxhostd did nothing itself: no transaction ran for a change it only watched.
    assert bprop(node, "ActiveTransaction") == "/"
    assert bcall(node, "History", "u", "0")[0][0]["operation"] == "install"


# -- the same through pxhostctl -----------------------------------------------------------


def ctl_json(node: Node, *args: str, check: bool = True) -> Any:
    return json.loads(pxhostctl(node, *args, "--json", check=check).stdout)


def test_every_command_through_pxhostctl(ready_node: Node, tmp_path: Path) -> None:
    node = ready_node
    v1 = build_payload(node, tmp_path, "v1", "1.0.0")
    spec_file = "/var/lib/pxtest/spec.yaml"
    node.write_file(spec_file, f"payload: {v1}\nargs: [-c, cluster-ctl]\n")

    assert ctl_json(node, "history") == []
    restart = pxhostctl(node, "restart", check=False)
    assert restart.returncode == 6, restart.stderr  # NotInstalled
    assert restart.stderr.strip().splitlines()[-1] == (
        "pxhostctl: NotInstalled: cannot restart: nothing is installed"
    )

    out = pxhostctl(node, "install", "--spec", spec_file, "--id", "ctl-install").stdout
    assert "installed 1.0.0" in out
    status = ctl_json(node, "status")
    assert status["installed"] is True and status["payload_version"] == "1.0.0"
    assert status["service_state"] == "active/running"
    assert bprop(node, "PayloadVersion") == "1.0.0"
    again = ctl_json(node, "install", "--spec", spec_file)
    assert again["result"] == "nothing-to-do", again
    assert "nothing to do" in pxhostctl(node, "install", "--spec", spec_file).stdout

    for command, fact, expected in (
        ("stop", is_active, "inactive"),
        ("start", is_active, "active"),
        ("disable", is_enabled, "disabled"),
        ("enable", is_enabled, "enabled"),
    ):
        result = ctl_json(node, command, "--id", f"ctl-{command}")
        assert result["result"] == "success" and result["operation"] == command, result
        assert fact(node) == expected, command
    before = invocation(node)
    assert ctl_json(node, "restart")["result"] == "success"
    assert invocation(node) != before

    # --no-block: the id at once; `watch` follows it (any client reads the result).
    node.write_file("/etc/pxhostd/spec.yaml", f"payload: {v1}\nenv: {{PX_TEST: ctl}}\n")
    txid = pxhostctl(node, "reconcile", "--no-block", "--id", "ctl-reconcile").stdout.strip()
    assert txid == "ctl-reconcile"
    result = ctl_json(node, "watch", txid)
    assert result["txid"] == "ctl-reconcile" and result["result"] == "success", result
    assert 'PX_TEST="ctl"' in node.read_file(ENV_FILE)
    node.run(["rm", "/etc/pxhostd/spec.yaml"])

    history = ctl_json(node, "history")
    assert [e["txid"] for e in history[:2]] == ["ctl-reconcile", ctl_history_id(history[1])]
    assert history[-2]["txid"] == "ctl-install"
    assert (history[-1]["operation"], history[-1]["error"]) == ("restart", "NotInstalled")
    lines = pxhostctl(node, "history").stdout.splitlines()
    assert lines[0].split()[:3] == ["FINISHED", "OPERATION", "RESULT"]
    lines = lines[1:]
    assert len(lines) == len(history)
    assert lines[0].startswith(history[0]["finished"]) and "ctl-reconcile" in lines[0]
    assert "install" in lines[-2] and "ctl-install" in lines[-2]
    node.systemctl("restart", "pxhostd")
    wait_pxhostd(node)
    assert ctl_json(node, "history") == history

    out = pxhostctl(node, "uninstall", "--wipe").stdout
    assert "uninstalled" in out
    assert not node.exists(UNIT_FILE) and not node.exists("/etc/pwx")
    assert ctl_json(node, "status", check=False)["installed"] is False


def ctl_history_id(entry: dict[str, Any]) -> str:
    """The id pxhostctl generated for the plain `restart` (no --id): any non-empty one."""
    assert entry["operation"] == "restart" and entry["txid"], entry
    return str(entry["txid"])


# -- one transaction for identical requests, Busy for a different one ---------------------


def test_identical_requests_join_a_different_one_is_busy_late_clients_read(
    ready_node: Node, tmp_path: Path
) -> None:
    node = ready_node
    slow = build_payload(node, tmp_path, "slow", "1.0.0", "--slow-start", "5")
    other = build_payload(node, tmp_path, "other", "2.0.0")
    node.write_file("/var/lib/pxtest/slow.yaml", f"payload: {slow}\n")
    node.write_file("/var/lib/pxtest/other.yaml", f"payload: {other}\n")

    # Two pxhostctl clients at once, each blocking until the result.
    node.run(
        "( for c in a b; do pxhostctl install --spec /var/lib/pxtest/slow.yaml --json"
        " --id client-$c >/run/$c.json 2>/run/$c.err & done; wait; touch /run/ab.done )"
        " >/dev/null 2>&1 &"
    )
    wait_for(lambda: bprop(node, "ActiveTransaction"), lambda p: p != "/", timeout=60,
             what="a transaction to run")
    active = bprop(node, "ActiveTransaction")
    assert bprop(node, "State") == "installing"
    assert bprop(node, "Finished", path=active, iface=TXI) is False

    # A third client with the same spec (busctl) joins: the same path.
    spec = ["a{sv}a{sv}", "1", "payload", "s", slow, "1", "id", "s", "client-c"]
    assert bcall(node, "Install", *spec) == [active]
    # A different spec meanwhile: Busy, naming what runs (busctl, the driver, pxhostctl).
    other_spec = ["a{sv}a{sv}", "1", "payload", "s", other, "0"]
    message = bcall_fails(node, "Install", *other_spec)
    assert active in message and "install" in message, message
    name, message = error_name(node, "Install", "a{sv}a{sv}",
                               [{"payload": v("s", other)}, {}])
    assert name == ERR + "Busy" and active in message
    assert error_name(node, "Restart", "a{sv}", [{}])[0] == ERR + "Busy"
    busy = pxhostctl(node, "install", "--spec", "/var/lib/pxtest/other.yaml", check=False)
    assert busy.returncode == 5 and active in busy.stderr, busy.stderr
    assert bprop(node, "Finished", path=active, iface=TXI) is False, "the checks ran too late"

    wait_for(lambda: node.exists("/run/ab.done"), bool, timeout=120, what="both clients")
    results = [json.loads(node.read_file(f"/run/{c}.json")) for c in "ab"]
    for result in results:
        assert result["result"] == "success", result
        assert result["version_after"] == "1.0.0"
    assert results[0] == results[1]
    assert results[0]["txid"] in ("client-a", "client-b")
    (history,) = bcall(node, "History", "u", "0")
    assert [e["operation"] for e in history] == ["install"], "one transaction, not two"

    # A client that attaches after the end still reads the result, root or not.
    for user in (None, USER):
        props = tx_props(node, active, user=user)
        assert props["Finished"] is True and props["Success"] is True, props
        assert props["Id"] == results[0]["txid"] and props["Operation"] == "install"
        (late,) = bcall(node, "GetResult", path=active, iface=TXI, user=user)
        assert late["path"] == active and late["success"] is True
        assert late["message"] == results[0]["message"]
    assert bprop(node, "ActiveTransaction") == "/"


# -- a non-root user reads, and is refused every change -----------------------------------

MUTATING: list[tuple[str, str, list[Any]]] = [
    ("Start", "a{sv}", [{}]),
    ("Stop", "a{sv}", [{}]),
    ("Restart", "a{sv}", [{}]),
    ("Enable", "a{sv}", [{}]),
    ("Disable", "a{sv}", [{}]),
    ("Uninstall", "a{sv}", [{"wipe": {"$v": ["b", True]}}]),
    ("Reconcile", "a{sv}", [{}]),
]


def test_non_root_reads_and_is_refused_every_change(ready_node: Node, tmp_path: Path) -> None:
    node = ready_node
    v1 = build_payload(node, tmp_path, "v1", "1.0.0")
    (path,) = bcall(node, "Install", *bus_spec_args(v1), "1", "id", "s", "root-install")
    assert wait_finished(node, path)["success"] is True
    node.run(["mkdir", "-p", "/etc/pxhostd"])
    node.write_file("/etc/pxhostd/spec.yaml", f"payload: {v1}\nenv: {{PX_TEST: changed}}\n")
    assert node.run(["id", "-u", USER]).stdout.strip() != "0"
    inv, unit_text = invocation(node), node.read_file(UNIT_FILE)
    root_history = bcall(node, "History", "u", "0")

    # Reading works: methods, every property, a transaction's properties and result.
    (status,) = bcall(node, "Status", user=USER)
    assert status["installed"] is True and status["payload_version"] == "1.0.0"
    (spec,) = bcall(node, "GetSpec", user=USER)
    assert spec["payload"] == v1
    assert bcall(node, "History", "u", "0", user=USER) == root_history
    for prop in MANAGER_PROPS:
        assert bprop(node, prop, user=USER) == bprop(node, prop), prop
    assert tx_props(node, path, user=USER)["Id"] == "root-install"
    assert bcall(node, "GetResult", path=path, iface=TXI, user=USER)[0]["success"] is True
    assert "payload version: 1.0.0" in pxhostctl_as_user(node, "status").stdout

    # Every mutating call is refused by the bus policy, before pxhostd sees it.
    install = ("Install", "a{sv}a{sv}", [{"payload": v("s", v1)}, {}])
    requests = [call_req(m, sig, body) for m, sig, body in [install, *MUTATING]]
    requests.append(call_req("Set", "ssv", [MGR, "State", v("s", "idle")],
                             iface="org.freedesktop.DBus.Properties"))
    requests.append({"own": DEST})
    replies = driver(node, requests, user=USER)
    for request, reply in zip(requests, replies, strict=True):
        assert not reply["ok"] and reply["error"] == DENIED, (request, reply)
    assert "Access denied" in bcall_fails(node, "Restart", "a{sv}", "0", user=USER)
    denied = pxhostctl_as_user(node, "restart", check=False)
    assert denied.returncode == 4, denied
    assert len(denied.stderr.strip().splitlines()) == 1, denied.stderr
    assert "needs root" in denied.stderr, denied.stderr
    assert denied.stdout == ""

    # Nothing changed.
    assert invocation(node) == inv and node.read_file(UNIT_FILE) == unit_text
    assert is_active(node) == "active" and is_enabled(node) == "enabled"
    assert bcall(node, "History", "u", "0") == root_history
    assert bprop(node, "ActiveTransaction") == "/"
    # The name still belongs to pxhostd.
    owner = busctl(node, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
                   "org.freedesktop.DBus", "GetConnectionUnixProcessID", "s", DEST).stdout
    assert plain(json.loads(owner)) == [int(main_pid(node))]


def pxhostctl_as_user(
    node: Node, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return node.run(["pxhostctl", *args], user=USER, check=check)


def test_non_ascii_spec_values_round_trip(ready_node: Node, tmp_path: Path) -> None:
    """Free text may hold any printable character; it must come back intact to anyone."""
    node = ready_node
    v1 = build_payload(node, tmp_path, "v1", "1.0.0")
    pid = main_pid(node)
    args = ["a{sv}a{sv}", "2", "payload", "s", v1, "args", "as", "2", "-c", "café-ß", "0"]
    (path,) = bcall(node, "Install", *args)
    assert wait_finished(node, path)["success"] is True
    for user in (None, USER):
        (spec,) = bcall(node, "GetSpec", user=user)
        assert spec["args"] == ["-c", "café-ß"]
    assert main_pid(node) == pid


# -- a hostile local user (issue: never crash, never stall root, never leak a secret) -----

FLOOD_SRC = REPO_ROOT / "bench" / "nodeside" / "flood.py"
FLOOD = "/var/lib/pxtest/flood.py"
SECRET_ENV = {"KVDB_PASSWORD": "KV-e2e-secret-3", "PX_API_TOKEN": "API-e2e-secret-4",
              "REGISTRY_PASS": "REG-e2e-secret-5"}
SECRET_ARGS = ["-c", "cluster-secret", "-t", "TOKEN-e2e-secret-1", "--pwd=PWD-e2e-secret-2"]
SECRET_VALUES = [*SECRET_ENV.values(), "TOKEN-e2e-secret-1", "PWD-e2e-secret-2"]
LOG_MARKER = "MARKER-e2e-journal-77"


def public_reads(paths: list[str]) -> list[dict[str, Any]]:
    """Every read the bus policy leaves to a non-root user."""
    requests = [call_req("Status"), call_req("GetSpec"), call_req("History", "u", [0]),
                call_req("GetAll", "s", [MGR], iface="org.freedesktop.DBus.Properties")]
    for p in paths:
        requests.append(call_req("GetResult", path=p, iface=TXI))
        requests.append(call_req("GetAll", "s", [TXI], path=p,
                                 iface="org.freedesktop.DBus.Properties"))
    return requests


def test_non_root_reads_no_secret_and_no_journal_line_root_reads_all(
    ready_node: Node, tmp_path: Path
) -> None:
    node = ready_node
    v1 = build_payload(node, tmp_path, "v1", "1.0.0")
    v2 = build_payload(node, tmp_path, "v2", "2.0.0")
    # v2 starts with a malformed config whose path the payload logs, then exits: the
    # upgrade is rolled back and its error quotes that journal line (with the marker).
    bad_config = f"/var/lib/pxtest/config-{LOG_MARKER}.json"
    node.write_file(bad_config, "{ not json")
    spec = {"payload": v1, "args": SECRET_ARGS, "env": SECRET_ENV}
    node.write_file("/var/lib/pxtest/secret.yaml", json.dumps(spec))
    node.write_file("/var/lib/pxtest/upgrade.yaml", json.dumps(
        {"payload": v2, "args": SECRET_ARGS, "env": {**SECRET_ENV, "PXDEMO_CONFIG": bad_config}}))
    ok = json.loads(pxhostctl(node, "install", "--spec", "/var/lib/pxtest/secret.yaml",
                              "--json").stdout)
    assert ok["result"] == "success", ok
    failed = pxhostctl(node, "install", "--spec", "/var/lib/pxtest/upgrade.yaml", "--json",
                       check=False)
    result = json.loads(failed.stdout)
    assert result["result"] == "rolled-back" and result["error"] == "RolledBack", result
    assert LOG_MARKER in result["message"], "the rollback reason quotes the journal"
    paths = [ok["path"], result["path"]]

    # As pxuser: every method, property and transaction result; pxhostctl; the status
    # file; systemd's status line. No env value, no secret argument, no journal line.
    replies = driver(node, public_reads(paths), user=USER)
    assert all(r["ok"] for r in replies), replies
    seen = [json.dumps(replies)]
    for args in (["status"], ["history"], ["get-spec"], ["status", "--json"]):
        seen.append(pxhostctl_as_user(node, *args).stdout)
    seen.append(node.run(["cat", "/run/pxhostd/status"], user=USER).stdout)
    seen.append(node.run(["systemctl", "status", "--no-pager", "pxhostd"], user=USER,
                         check=False).stdout)
    for text in seen:
        for secret in [*SECRET_VALUES, LOG_MARKER]:
            assert secret not in text, (secret, text[:2000])
    everything = "\n".join(seen)
    assert "journalctl -u portworx.service" in everything
    shown = untag(replies[1]["body"][0])
    assert shown["env"] == {name: "<redacted>" for name in SECRET_ENV}
    assert shown["args"] == ["-c", "cluster-secret", "-t", "<redacted>", "--pwd=<redacted>"]

    # As root: all of it.
    (spec_root,) = bcall(node, "GetSpec")
    assert spec_root["env"] == SECRET_ENV and spec_root["args"] == SECRET_ARGS
    (status,) = bcall(node, "Status")
    assert LOG_MARKER in status["last_error"]
    (history,) = bcall(node, "History", "u", "0")
    assert LOG_MARKER in history[0]["message"], history[0]
    (again,) = bcall(node, "GetResult", path=result["path"], iface=TXI)
    assert LOG_MARKER in again["error_message"]


def start_flood(node: Node, tag: str, *args: str) -> str:
    """flood.py as pxuser in the background; its JSON result lands in the returned file."""
    if not node.exists(FLOOD):
        node.run(["mkdir", "-p", str(Path(FLOOD).parent)])
        node.copy_in(FLOOD_SRC, FLOOD, mode=0o755)
    out = f"/tmp/flood-{tag}.json"
    node.run(f"(python3 {FLOOD} {' '.join(args)} >{out} 2>/tmp/flood-{tag}.err)"
             " </dev/null >/dev/null 2>&1 &", user=USER)
    return out


def test_clients_that_never_read_neither_restart_pxhostd_nor_stall_root(
    ready_node: Node, tmp_path: Path
) -> None:
    """pxuser: 50 connections, 2000 Introspect calls each, never read; 3 rounds of 20 s."""
    node = ready_node
    v1 = build_payload(node, tmp_path, "v1", "1.0.0")
    v2 = build_payload(node, tmp_path, "v2", "2.0.0")
    node.write_file("/var/lib/pxtest/v1.yaml", f"payload: {v1}\n")
    node.write_file("/var/lib/pxtest/v2.yaml", f"payload: {v2}\n")
    pxhostctl(node, "install", "--spec", "/var/lib/pxtest/v1.yaml")
    pid = main_pid(node)
    for round_ in range(3):
        out = start_flood(node, f"nr{round_}", "--connections", "50", "--calls", "2000",
                          "--duration", "20")
        readers = start_flood(node, f"rd{round_}", "--connections", "4", "--read",
                              "--method", "Status", "--duration", "20")
        answered = 0
        if round_ == 1:  # a root upgrade, started during the flood
            node.run("(pxhostctl install --spec /var/lib/pxtest/v2.yaml --json"
                     " >/tmp/upgrade.json 2>/tmp/upgrade.err) </dev/null >/dev/null 2>&1 &")
        while not (node.exists(out) and node.read_file(out).strip()):
            status = json.loads(pxhostctl(node, "status", "--json", check=False).stdout)
            assert str(status["pid"]) == pid, "pxhostd restarted during the flood"
            answered += 1
        assert answered >= 3, "root's status was not answered during the flood"
        if round_ == 1:
            wait_for(lambda: node.read_file("/tmp/upgrade.json").strip(), bool, timeout=120,
                     what="the upgrade started during the flood")
            upgrade = json.loads(node.read_file("/tmp/upgrade.json"))
            assert upgrade["result"] == "success", upgrade  # pxhostctl --json: the common keys
        wait_for(lambda r=readers: node.exists(r) and node.read_file(r).strip(), bool,
                 timeout=60, what="the reading clients to finish")
        flood_result = json.loads(node.read_file(out))
        assert flood_result["calls_sent"] >= 10_000, flood_result
        assert json.loads(node.read_file(readers))["calls_done"] > 0
    assert main_pid(node) == pid
    assert node.unit_property("pxhostd.service", "NRestarts") == "0"
    status = json.loads(pxhostctl(node, "status", "--json", check=False).stdout)
    assert status["payload_version"] == "2.0.0" and status["state"] == "idle", status
    journal = node.journal("pxhostd")
    assert "lost the bus connection" not in journal and "Traceback" not in journal
    assert "does not read its replies" in journal  # the limit was what held, not luck
