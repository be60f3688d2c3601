"""Never leak a node: stop live nodes at exit and on SIGTERM/SIGHUP, sweep stale ones.

Each node's scratch directory holds `owner.lock`, flock'ed by the process that owns the
node for as long as it lives.  A scratch directory whose lock can be taken belongs to a
process that died without cleaning up (SIGKILL): `sweep_stale` stops what is left of
that node and removes it.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Protocol

SCRATCH_PREFIX = "pxnode-"
LOCK_NAME = "owner.lock"


class Stoppable(Protocol):
    def stop(self) -> None: ...


_live: list[Stoppable] = []
_lock = threading.Lock()
_installed = False


def register(node: Stoppable) -> None:
    install_handlers()
    with _lock:
        _live.append(node)


def unregister(node: Stoppable) -> None:
    with _lock:
        if node in _live:
            _live.remove(node)


def stop_all() -> None:
    """Stop every live node; one failing teardown does not keep the others running."""
    with _lock:
        nodes = list(reversed(_live))
    for node in nodes:
        try:
            node.stop()
        except Exception as exc:  # keep going: the others must still be stopped
            print(f"nodeharness: failed to stop {node}: {exc}", file=sys.stderr)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM/SIGHUP into the same path as Ctrl-C, so fixture finalizers,
    # `with` blocks and atexit all run.
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def install_handlers() -> None:
    """Idempotent; leaves alone any handler that someone else installed."""
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(stop_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _interrupt)


_DEFERRED = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C/SIGTERM/SIGHUP back while a teardown runs (it is bounded), so a second
    signal cannot cut it short and leak the node; they are acted on right after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def hold_owner_lock(scratch: Path) -> int:
    """Create and flock the scratch dir's owner lock; the fd stays open while we live."""
    fd = os.open(scratch / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def unmount_under(path: Path) -> None:
    """Lazily unmount every mount at or below `path`, deepest first."""
    prefix = str(path)
    with open("/proc/self/mounts", encoding="utf-8") as f:
        points = [line.split()[1] for line in f]
    points = [
        p.encode().decode("unicode_escape") for p in points
    ]  # /proc/mounts octal-escapes spaces
    inside = sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), reverse=True)
    for point in inside:
        subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL, check=False)


def is_namespace_init(pid: int) -> bool:
    """PID 1 of a PID namespace below ours (a node's init, seen from the host)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            ids = line.split()[1:]
            return len(ids) > 1 and ids[-1] == "1"
    return False


def _root_is_under(pid: int, scratch: Path) -> bool:
    """True if the process's root is the overlay whose upper dir is in `scratch`."""
    try:
        with open(f"/proc/{pid}/mountinfo", encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if fields[4] == "/":
                    return f"upperdir={scratch}/" in line
    except OSError:
        pass
    return False


def _kill_processes_of(scratch: Path) -> None:
    """SIGKILL the nspawn and the node init that run on `scratch` (the init takes its
    whole PID namespace with it; killing nspawn alone would leave the node running)."""
    needle = str(scratch).encode()
    killed: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        nspawn = needle in cmdline and b"systemd-nspawn" in cmdline
        if nspawn or (is_namespace_init(pid) and _root_is_under(pid, scratch)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_running(p) for p in killed):
        time.sleep(0.05)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def sweep_stale(parent: Path, log: Callable[[str], None] | None = None) -> None:
    """Remove nodes left behind by processes that died without tearing them down."""
    if not parent.is_dir():
        return
    for scratch in parent.glob(SCRATCH_PREFIX + "*"):
        lock = scratch / LOCK_NAME
        if not lock.is_file():
            continue
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its owner is alive
            if log:
                log(f"removing stale node scratch dir {scratch}")
            _kill_processes_of(scratch)
            unmount_under(scratch)
            shutil.rmtree(scratch, ignore_errors=True)
        finally:
            os.close(fd)
