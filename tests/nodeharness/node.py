"""A booted Debian 12 node: systemd-nspawn on a private overlay of the pristine root.

Lifecycle: `start()` mounts an overlay (lower = pristine root, upper/work in a scratch
dir), gives the node its own machine-id and hostname, and boots it with
`systemd-nspawn --boot --private-network`; `stop()` halts it and removes every trace.
`reboot()` and `power_cut()` boot again on the same upper dir, so state on the node's
disk survives them as it would on a real machine.

Commands run inside through `nsenter` into the node's namespaces, with a clean
environment.  The node's console goes to `<log_dir>/<name>.console.log`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from . import cleanup
from .errors import NodeBootError, NodeCommandError, NodeError, UnitFailed
from .polling import wait_for
from .root import REPO_ROOT

NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Where the harness puts files it copies in (not /tmp or /run: tmpfs inside the node).
NODE_DROP_DIR = "/var/lib/pxnode"


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


BOOT_TIMEOUT = _env_float("PXHOSTD_NODE_BOOT_TIMEOUT", 120.0)
#: A clean halt of a minimal node takes a second or two; past this we pull the plug.
STOP_TIMEOUT = _env_float("PXHOSTD_NODE_STOP_TIMEOUT", 30.0)
DEFAULT_COMMAND_TIMEOUT = 60.0

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # If the harness process is SIGKILLed, nspawn gets SIGTERM and halts the node.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def default_log_dir() -> Path:
    return Path(os.environ.get("PXHOSTD_NODE_LOG_DIR") or REPO_ROOT / ".cache" / "node-logs")


def default_scratch_parent() -> Path:
    return Path(os.environ.get("PXHOSTD_NODE_TMP") or tempfile.gettempdir())


class Node:
    """One booted node; use as a context manager or call `start()`/`stop()`."""

    def __init__(
        self,
        root: Path,
        *,
        name: str | None = None,
        log_dir: Path | None = None,
        scratch_parent: Path | None = None,
        unified_cgroup: bool = False,
        scratch_binds: Sequence[str] = (),
        nspawn_args: Sequence[str] = (),
    ) -> None:
        """`unified_cgroup`: boot with cgroup2 inside (what podman needs on a hybrid-cgroup
        machine). `scratch_binds`: node paths that get a fresh directory of the scratch
        area bound over them instead of the overlay (podman's overlay storage cannot live
        on an overlayfs)."""
        self.root = Path(root)
        self.unified_cgroup = unified_cgroup
        self.scratch_binds = tuple(scratch_binds)
        #: Extra systemd-nspawn options (a Docker node: DOCKER_NSPAWN_ARGS).
        self.nspawn_args = tuple(nspawn_args)
        self.name = name or f"pxnode-{secrets.token_hex(4)}"
        self.log_dir = log_dir or default_log_dir()
        self.console_log = self.log_dir / f"{self.name}.console.log"
        self._scratch_parent = scratch_parent or default_scratch_parent()
        self.scratch: Path | None = None
        self.merged: Path | None = None
        self.machine_id = uuid.uuid4().hex
        self.boot_state: str | None = None
        self.boot_count = 0
        self._nspawn: subprocess.Popen[bytes] | None = None
        self._leader: int | None = None
        self._console: IO[bytes] | None = None
        self._owner_fd: int | None = None
        self._mounted = False
        self._stopped = False

    def __repr__(self) -> str:
        return f"Node({self.name})"

    # ---- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Node:
        """Mount the overlay and boot; on any failure everything is torn down again."""
        if self.scratch is not None:
            raise NodeError(f"{self.name} was already started")
        if not (self.root / "etc" / "pxhostd-node-root").is_file():
            raise NodeError(f"{self.root} is not a node root (see scripts/build-node-root)")
        self._scratch_parent.mkdir(parents=True, exist_ok=True)
        cleanup.sweep_stale(self._scratch_parent, self._log)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        cleanup.register(self)
        try:
            self.scratch = Path(
                tempfile.mkdtemp(prefix=cleanup.SCRATCH_PREFIX, dir=self._scratch_parent)
            )
            self._owner_fd = cleanup.hold_owner_lock(self.scratch)
            self._mount_overlay()
            self._personalize()
            self._boot()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Halt the node cleanly (or kill it if it hangs), unmount, delete scratch. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        with cleanup.signals_deferred():
            self._teardown()

    def _teardown(self) -> None:
        try:
            self._halt()
        finally:
            try:
                self._unmount_overlay()
                if self.scratch is not None:
                    shutil.rmtree(self.scratch, ignore_errors=True)
            finally:
                if self._owner_fd is not None:
                    os.close(self._owner_fd)
                    self._owner_fd = None
                cleanup.unregister(self)

    def reboot(self) -> None:
        """Clean shutdown, then boot again on the same disk (upper dir)."""
        self._require_running()
        self._halt()
        self._boot()

    def power_cut(self) -> None:
        """Kill the whole node at once (SIGKILL to its init and to nspawn), then boot again.

        Everything running on the node dies mid-step.  Writes that reached the overlay stay
        (the host's page cache survives), so this models a crash of the node's processes,
        not the loss of unsynced data.
        """
        self._require_running()
        self._kill()
        self._boot()

    @property
    def running(self) -> bool:
        return self._nspawn is not None and self._nspawn.poll() is None

    @property
    def leader_pid(self) -> int:
        """PID (on the host) of the node's init."""
        return self._require_running()

    # ---- commands ----------------------------------------------------------------------

    def run(
        self,
        cmd: Sequence[str] | str,
        *,
        check: bool = True,
        user: str | None = None,
        input: str | None = None,
        timeout: float = DEFAULT_COMMAND_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` in the node (a string goes through `sh -c`) as root or as `user`."""
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        raw = self._exec(
            argv,
            input=input.encode() if input is not None else None,
            timeout=timeout,
            user=user,
            env=env,
        )
        result = subprocess.CompletedProcess(
            argv,
            raw.returncode,
            raw.stdout.decode(errors="replace"),
            raw.stderr.decode(errors="replace"),
        )
        if check and result.returncode != 0:
            raise NodeCommandError(self.name, result, f"exit status {result.returncode}")
        return result

    def run_bytes(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float = DEFAULT_COMMAND_TIMEOUT,
    ) -> subprocess.CompletedProcess[bytes]:
        """Like `run` with byte I/O and check=True; for file transfer."""
        raw = self._exec(list(argv), input=input, timeout=timeout, user=None, env=None)
        if raw.returncode != 0:
            text = subprocess.CompletedProcess(
                raw.args, raw.returncode, "<binary>", raw.stderr.decode(errors="replace")
            )
            raise NodeCommandError(self.name, text, f"exit status {raw.returncode}")
        return raw

    def copy_in(self, host_path: Path | str, node_path: str, *, mode: int | None = None) -> None:
        """Copy a file or directory tree into the node (any path, also /run and /tmp)."""
        src = Path(host_path)
        if src.is_dir():
            tar = subprocess.run(
                ["tar", "-C", str(src), "-cf", "-", "."], capture_output=True, check=True
            )
            self.run_bytes(
                ["sh", "-c", 'mkdir -p -- "$1" && tar -C "$1" -xf -', "sh", node_path],
                input=tar.stdout,
            )
            return
        file_mode = mode if mode is not None else src.stat().st_mode & 0o7777
        self.write_file(node_path, src.read_bytes(), mode=file_mode)

    def write_file(self, node_path: str, data: bytes | str, *, mode: int = 0o644) -> None:
        """Write `data` to `node_path` inside the node, creating parent directories."""
        payload = data.encode() if isinstance(data, str) else data
        self.run_bytes(
            [
                "sh",
                "-c",
                'mkdir -p -- "$(dirname -- "$1")" && cat >"$1" && chmod "$2" "$1"',
                "sh",
                node_path,
                f"{mode:o}",
            ],
            input=payload,
        )

    def read_file(self, node_path: str) -> str:
        """Read a file through the node (so its /run and /tmp are the node's own)."""
        return self.read_bytes(node_path).decode()

    def read_bytes(self, node_path: str) -> bytes:
        return self.run_bytes(["cat", "--", node_path]).stdout

    def exists(self, node_path: str) -> bool:
        return self.run(["test", "-e", node_path], check=False).returncode == 0

    def install_deb(self, deb: Path | str, *, timeout: float = 300.0) -> str:
        """Install a .deb with apt (offline: its dependencies are in the root); return output."""
        src = Path(deb)
        target = f"{NODE_DROP_DIR}/debs/{src.name}"
        self.copy_in(src, target, mode=0o644)
        result = self.run(
            # No --no-download: apt then refuses local files.  Nothing is downloaded
            # anyway: the node has no network and the dependencies are in the root.
            ["apt-get", "install", "-y", "--no-install-recommends", target],
            env={"DEBIAN_FRONTEND": "noninteractive"},
            timeout=timeout,
        )
        return result.stdout + result.stderr

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", *args], check=check)

    def unit_property(self, unit: str, prop: str) -> str:
        return self.run(["systemctl", "show", "--value", "-p", prop, unit]).stdout.strip()

    def wait_active(self, unit: str, timeout: float = 60.0) -> None:
        """Poll `systemctl is-active` until `active` (for Type=notify: READY=1 was sent).

        `failed` ends the wait at once: systemd has given up on the unit (a unit waiting
        to be restarted shows as `activating`)."""
        state = wait_for(
            lambda: self.run(["systemctl", "is-active", unit], check=False).stdout.strip(),
            lambda state: state in ("active", "failed"),
            timeout=timeout,
            what=f"{unit} to be active on {self.name}",
        )
        if state == "failed":
            status = self.run(["systemctl", "status", "--lines=20", unit], check=False)
            raise UnitFailed(f"{unit} failed on {self.name}:\n{status.stdout}")

    def journal(self, unit: str | None = None, *, this_boot: bool = False) -> str:
        """The node's journal (all boots unless `this_boot`), optionally of one unit."""
        argv = ["journalctl", "--no-pager", "-o", "short-precise"]
        if this_boot:
            argv.append("-b")
        if unit:
            argv += ["-u", unit]
        return self.run(argv).stdout

    def save_diagnostics(self) -> Path:
        """Write the node's journal and failed units next to its console log."""
        path = self.log_dir / f"{self.name}.journal.log"
        parts = []
        if self.running:
            for argv in (
                ["systemctl", "--failed", "--no-legend"],
                ["journalctl", "--no-pager", "-o", "short-precise"],
            ):
                res = self.run(argv, check=False, timeout=30)
                parts.append(f"$ {shlex.join(argv)}\n{res.stdout}{res.stderr}")
        else:
            parts.append("(node not running)")
        path.write_text("\n".join(parts))
        return path

    def console_tail(self, lines: int = 60) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return "\n".join(text.splitlines()[-lines:])

    # ---- internals ---------------------------------------------------------------------

    def _log(self, message: str) -> None:
        with contextlib.suppress(OSError), open(self.console_log, "a") as f:
            f.write(f"[nodeharness {time.strftime('%H:%M:%S')}] {message}\n")

    def _mount_overlay(self) -> None:
        assert self.scratch is not None
        upper, work, merged = (self.scratch / d for d in ("upper", "work", "merged"))
        for d in (upper, work, merged):
            d.mkdir()
        opts = f"lowerdir={self.root},upperdir={upper},workdir={work}"
        proc = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise NodeError(f"cannot mount overlay for {self.name}: {proc.stderr.strip()}")
        self._mounted = True
        self.merged = merged

    def _unmount_overlay(self) -> None:
        if not self._mounted or self.merged is None:
            return
        proc = subprocess.run(["umount", str(self.merged)], capture_output=True, text=True)
        if proc.returncode != 0:
            self._log(f"umount failed ({proc.stderr.strip()}); detaching lazily")
            cleanup.unmount_under(self.merged)
        self._mounted = False

    def _personalize(self) -> None:
        # Before the first boot, so both survive reboots and no two nodes share them.
        assert self.merged is not None
        (self.merged / "etc" / "machine-id").write_text(self.machine_id + "\n")
        (self.merged / "etc" / "hostname").write_text(self.name + "\n")

    def _boot(self) -> None:
        assert self.merged is not None
        self.boot_count += 1
        self._leader = None
        self._log(f"boot #{self.boot_count} of {self.name}")
        self._console = open(self.console_log, "ab")  # noqa: SIM115 -- lives as long as nspawn
        argv = [
            "systemd-nspawn",
            f"--directory={self.merged}",
            f"--machine={self.name}",
            "--boot",
            "--keep-unit",
            "--register=no",
            "--private-network",
            "--console=read-only",
            "--link-journal=no",
            "--resolv-conf=off",
            "--timezone=off",
        ]
        assert self.scratch is not None
        for i, node_path in enumerate(self.scratch_binds):
            source = self.scratch / f"bind-{i}"
            source.mkdir(exist_ok=True)
            argv.append(f"--bind={source}:{node_path}")
        argv.extend(self.nspawn_args)
        env = dict(os.environ)
        if self.unified_cgroup:
            env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "1"
        self._nspawn = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C on the terminal reaches us, not the node
            preexec_fn=_die_with_parent,
        )
        started = time.monotonic()
        self._wait_until_booted(started + BOOT_TIMEOUT)
        self._log(f"{self.name} is {self.boot_state} after {time.monotonic() - started:.1f}s")

    def _wait_until_booted(self, deadline: float) -> None:
        last = ""
        while time.monotonic() < deadline:
            if not self.running:
                raise self._boot_error("systemd-nspawn exited during boot")
            if self._leader is None:
                self._leader = self._find_leader()
                if self._leader is None:
                    time.sleep(0.1)
                    continue
            remaining = max(1.0, deadline - time.monotonic())
            try:
                res = self.run(
                    ["systemctl", "is-system-running", "--wait"],
                    check=False,
                    timeout=remaining,
                )
            except NodeCommandError as exc:  # timed out
                last = str(exc)
                break
            last = (res.stdout + res.stderr).strip()
            state = res.stdout.strip()
            if state in ("running", "degraded"):
                self.boot_state = state
                if state == "degraded":
                    failed = self.run(["systemctl", "--failed", "--no-legend"], check=False)
                    self._log(f"degraded; failed units:\n{failed.stdout}")
                return
            time.sleep(0.2)  # bus not up yet, or still starting
        raise self._boot_error(f"not running within {BOOT_TIMEOUT:.0f}s (last: {last!r})")

    def _boot_error(self, reason: str) -> NodeBootError:
        self._log(reason)
        if self._console is not None:
            self._console.flush()
        return NodeBootError(
            f"node {self.name} failed to boot: {reason}\n"
            f"--- console ({self.console_log}) ---\n{self.console_tail()}"
        )

    def _find_leader(self) -> int | None:
        """The node's init: a descendant of nspawn that is PID 1 in its own namespace."""
        assert self._nspawn is not None
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Field 4 (ppid) follows the ")" that closes the command name.
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        frontier = [self._nspawn.pid]
        while frontier:
            pid = frontier.pop()
            for child, parent in parents.items():
                if parent != pid:
                    continue
                if cleanup.is_namespace_init(child):
                    return child
                frontier.append(child)
        return None

    def _require_running(self) -> int:
        if self._stopped or not self.running or self._leader is None:
            raise NodeError(f"node {self.name} is not running")
        return self._leader

    def _exec(
        self,
        argv: list[str],
        *,
        input: bytes | None,
        timeout: float,
        user: str | None,
        env: Mapping[str, str] | None,
    ) -> subprocess.CompletedProcess[bytes]:
        if self._leader is None or not self.running:
            raise NodeError(f"node {self.name} is not running")
        extra = [f"{k}={v}" for k, v in (env or {}).items()]
        base = ["env", "-i", f"PATH={NODE_PATH}", "LANG=C.UTF-8", "TERM=dumb"]
        if user is None:
            inner = [*base, "HOME=/root", "USER=root", *extra, *argv]
        else:
            setpriv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]
            inner = [*base, *setpriv, "--reset-env", "--", "env", *extra, *argv]
        full = ["nsenter", "-t", str(self._leader), "-m", "-u", "-i", "-n", "-p", "--", *inner]
        proc = subprocess.Popen(
            full,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # so a timeout kills nsenter and its forked child
        )
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            self._wait_group_gone(proc.pid)
            result = subprocess.CompletedProcess(
                argv, -9, out.decode(errors="replace"), err.decode(errors="replace")
            )
            raise NodeCommandError(self.name, result, f"timed out after {timeout:.0f}s") from None
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def _halt(self) -> None:
        """SIGTERM to nspawn halts the node cleanly; past STOP_TIMEOUT pull the plug."""
        if self._nspawn is None:
            return
        if self._nspawn.poll() is None:
            self._log("halting")
            with contextlib.suppress(ProcessLookupError):
                self._nspawn.send_signal(signal.SIGTERM)
            try:
                self._nspawn.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._log(f"no clean halt within {STOP_TIMEOUT:.0f}s; killing")
        self._kill()

    def _kill(self) -> None:
        """SIGKILL the node's init (which takes its whole PID namespace) and nspawn."""
        if self._nspawn is None:
            return
        # The init first: it takes the whole node with it.  Killing nspawn alone would
        # leave the node running, orphaned.
        leader = self._leader
        if leader is not None and self._alive(leader) and cleanup.is_namespace_init(leader):
            self._log("power cut")
            with contextlib.suppress(ProcessLookupError):
                os.kill(leader, signal.SIGKILL)
            # nspawn sees its container die, reaps it and exits by itself.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._nspawn.wait(timeout=10)
        if self._nspawn.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._nspawn.kill()
        self._nspawn.wait()
        self._wait_gone(self._leader)
        self._nspawn = None
        self._leader = None
        if self._console is not None:
            self._console.close()
            self._console = None

    @staticmethod
    def _wait_group_gone(pgid: int, timeout: float = 10.0) -> None:
        """Until the killed command (in the node's PID namespace) has really exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    @staticmethod
    def _alive(pid: int) -> bool:
        """Running; a zombie (dead, waiting for a reaper that is not us) counts as gone."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z"

    @classmethod
    def _wait_gone(cls, pid: int | None, timeout: float = 10.0) -> None:
        if pid is None:
            return
        deadline = time.monotonic() + timeout
        while cls._alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
