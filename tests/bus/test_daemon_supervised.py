"""The daemon's background tasks under faults: a failing status-file write never leaves a
stale READY=1 behind and recovers by itself; an essential task that dies makes the daemon
exit non-zero, so systemd restarts it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from daemon_harness import eventually
from fake_engine import FakeEngine
from test_manager import SPEC, running_daemon

from pxhostd.bus.client import PxClient
from pxhostd.daemon.service import Daemon, DaemonOptions
from pxhostd.errors import HostStateError
from pxhostd.paths import Paths
from pxhostd.status.statusfile import StatusMissing, read_status


def ready(path: Path) -> bool | None:
    try:
        return read_status(path).ready
    except StatusMissing:
        return None


def test_a_failing_status_write_withdraws_the_file_and_recovers(
    dbus_address: str, state_root: Path
) -> None:
    async def body() -> None:
        async with running_daemon(dbus_address, state_root) as daemon:
            client = await PxClient.connect(dbus_address)
            await client.wait(await client.install(SPEC), timeout=10)
            daemon.set_service_state("active/running")
            path = daemon.paths.status_file
            await eventually(lambda: ready(path) is True, "READY=1")
            real_write = daemon.status_file.write
            failures = 0

            def full_run(status: object) -> object:
                nonlocal failures
                failures += 1
                raise HostStateError(f"cannot write {path}: No space left on device")

            daemon.status_file.write = full_run  # type: ignore[method-assign,assignment]
            daemon.publish()
            # Not READY=1 while nobody can keep the file current: it is gone.
            await eventually(lambda: ready(path) is None, "the status file withdrawn")
            await eventually(lambda: failures >= 3, "retries with backoff")
            assert daemon.exit_code == 0 and not daemon._stop.is_set()
            daemon.status_file.write = real_write  # type: ignore[method-assign]
            await eventually(lambda: ready(path) is True, "READY=1 again")
            assert read_status(path).pid == os.getpid()
            client.close()

    asyncio.run(body())


def test_an_essential_task_that_dies_makes_the_daemon_exit_non_zero(
    dbus_address: str, state_root: Path
) -> None:
    async def body() -> int:
        daemon = Daemon(DaemonOptions(paths=Paths().under(state_root),
                                      bus_address=dbus_address), FakeEngine)

        def broken() -> object:
            raise RuntimeError("a bug in the status writer")

        task = asyncio.create_task(daemon.run())
        await eventually(lambda: daemon.state == "idle", "the daemon ready")
        daemon.file_status = broken  # type: ignore[method-assign,assignment]
        daemon.publish()
        return await asyncio.wait_for(task, 30)

    assert asyncio.run(body()) == 1
