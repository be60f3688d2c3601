"""PID-1 duties of the pod entrypoint: stop on SIGTERM/SIGINT, and reap adopted orphans.

The Swarm prototype's monitor ignored signals and left orphans; the kubelet then had to
SIGKILL it. Here a stop signal only sets an asyncio Event (the entrypoint decides how to
wind down, never stopping the storage service), and a reaper collects the zombies of
processes that were re-parented to us.

Reaping without stealing. asyncio waits for its own subprocesses with a child watcher: in
Python 3.11 the default ThreadedChildWatcher runs `waitpid(pid, 0)` for each child in a
thread; the PidfdChildWatcher (opt-in in 3.11, default from 3.12) calls `waitpid(pid)` from
the event loop once the child's pidfd turns readable. Both reap *their* pid, never
`waitpid(-1)`. A reaper that called `waitpid(-1, WNOHANG)` would race them and win
sometimes, and asyncio would report exit status 255 for that child. So this reaper never
waits on "any child". It lists its zombie children (/proc/self/task/*/children, else a
/proc scan), and reaps one by pid only when (a) no one declared it theirs (`hold`) and
(b) it has stayed a zombie for a grace period. A watcher reaps its child within
microseconds (thread) or in the same event loop pass that the pidfd fires in, which comes
before our grace timer, so whatever is still a zombie after the grace is an orphan no one
waits for. A `subprocess.Popen` that is polled late should be `hold`-ed. The default
watchers are left as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37

_log = logging.getLogger(__name__)


def install_stop_handlers(
    loop: asyncio.AbstractEventLoop,
    stop: asyncio.Event,
    signals: Iterable[signal.Signals] = STOP_SIGNALS,
) -> Callable[[], None]:
    """Make each of `signals` set `stop`; return a function that removes the handlers.

    No TTY needed, nothing else done in the handler: the program awaits `stop` and
    winds down itself (within the kubelet's grace period).
    """
    installed = list(signals)

    def on_signal(signum: signal.Signals) -> None:
        if not stop.is_set():
            _log.info("%s received; stopping (the storage service keeps running)", signum.name)
        stop.set()

    for signum in installed:
        loop.add_signal_handler(signum, on_signal, signum)

    def remove() -> None:
        for signum in installed:
            loop.remove_signal_handler(signum)

    return remove


def _libc_prctl(option: int, arg: int) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    result = int(libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), 0, 0, 0))
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def set_child_subreaper() -> None:
    """Adopt orphaned descendants as PID 1 would (prctl PR_SET_CHILD_SUBREAPER)."""
    _libc_prctl(PR_SET_CHILD_SUBREAPER, 1)


def adopts_orphans() -> bool:
    """Whether orphans of our descendants become our children (PID 1, or a subreaper)."""
    if os.getpid() == 1:
        return True
    value = ctypes.c_int(0)
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(ctypes.c_int(PR_GET_CHILD_SUBREAPER), ctypes.byref(value), 0, 0, 0) < 0:
        return False
    return value.value != 0


def _read_stat(proc: Path, pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None if it is gone."""
    try:
        text = (proc / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # "pid (comm) S ppid ...": comm may hold spaces and parentheses; cut at the last ')'.
    rest = text[text.rfind(")") + 2 :].split(" ")
    try:
        return rest[0], int(rest[1])
    except (IndexError, ValueError):
        return None


class ChildReaper:
    """Reaps orphans re-parented to this process; leaves the children others wait for."""

    def __init__(
        self,
        *,
        grace: float = 1.0,
        interval: float = 5.0,
        proc: Path = Path("/proc"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.grace = grace
        self.interval = interval
        self._proc = proc
        self._clock = clock
        self._pid = os.getpid()
        self._held: set[int] = set()
        self._zombie_since: dict[int, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._retry: asyncio.TimerHandle | None = None
        #: pid -> raw wait status of every orphan reaped (for logs and tests).
        self.reaped: dict[int, int] = {}

    # -- registry of children someone else waits for -------------------------------------

    def hold(self, pid: int) -> None:
        self._held.add(pid)

    def release(self, pid: int) -> None:
        self._held.discard(pid)

    @contextlib.contextmanager
    def holding(self, pid: int) -> Iterator[None]:
        self.hold(pid)
        try:
            yield
        finally:
            self.release(pid)

    # -- finding and reaping ---------------------------------------------------------------

    def _children(self) -> set[int]:
        task_dir = self._proc / "self" / "task"
        pids: set[int] = set()
        try:
            tasks = list(task_dir.iterdir())
            for task in tasks:
                pids.update(int(p) for p in (task / "children").read_text().split())
            return pids
        except FileNotFoundError:
            pass  # kernel without CONFIG_PROC_CHILDREN: scan every process
        except OSError as exc:
            _log.debug("cannot list children via %s: %s", task_dir, exc)
        for entry in self._proc.iterdir():
            if entry.name.isdigit():
                stat = _read_stat(self._proc, int(entry.name))
                if stat is not None and stat[1] == self._pid:
                    pids.add(int(entry.name))
        return pids

    def zombie_children(self) -> list[int]:
        found = []
        for pid in sorted(self._children()):
            stat = _read_stat(self._proc, pid)
            if stat is not None and stat[0] == "Z" and stat[1] == self._pid:
                found.append(pid)
        return found

    def sweep(self) -> list[int]:
        """One pass: reap orphans that stayed zombies past the grace; return their pids."""
        now = self._clock()
        zombies = self.zombie_children()
        self._zombie_since = {pid: self._zombie_since.get(pid, now) for pid in zombies}
        reaped: list[int] = []
        for pid in zombies:
            if pid in self._held or now - self._zombie_since[pid] < self.grace:
                continue
            try:
                got, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                got, status = 0, 0  # someone else reaped it in the meantime
            self._zombie_since.pop(pid, None)
            if got == pid:
                self.reaped[pid] = status
                reaped.append(pid)
                _log.debug("reaped orphan %d (status %d)", pid, status)
        return reaped

    @property
    def pending(self) -> bool:
        """Zombies seen but not yet old enough to reap."""
        return any(pid not in self._held for pid in self._zombie_since)

    # -- running on an event loop ----------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Sweep on every SIGCHLD and every `interval` seconds (signals can coalesce)."""
        self._loop = loop
        loop.add_signal_handler(signal.SIGCHLD, self._on_sigchld)
        self._tick()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGCHLD)
        for handle in (self._timer, self._retry):
            if handle is not None:
                handle.cancel()
        self._loop = None

    def _run_sweep(self) -> None:
        try:
            self.sweep()
        except OSError as exc:
            _log.warning("reaping orphans failed: %s", exc)
        if self.pending and self._loop is not None and self._retry is None:
            # Come back once the youngest zombie is old enough.
            self._retry = self._loop.call_later(self.grace, self._retry_sweep)

    def _retry_sweep(self) -> None:
        self._retry = None
        self._run_sweep()

    def _on_sigchld(self) -> None:
        self._run_sweep()

    def _tick(self) -> None:
        self._run_sweep()
        if self._loop is not None:
            self._timer = self._loop.call_later(self.interval, self._tick)
