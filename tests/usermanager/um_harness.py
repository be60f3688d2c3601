"""A real `systemd --user` manager on a private D-Bus bus, for tests.

How it is built (each step is there for a reason):

* The manager runs as PID 1's child in fresh PID and mount namespaces
  (`unshare --pid --fork --kill-child --mount-proc --propagation private`).  Its own
  view of /proc matches its PID namespace, and killing the namespace's init kills every
  process in it: nothing can leak, whatever state the units are in.
* `setpriv --pdeathsig KILL` on `unshare`: if the test process dies, `unshare` dies,
  and `--kill-child` takes the namespace down with it.
* Inside, a tmpfs on /run/systemd with /run/systemd/system: the manager sees a "booted"
  system without touching the machine's real /run.
* Before anything starts, the launcher moves itself into a fresh cgroup in every cgroup
  hierarchy.  Without this, a manager started in the machine's root cgroup moves *every
  process of the machine* into `/init.scope` (it thinks it owns the tree).
* The bus is the manager's own: `dbus.socket`/`dbus.service` units in the test unit
  directory run a private `dbus-daemon` on $XDG_RUNTIME_DIR/bus (the manager connects to
  its API bus only once its own dbus units run; a daemon started beside it is ignored).
  The socket lives in the scratch directory, visible from the test process (the private
  tmpfs covers /run/systemd only), and the manager owns `org.freedesktop.systemd1` there:
  a client speaks to it exactly as it would to PID 1 on the system bus.
* With no journald the manager logs to /dev/console; a file is bound over it inside the
  namespace (`console.log`), so nothing reaches the machine's console.
* `--unit=` names an empty target in the test's own unit directory, so none of the
  machine's default user units (sockets of gpg-agent, dbus.socket, ...) start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PREFIX = "pxhostd-usermanager-"
IDLE_TARGET = "pxtest-idle.target"
SYSTEMD = "/lib/systemd/systemd"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

# The manager only connects to its API bus once *its own* dbus.socket and dbus.service
# run (that is how it knows the bus is up), so the bus is a unit of the manager, exactly
# as in a real user session, with a private, minimal configuration.
DBUS_SOCKET_UNIT = """[Unit]
Description=Private test bus socket

[Socket]
ListenStream={socket}
"""

DBUS_SERVICE_UNIT = """[Unit]
Description=Private test bus
Requires=dbus.socket

[Service]
Type=notify
NotifyAccess=main
ExecStart=dbus-daemon --config-file={config} --nofork --nopidfile --systemd-activation
StandardOutput=append:{log}
StandardError=append:{log}
"""

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>systemd:</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

# Runs as PID 1 of the new PID namespace.  It stays alive (`wait`) so the namespace lives
# exactly as long as this shell; a stray exit code tells the fixture what went wrong.
INNER_SCRIPT = r"""
set -eu
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mkdir /run/systemd/system
# The manager logs to the console when it has no journal: make that its log file.
mount --bind "$PXT_LOG" /dev/console
"$PXT_SYSTEMD" --user --unit="$PXT_IDLE_TARGET" --log-target=console --log-level="$PXT_LOG_LEVEL" &
wait
"""

# Runs in the machine's namespaces: join the fresh cgroups first, then build the rest.
OUTER_SCRIPT = r"""
set -eu
for procs in $PXT_CGROUP_PROCS; do echo 0 > "$procs"; done
exec unshare --pid --fork --kill-child --mount-proc --propagation private \
    sh -c "$PXT_INNER"
"""


class UserManagerError(RuntimeError):
    """The user manager could not be started or stopped cleanly (a test failure)."""


def cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy root (one on a pure cgroup2 machine)."""
    if (CGROUP_ROOT / "cgroup.procs").exists():
        return [CGROUP_ROOT]
    return sorted(p for p in CGROUP_ROOT.iterdir() if (p / "cgroup.procs").exists())


def cgroup_pids(group: Path) -> list[int]:
    pids: list[int] = []
    for procs in group.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids.extend(int(x) for x in procs.read_text().split())
    return pids


def _remove_cgroup_tree(group: Path) -> None:
    """rmdir depth-first: cgroup directories only go away with rmdir, one level at a time."""
    if not group.exists():
        return
    dirs = sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    for d in [*dirs, group]:
        with contextlib.suppress(FileNotFoundError):
            d.rmdir()


def _inherit_cpuset(group: Path) -> None:
    """A new cgroup-v1 cpuset group starts empty and refuses tasks: copy the parent's."""
    for knob in ("cpuset.cpus", "cpuset.mems"):
        mine = group / knob
        if mine.exists() and not mine.read_text().strip():
            mine.write_text((group.parent / knob).read_text())


def sweep_stale_cgroups() -> None:
    """Remove empty cgroups left by a test process that was killed (SIGKILL)."""
    for hierarchy in cgroup_hierarchies():
        for group in hierarchy.glob(CGROUP_PREFIX + "*"):
            owner = group.name[len(CGROUP_PREFIX):].split("-")[0]
            if owner.isdigit() and Path(f"/proc/{owner}").exists():
                continue
            if not cgroup_pids(group):
                with contextlib.suppress(OSError):
                    _remove_cgroup_tree(group)


@dataclass
class UserManager:
    """One running `systemd --user` with its bus; `stop()` leaves nothing behind."""

    base: Path
    systemd: str = SYSTEMD
    process: subprocess.Popen[bytes] | None = None
    cgroups: list[Path] = field(default_factory=list)

    @property
    def bus_socket(self) -> Path:
        return self.runtime_dir / "bus"

    @property
    def bus_address(self) -> str:
        return f"unix:path={self.bus_socket}"

    @property
    def runtime_dir(self) -> Path:
        return self.base / "run"

    @property
    def config_home(self) -> Path:
        return self.base / "config"

    @property
    def unit_dir(self) -> Path:
        """Where tests write unit files (the manager's highest-priority user unit path)."""
        return self.config_home / "systemd" / "user"

    @property
    def log_path(self) -> Path:
        return self.base / "manager.log"

    @property
    def console_path(self) -> Path:
        """The manager's own log (its /dev/console inside the namespace)."""
        return self.base / "console.log"

    def write_unit(self, name: str, text: str) -> Path:
        path = self.unit_dir / name
        path.write_text(text)
        return path

    def log_text(self) -> str:
        text = []
        for path in (self.log_path, self.console_path, self.base / "bus.log"):
            with contextlib.suppress(FileNotFoundError):
                text.append(path.read_text(errors="replace"))
        return "\n".join(text)

    def start(self) -> None:
        if len(str(self.bus_socket)) > 100:
            raise UserManagerError(f"socket path too long for AF_UNIX: {self.bus_socket}")
        self.runtime_dir.mkdir(mode=0o700, parents=True)
        self.unit_dir.mkdir(parents=True)
        for sub in ("data", "state", "cache", "home"):
            (self.base / sub).mkdir()
        self.write_unit(
            IDLE_TARGET,
            "[Unit]\nDescription=Idle target for pxhostd tests\nWants=dbus.service\n",
        )
        (self.base / "bus.conf").write_text(BUS_CONFIG)
        self.console_path.touch()
        self.write_unit("dbus.socket", DBUS_SOCKET_UNIT.format(socket=self.bus_socket))
        self.write_unit(
            "dbus.service",
            DBUS_SERVICE_UNIT.format(config=self.base / "bus.conf", log=self.base / "bus.log"),
        )
        self._make_cgroups()
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.base / "home"),
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "XDG_CONFIG_HOME": str(self.config_home),
            "XDG_DATA_HOME": str(self.base / "data"),
            "XDG_STATE_HOME": str(self.base / "state"),
            "XDG_CACHE_HOME": str(self.base / "cache"),
            "DBUS_SESSION_BUS_ADDRESS": self.bus_address,
            "PXT_LOG_LEVEL": os.environ.get("PXT_SYSTEMD_LOG_LEVEL", "info"),
            "PXT_SYSTEMD": self.systemd,
            "PXT_IDLE_TARGET": IDLE_TARGET,
            "PXT_INNER": INNER_SCRIPT,
            "PXT_LOG": str(self.console_path),
            "PXT_CGROUP_PROCS": " ".join(str(g / "cgroup.procs") for g in self.cgroups),
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["setpriv", "--pdeathsig", "KILL", "sh", "-c", OUTER_SCRIPT],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _make_cgroups(self) -> None:
        name = f"{CGROUP_PREFIX}{os.getpid()}-{self.base.name}"
        for hierarchy in cgroup_hierarchies():
            group = hierarchy / name
            try:
                group.mkdir()
            except OSError as exc:
                self._remove_cgroups()
                raise UserManagerError(
                    f"cannot create cgroup {group} ({exc}); refusing to start a user manager "
                    "in the machine's root cgroup, it would move every process into init.scope"
                ) from exc
            self.cgroups.append(group)
            _inherit_cpuset(group)

    def _wait_until_ready(self) -> None:
        """Ready = the manager owns org.freedesktop.systemd1 on our bus."""
        deadline = time.monotonic() + START_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise UserManagerError(
                    f"user manager exited with {self.process.returncode}:\n{self.log_text()}"
                )
            if self.bus_socket.exists():
                probe = subprocess.run(
                    ["busctl", f"--address={self.bus_address}", "call",
                     "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                     "GetNameOwner", "s", "org.freedesktop.systemd1"],
                    capture_output=True, text=True, timeout=10, check=False,
                )
                if probe.returncode == 0:
                    return
                last = probe.stderr.strip()
            time.sleep(0.1)
        raise UserManagerError(
            f"user manager did not own org.freedesktop.systemd1 within {START_TIMEOUT}s "
            f"({last}):\n{self.log_text()}"
        )

    def stop(self) -> None:
        """Kill the namespace (all its processes) and remove the cgroups; raise on a leak."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            # SIGKILL to unshare: --kill-child kills the namespace's init, and the kernel
            # then kills every process left in that PID namespace.
            os.killpg(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired as exc:
                raise UserManagerError(f"launcher {proc.pid} did not exit") from exc
        leaked = self._remove_cgroups()
        if leaked:
            raise UserManagerError(f"processes left after stopping the user manager: {leaked}")

    def _remove_cgroups(self) -> list[int]:
        deadline = time.monotonic() + STOP_TIMEOUT
        leaked: list[int] = []
        for group in self.cgroups:
            while (leaked := cgroup_pids(group)) and time.monotonic() < deadline:
                time.sleep(0.05)
            if leaked:
                return leaked
            _remove_cgroup_tree(group)
        self.cgroups.clear()
        return []


@contextlib.contextmanager
def running_user_manager(base: Path, systemd: str = SYSTEMD) -> Iterator[UserManager]:
    """Start a user manager under `base`; always stop it, even when the body fails."""
    if shutil.which("unshare") is None or shutil.which("dbus-daemon") is None:
        raise UserManagerError("unshare (util-linux) and dbus-daemon are needed")
    sweep_stale_cgroups()
    manager = UserManager(base=base, systemd=systemd)
    manager.start()
    try:
        yield manager
    finally:
        manager.stop()
