"""The pod's conversation with the host daemon: wait for it, submit, follow, uninstall.

All of it goes through the client library (`pxhostd.bus.client`), over the host's system
bus socket that the DaemonSet mounts at /run/dbus. On the way out the pod only closes its
connection: no call on shutdown, so a pod going away never asks anything of pxhostd.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pxhostd.bus.client import BUSY_WAIT, Connect, PxClient
from pxhostd.errors import Busy, DaemonUnavailable, PxError, Timeout

#: How long the pod waits for pxhostd to answer on the bus (seconds).
DAEMON_WAIT = 120.0
#: Bound on one install or uninstall transaction (a payload may start slowly).
TRANSACTION_TIMEOUT = 1800.0

Say = Callable[[str], None]
_log = logging.getLogger(__name__)


async def wait_for_daemon(connect: Connect, say: Say, timeout: float = DAEMON_WAIT) -> PxClient:
    """A connected client once pxhostd answers Status; DaemonUnavailable after `timeout`."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        client: PxClient | None = None
        try:
            client = await connect()
            status = await client.status()
            _log.debug("pxhostd status: %s", status)
            return client
        except (DaemonUnavailable, Timeout) as exc:
            if client is not None:
                client.close()
            if time.monotonic() >= deadline:
                raise DaemonUnavailable(
                    f"pxhostd did not answer on the system bus within {timeout:g} s: {exc}"
                ) from exc
            if not told:
                say(f"waiting for pxhostd on the system bus ({exc})")
                told = True
        except BaseException:
            if client is not None:
                client.close()
            raise
        await asyncio.sleep(0.5)


def progress_printer(say: Say, what: str) -> Callable[[int, str], None]:
    last = [""]

    def on_progress(percent: int, message: str) -> None:
        line = f"{what}: {percent:3d}% {message}"
        if line != last[0]:
            last[0] = line
            say(line)

    return on_progress


async def _submit(start: Callable[[], Awaitable[str]], say: Say, what: str) -> str:
    deadline = time.monotonic() + BUSY_WAIT
    told = False
    while True:
        try:
            return await start()
        except Busy as exc:
            if time.monotonic() >= deadline:
                raise
            if not told:
                say(f"{what}: pxhostd is busy ({exc}); waiting")
                told = True
        await asyncio.sleep(2.0)


async def install(
    client: PxClient, spec: Mapping[str, Any], txid: str, say: Say,
    timeout: float = TRANSACTION_TIMEOUT,
) -> dict[str, Any]:
    """Submit the spec and follow the transaction; its result dict (not raised)."""
    path = await _submit(lambda: client.install(spec, txid), say, "install")
    say(f"install: transaction {path} (id {txid})")
    return await client.wait(path, progress_printer(say, "install"), timeout)


async def uninstall(
    client: PxClient, wipe: bool, txid: str, say: Say, timeout: float = TRANSACTION_TIMEOUT
) -> dict[str, Any]:
    path = await _submit(lambda: client.uninstall(wipe, txid), say, "uninstall")
    say(f"uninstall: transaction {path} (id {txid})")
    return await client.wait(path, progress_printer(say, "uninstall"), timeout)


def result_line(what: str, result: Mapping[str, Any]) -> str:
    """One line that says how a transaction ended."""
    if result.get("success"):
        message = str(result.get("message") or "done")
        return f"{what}: done ({'changed' if result.get('changed') else 'nothing changed'}): " \
               f"{message}"
    name = str(result.get("error_name", "")).rsplit(".", 1)[-1] or "Failed"
    return f"{what}: failed: {name}: {result.get('error_message', '')}"


def error_line(what: str, exc: PxError) -> str:
    return f"{what}: failed: {exc.name}: {exc}"
