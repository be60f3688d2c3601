"""The test bed itself: nodes boot, are isolated, keep state across reboots and power
cuts, and never leak a process or a mount, whatever way the harness is stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from nodeharness import REPO_ROOT, Node, NodeBootError, NodeCommandError
from nodeharness.cleanup import SCRATCH_PREFIX, sweep_stale


def _mount_points() -> list[str]:
    with open("/proc/self/mounts", encoding="utf-8") as f:
        return [line.split()[1] for line in f]


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _assert_no_trace(scratch: Path, pids: list[int]) -> None:
    assert not [m for m in _mount_points() if m.startswith(str(scratch))]
    assert not scratch.exists()
    assert [p for p in pids if _alive(p)] == []


def test_fresh_node_runs_systemd_with_its_own_identity(node: Node) -> None:
    assert node.boot_state == "running"
    assert node.run(["systemctl", "is-system-running"]).stdout.strip() == "running"
    assert node.run(["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
    assert node.read_file("/etc/machine-id").strip() == node.machine_id
    host_id_file = Path("/etc/machine-id")
    host_id = host_id_file.read_text().strip() if host_id_file.exists() else ""
    assert node.machine_id != host_id
    assert node.run(["hostname"]).stdout.strip() == node.name
    # A real system bus with a running dbus-daemon.
    names = node.run(["busctl", "list", "--no-legend", "--acquired"]).stdout
    assert "org.freedesktop.systemd1" in names


def test_node_has_only_loopback(node: Node) -> None:
    links = node.run(["ip", "-o", "link", "show"]).stdout.splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"]


def test_two_nodes_listen_on_the_same_port_without_colliding(
    node_factory: Callable[..., Node],
) -> None:
    first, second = node_factory(), node_factory()
    assert first.name != second.name
    assert first.machine_id != second.machine_id
    for n in (first, second):
        n.run(
            [
                "systemd-run",
                "--unit=listen",
                "--property=Type=exec",
                "python3",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "9001",
                "--directory",
                "/etc",
            ]
        )
    for n in (first, second):
        n.wait_active("listen")
        body = n.run(
            "for i in $(seq 50); do curl -sf http://127.0.0.1:9001/hostname && exit 0;"
            " sleep 0.1; done; exit 1"
        ).stdout
        assert body.strip() == n.name


def test_commands_run_as_root_or_as_pxuser(node: Node) -> None:
    assert node.run(["id", "-un"]).stdout.strip() == "root"
    assert node.run(["id", "-un"], user="pxuser").stdout.strip() == "pxuser"
    denied = node.run(["touch", "/root/nope"], user="pxuser", check=False)
    assert denied.returncode != 0
    assert "Permission denied" in denied.stderr


def test_failing_command_raises_with_its_output(node: Node) -> None:
    with pytest.raises(NodeCommandError, match="exit status 3") as info:
        node.run("echo to-stdout; echo to-stderr >&2; exit 3")
    assert "to-stdout" in str(info.value)
    assert "to-stderr" in str(info.value)
    assert node.run("exit 3", check=False).returncode == 3


def test_command_timeout_kills_the_command(node: Node) -> None:
    with pytest.raises(NodeCommandError, match="timed out"):
        node.run(["sleep", "300"], timeout=1)
    left = node.run(["pgrep", "-x", "sleep"], check=False)
    assert left.returncode == 1, left.stdout


def test_files_go_in_and_come_out_through_the_node(node: Node, tmp_path: Path) -> None:
    src = tmp_path / "f.sh"
    src.write_text("#!/bin/sh\necho hi\n")
    src.chmod(0o755)
    node.copy_in(src, "/run/pxtest/f.sh")  # /run is the node's own tmpfs
    assert node.read_file("/run/pxtest/f.sh") == src.read_text()
    assert node.run(["/run/pxtest/f.sh"]).stdout == "hi\n"
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "a.txt").write_bytes(b"\x00\x01binary")
    node.copy_in(tree, "/var/lib/pxtest/tree")
    assert node.read_bytes("/var/lib/pxtest/tree/sub/a.txt") == b"\x00\x01binary"
    node.write_file("/etc/pxtest.conf", "x=1\n", mode=0o600)
    assert node.run(["stat", "-c", "%a", "/etc/pxtest.conf"]).stdout.strip() == "600"
    # Nothing of this reached the pristine root.
    assert not (node.root / "etc" / "pxtest.conf").exists()
    assert not (node.root / "var" / "lib" / "pxtest").exists()


def test_reboot_keeps_disk_state_and_journal(node: Node) -> None:
    node.write_file("/var/lib/pxtest/state", "kept")
    node.write_file("/run/pxtest/volatile", "gone")
    node.run(["systemd-run", "--unit=marker", "--property=Type=oneshot", "true"])
    old_leader = node.leader_pid
    node.reboot()
    assert node.leader_pid != old_leader
    assert node.boot_count == 2
    assert node.boot_state == "running"
    assert node.read_file("/var/lib/pxtest/state") == "kept"
    assert not node.exists("/run/pxtest/volatile")
    assert node.read_file("/etc/machine-id").strip() == node.machine_id
    boots = node.run(["journalctl", "--list-boots", "--no-pager"]).stdout.strip().splitlines()
    assert len(boots) >= 2, boots
    assert "marker" in node.journal("marker")


def test_power_cut_kills_everything_and_boots_again(node: Node) -> None:
    node.run(["systemd-run", "--unit=sleeper", "sleep", "infinity"])
    sleeper = int(node.unit_property("sleeper", "MainPID"))
    assert sleeper > 0
    # Host PID of the sleeper, to check it really died.
    host_sleepers_before = subprocess.run(
        ["pgrep", "-x", "-P", str(node.leader_pid), "sleep"], capture_output=True, text=True
    ).stdout.split()
    assert len(host_sleepers_before) == 1
    node.write_file("/var/lib/pxtest/before-cut", "written")
    old_leader = node.leader_pid
    node.power_cut()
    assert not _alive(old_leader)
    assert not _alive(int(host_sleepers_before[0]))
    assert node.boot_state == "running"
    assert node.read_file("/var/lib/pxtest/before-cut") == "written"
    # The transient unit is gone with the old boot.
    assert node.run(["systemctl", "is-active", "sleeper"], check=False).stdout.strip() != "active"


def test_install_deb_works_offline(node: Node, tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        textwrap.dedent("""\
        Package: pxnode-probe
        Version: 1.0
        Architecture: all
        Maintainer: pxhostd tests <tests@localhost>
        Depends: python3-yaml, python3-dbus-fast, systemd
        Description: probe package for the node harness
        """)
    )
    unit_dir = pkg / "usr" / "lib" / "systemd" / "system"
    unit_dir.mkdir(parents=True)
    (unit_dir / "pxprobe.service").write_text(
        "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
        "ExecStart=/usr/bin/python3 -c 'import yaml, dbus_fast'\n"
    )
    deb = tmp_path / "pxnode-probe_1.0_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-b", str(pkg), str(deb)],
        check=True,
        capture_output=True,
    )
    node.install_deb(deb)
    assert (
        "install ok installed"
        in node.run(["dpkg-query", "-W", "-f", "${Status}", "pxnode-probe"]).stdout
    )
    node.run(["systemctl", "start", "pxprobe"])
    node.wait_active("pxprobe")


def test_stop_leaves_no_process_and_no_mount(node_root: Path) -> None:
    node = Node(node_root).start()
    assert node.scratch is not None and node._nspawn is not None
    scratch, pids = node.scratch, [node.leader_pid, node._nspawn.pid]
    node.stop()
    _assert_no_trace(scratch, pids)
    node.stop()  # idempotent
    assert not node.running


def test_boot_failure_is_reported_with_the_console(tmp_path: Path) -> None:
    broken = tmp_path / "root"
    (broken / "etc").mkdir(parents=True)
    (broken / "etc" / "pxhostd-node-root").write_text("fake\n")
    scratch_parent = tmp_path / "scratch"
    node = Node(broken, log_dir=tmp_path / "logs", scratch_parent=scratch_parent)
    with pytest.raises(NodeBootError, match="failed to boot") as info:
        node.start()
    assert "console" in str(info.value)
    assert list(scratch_parent.glob(SCRATCH_PREFIX + "*")) == []
    assert not [m for m in _mount_points() if m.startswith(str(scratch_parent))]


_OWNER_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from nodeharness import Node
node = Node(Path({root!r}), scratch_parent=Path({scratch!r}), log_dir=Path({logs!r})).start()
print(node.scratch, node.leader_pid, node._nspawn.pid, flush=True)
time.sleep(600)
"""


def _start_owner(node_root: Path, tmp_path: Path) -> tuple[subprocess.Popen[str], Path, list[int]]:
    script = _OWNER_SCRIPT.format(
        tests=str(REPO_ROOT / "tests"),
        root=str(node_root),
        scratch=str(tmp_path / "scratch"),
        logs=str(tmp_path / "logs"),
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    line = owner.stdout.readline().split()
    owner.stdout.close()
    assert len(line) == 3, f"owner did not start a node (exit {owner.poll()})"
    return owner, Path(line[0]), [int(line[1]), int(line[2])]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_owner_stopped_by_signal_tears_its_node_down(
    node_root: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    owner, scratch, pids = _start_owner(node_root, tmp_path)
    try:
        os.kill(owner.pid, sig)
        owner.wait(timeout=60)
    finally:
        owner.kill()
        owner.wait()
    _assert_no_trace(scratch, pids)


def test_node_of_a_killed_owner_is_swept(node_root: Path, tmp_path: Path) -> None:
    owner, scratch, pids = _start_owner(node_root, tmp_path)
    owner.kill()  # SIGKILL: no handler runs
    owner.wait()
    sweep_stale(tmp_path / "scratch")
    _assert_no_trace(scratch, pids)
