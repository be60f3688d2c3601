"""`pxhostd`: the host daemon's command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from dbus_fast import BusType

from pxhostd import __version__
from pxhostd.daemon.service import Daemon, DaemonOptions
from pxhostd.errors import PxError
from pxhostd.log import setup_logging
from pxhostd.paths import Paths

log = logging.getLogger("pxhostd")

#: How long a thread may keep the GIL while another waits for it (Python's default: 5 ms).
#: The event loop shares the GIL with the import's threads, and a thread that runs Python
#: without a system call (the manifest parse: 65 ms for 20,000 entries) keeps it for the
#: whole interval each time the loop wants it back. Serving one Status() call wants it a
#: dozen times (each socket call gives it up), so at 5 ms such a call took 60 ms during a
#: parse; at 0.5 ms it takes a few. A waiting-free thread is never interrupted, so an
#: import on an idle daemon runs as fast as before.
GIL_SWITCH_INTERVAL = 0.0005


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="pxhostd",
        description="Host daemon that keeps the Portworx service installed and running "
        "under systemd. Normally started by systemd (pxhostd.service).",
    )
    p.add_argument("--version", action="version", version=f"pxhostd {__version__}")
    bus = p.add_mutually_exclusive_group()
    bus.add_argument("--system", action="store_true", help="use the system bus (default)")
    bus.add_argument("--session", action="store_true", help="use the session bus (testing)")
    bus.add_argument("--bus-address", metavar="ADDRESS", help="connect to this D-Bus address")
    p.add_argument(
        "--root",
        type=Path,
        metavar="DIR",
        help="keep all host state below DIR instead of / (testing)",
    )
    p.add_argument("--debug", action="store_true", help="log debug messages")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    setup_logging(args.debug)
    paths = Paths().under(args.root) if args.root else Paths()
    options = DaemonOptions(
        paths=paths,
        bus_address=args.bus_address,
        bus_type=BusType.SESSION if args.session else BusType.SYSTEM,
    )
    from pxhostd.engine.reconcile import HostEngine

    try:
        daemon = Daemon(options, HostEngine)
        return asyncio.run(daemon.run())
    except PxError as exc:
        log.error("%s", exc)
        return 1
    except (OSError, ConnectionError) as exc:
        log.error("cannot start: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
