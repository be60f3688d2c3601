"""The shipped engine never blocks the event loop: journal, state and history writes (each
an fsync), renders and file reads all run in worker threads, so the bus stays live while
an operation journals. `blockbuster` raises on any blocking call made on the loop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from blockbuster import BlockingError, blockbuster_ctx
from enginekit import build_payload, context, install, recover, remove, systemd_of

from pxhostd.errors import PxError


def test_the_detector_catches_a_blocking_call() -> None:
    async def blocks() -> None:
        time.sleep(0.001)

    async def body() -> None:
        with blockbuster_ctx(), pytest.raises(BlockingError):
            await blocks()

    asyncio.run(body())


def test_install_upgrade_rollback_recovery_and_uninstall_never_block(tmp_path: Path) -> None:
    v1 = build_payload(tmp_path / "v1", "1.0.0")
    v2 = build_payload(tmp_path / "v2", "2.0.0")
    v3 = build_payload(tmp_path / "v3", "3.0.0")
    ctx = context(tmp_path / "root")
    fake = systemd_of(ctx)
    # What the payload writes at its first start; without it every apply restarts.
    ctx.paths.pwx_config_file.parent.mkdir(parents=True)
    ctx.paths.pwx_config_file.write_text("{}")

    async def body() -> None:
        with blockbuster_ctx():
            assert (await install(ctx, {"payload": str(v1)})).changed
            assert (await install(ctx, {"payload": str(v2)})).changed
            assert not (await install(ctx, {"payload": str(v2)})).changed
            doc = await asyncio.to_thread(fake.load)
            doc["fail"] = ["start"]
            await asyncio.to_thread(fake.save, doc)
            with pytest.raises(PxError):  # rolled back (or its rollback's restart failed)
                await install(ctx, {"payload": str(v3)})
            doc["fail"] = []
            await asyncio.to_thread(fake.save, doc)
            await recover(ctx)
            assert (await remove(ctx, wipe=True)).changed

    asyncio.run(body())
    assert not ctx.paths.journal_file.exists()
    assert ctx.applied.load() is None
