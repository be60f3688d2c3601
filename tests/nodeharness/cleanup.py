"""Never leak a node: stop live nodes at exit and on SIGTERM/SIGHUP, sweep stale ones.

Each node's scratch directory holds `owner.lock`, flock'ed by the process that owns the
node for as long as it lives.  A scratch directory whose lock can be taken belongs to a
process that died without cleaning up (SIGKILL): `sweep_stale` stops what is left of
that node and removes it.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
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
    inside = sorted(
        (p for p in points if p == prefix or p.startswith(prefix + "/")), reverse=True
    )
    for point in inside:
        subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL, check=False)


def _kill_processes_using(path: Path) -> None:
    needle = str(path).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and b"systemd-nspawn" in cmdline:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


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
            _kill_processes_using(scratch)
            unmount_under(scratch)
            shutil.rmtree(scratch, ignore_errors=True)
        finally:
            os.close(fd)
