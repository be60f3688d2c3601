"""The daemon never blocks its event loop: Status, History and transactions over a real
dbus-daemon while `blockbuster` raises on any blocking call made on the loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

from blockbuster import blockbuster_ctx
from daemon_harness import eventually, running_daemon
from test_manager import SPEC

from pxhostd.bus.client import PxClient, raise_for_result


def test_status_history_and_an_install_make_no_blocking_call(
    dbus_address: str, state_root: Path
) -> None:
    async def body() -> None:
        # Built and started first (construction reads its paths before the loop serves).
        async with (
            running_daemon(dbus_address, state_root) as daemon,
            await PxClient.connect(dbus_address) as client,
        ):
            # Only calls made from pxhostd code count (dbus-fast reads its non-blocking
            # socket through a buffered reader, which is no blocking call).
            with blockbuster_ctx(["pxhostd"]):
                for _ in range(3):
                    raise_for_result(await client.wait(await client.install(
                        {**SPEC, "env": {"N": str(_)}}), timeout=60))
                    status = await client.status()
                    assert status["state"] in ("idle", "installing")
                    await client.history(10)
                # Let the status writer and the history appends (threads) finish.

                async def all_three() -> bool:
                    return len(await client.history(10)) == 3

                await eventually(all_three, "three history entries")
                assert len(await client.history(10)) == 3
                assert (await asyncio.to_thread(daemon.status_file.read)).state == "idle"

    asyncio.run(body())
