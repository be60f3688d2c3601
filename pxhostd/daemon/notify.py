"""sd_notify for the daemon: readiness, status line, reload/stop, watchdog.

Thin on purpose: the `sdnotify` package sends one datagram per call and is a no-op when
NOTIFY_SOCKET is absent (run by hand, in tests).
"""

from __future__ import annotations

import logging
import os

import sdnotify

from pxhostd.status.statusfile import one_line

log = logging.getLogger(__name__)
#: systemctl status shows one line of STATUS=: the daemon keeps it short.
STATUS_LIMIT = 200


class Notifier:
    def __init__(self) -> None:
        # sdnotify opens a socket even without NOTIFY_SOCKET; only create it when needed.
        self._notifier = sdnotify.SystemdNotifier() if os.environ.get("NOTIFY_SOCKET") else None
        # Like sd_notify(unset_environment=1): children (systemd-analyze, journalctl) must
        # not inherit the socket, or systemd logs their stray messages as foreign.
        os.environ.pop("NOTIFY_SOCKET", None)

    def send(self, *fields: str) -> None:
        if self._notifier is not None:
            self._notifier.notify("\n".join(fields))

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={one_line(status, STATUS_LIMIT)}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={one_line(status, STATUS_LIMIT)}")

    def reloading(self) -> None:
        self.send("RELOADING=1", "STATUS=reloading the spec")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Half of WatchdogSec= when systemd asked this process for pings, else None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 1_000_000 / 2, 0.5)
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC=%r", usec)
        return None
