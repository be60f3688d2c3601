"""Watching units through PropertiesChanged, and waiting for a unit to stay up."""

from __future__ import annotations

import asyncio

import pytest
from um_harness import UserManager
from um_helpers import Units, systemd_client

from pxhostd.errors import SystemdError, Timeout
from pxhostd.systemd import ActiveState, UnitActivity
from pxhostd.systemd.verify import start_and_verify, wait_stable

pytestmark = pytest.mark.usermanager

SLEEPER = "[Service]\nExecStart=/bin/sleep 3600\n"


async def test_watch_follows_start_and_stop(user_manager: UserManager, units: Units) -> None:
    name = units.name("svc")
    units.write(name, SLEEPER)
    seen: list[UnitActivity] = []
    async with systemd_client(user_manager) as systemd:
        watch = await systemd.watch_unit(name, seen.append)
        async with watch:
            assert seen[0] == UnitActivity(ActiveState.INACTIVE, "dead")

            await systemd.start_unit(name, timeout=30)
            async with asyncio.timeout(30):
                await watch.wait_for(lambda a: a == UnitActivity(ActiveState.ACTIVE, "running"))

            await systemd.stop_unit(name, timeout=30)
            async with asyncio.timeout(30):
                await watch.wait_for(lambda a: a.active_state is ActiveState.INACTIVE)
        assert watch.closed
        states = [a.active_state for a in seen]
        assert ActiveState.ACTIVE in states
        assert states[-1] is ActiveState.INACTIVE
        assert seen[-1].sub_state == "dead"

        # After close nothing more arrives, and the match is gone.
        count = len(seen)
        await systemd.start_unit(name, timeout=30)
        await systemd.stop_unit(name, timeout=30)
        assert len(seen) == count
        assert systemd._watches == {}


async def test_two_watches_on_one_unit(user_manager: UserManager, units: Units) -> None:
    name = units.name("svc")
    units.write(name, SLEEPER)
    async with systemd_client(user_manager) as systemd:
        first = await systemd.watch_unit(name)
        second = await systemd.watch_unit(name)
        await first.close()
        await systemd.start_unit(name, timeout=30)
        async with asyncio.timeout(30):
            active = await second.wait_for(lambda a: a.active_state is ActiveState.ACTIVE)
        assert active.sub_state == "running"
        assert first.last == UnitActivity(ActiveState.INACTIVE, "dead")
        await second.close()
        await systemd.stop_unit(name, timeout=30)


async def test_wait_stable_accepts_a_healthy_service(
    user_manager: UserManager, units: Units
) -> None:
    name = units.name("svc")
    units.write(name, SLEEPER)
    async with systemd_client(user_manager) as systemd:
        await start_and_verify(systemd, name, timeout=30)
        state = await wait_stable(systemd, name, settle=0.5, timeout=30)
        assert state.is_active
        await systemd.stop_unit(name, timeout=30)


async def test_wait_stable_catches_a_service_that_dies_after_start(
    user_manager: UserManager, units: Units
) -> None:
    name = units.name("dies")
    units.write(name, "[Service]\nExecStart=/bin/sh -c 'sleep 0.3; exit 7'\n")
    async with systemd_client(user_manager) as systemd:
        assert (await systemd.start_unit(name, timeout=30)).done  # it did start
        with pytest.raises(SystemdError) as caught:
            await wait_stable(systemd, name, settle=20, timeout=30)
        assert "did not stay active" in str(caught.value)
        assert "exit_status=7" in str(caught.value)
        await systemd.reset_failed_unit(name)


async def test_wait_stable_times_out_on_a_flapping_service(
    user_manager: UserManager, units: Units
) -> None:
    name = units.name("flap")
    units.write(
        name,
        "[Unit]\nStartLimitIntervalSec=0\n"
        "[Service]\nExecStart=/bin/sh -c 'sleep 0.2; exit 1'\n"
        "Restart=on-failure\nRestartSec=0.2\n",
    )
    async with systemd_client(user_manager) as systemd:
        await systemd.start_unit(name, timeout=30)
        with pytest.raises(Timeout) as caught:
            await wait_stable(systemd, name, settle=20, timeout=3)
        assert name in str(caught.value)
        assert "activating" in str(caught.value) or "active/running" in str(caught.value)
        assert (await systemd.unit_state(name)).n_restarts
        await systemd.stop_unit(name, timeout=30)
