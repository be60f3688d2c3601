"""The host lock taken from an event loop: the one polling loop the daemon and the pod share."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

import pytest

from pxhostd.errors import Busy, HostStateError
from pxhostd.hostfs import host_lock_polled

BOUND = 60.0


def hold(path: Path) -> int:
    """Another process's hold on the lock (flock locks belong to the open file)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_a_held_lock_is_busy_after_the_wait_and_the_loop_stays_live(tmp_path: Path) -> None:
    lock = tmp_path / "host.lock"
    fd = hold(lock)

    async def scenario() -> int:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        try:
            with pytest.raises(Busy, match=r"stayed taken for 0\.5 s"):
                async with host_lock_polled(lock, 0.5):
                    pytest.fail("entered a lock someone else holds")
        finally:
            ticker.cancel()
        return ticks

    try:
        assert asyncio.run(scenario()) > 1  # other tasks ran while it waited
    finally:
        os.close(fd)


def test_the_lock_is_taken_once_the_holder_lets_go(tmp_path: Path) -> None:
    lock = tmp_path / "host.lock"
    fd = hold(lock)

    async def scenario() -> None:
        entered = asyncio.Event()

        async def taker() -> None:
            async with host_lock_polled(lock, BOUND):
                entered.set()

        task = asyncio.create_task(taker())
        await asyncio.sleep(0)
        assert not entered.is_set()
        os.close(fd)
        await asyncio.wait_for(entered.wait(), BOUND)
        await task

    asyncio.run(scenario())


def test_a_lock_file_that_cannot_be_opened_is_a_named_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")

    async def scenario() -> None:
        async with host_lock_polled(blocker / "host.lock", BOUND, " (hint)"):
            pytest.fail("took a lock below a file")

    with pytest.raises(HostStateError, match=r"cannot take the host lock .*\(hint\)"):
        asyncio.run(scenario())
