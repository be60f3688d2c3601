"""Unit files against a real systemd --user manager: daemon-reload and enable/disable."""

from __future__ import annotations

import pytest
from um_harness import IDLE_TARGET, UserManager
from um_helpers import Units, systemd_client

from pxhostd.systemd import UnitFileState
from pxhostd.systemd.verify import start_and_verify

pytestmark = pytest.mark.usermanager


async def test_reload_clears_need_daemon_reload(user_manager: UserManager, units: Units) -> None:
    name = units.name("svc")
    units.write(name, "[Unit]\nDescription=first\n[Service]\nExecStart=/bin/sleep 3600\n")
    async with systemd_client(user_manager) as systemd:
        state = await start_and_verify(systemd, name, timeout=30)
        assert state.need_daemon_reload is False

        units.write(name, "[Unit]\nDescription=second\n[Service]\nExecStart=/bin/sleep 3600\n")
        assert (await systemd.unit_state(name)).need_daemon_reload is True

        await systemd.daemon_reload(timeout=30)
        after = await systemd.unit_state(name)
        assert after.need_daemon_reload is False
        # Reload alone does not restart: same invocation, still running.
        assert after.invocation_id == state.invocation_id
        assert after.is_active
        await systemd.stop_unit(name, timeout=30)


async def test_enable_reports_changes_once(user_manager: UserManager, units: Units) -> None:
    name = units.name("svc")
    units.write(
        name,
        "[Service]\nExecStart=/bin/sleep 3600\n"
        f"[Install]\nWantedBy={IDLE_TARGET}\n",
    )
    link = user_manager.unit_dir / f"{IDLE_TARGET}.wants" / name
    async with systemd_client(user_manager) as systemd:
        assert (await systemd.unit_state(name)).unit_file_state is UnitFileState.DISABLED

        first = await systemd.enable_unit_files([name])
        assert [(ch.type, ch.file) for ch in first] == [("symlink", str(link))]
        assert first[0].destination == str(units.path(name))
        assert link.is_symlink()

        assert await systemd.enable_unit_files([name]) == []
        await systemd.daemon_reload(timeout=30)
        assert (await systemd.unit_state(name)).unit_file_state is UnitFileState.ENABLED

        removed = await systemd.disable_unit_files([name])
        assert [(ch.type, ch.file) for ch in removed] == [("unlink", str(link))]
        assert not link.exists()
        assert await systemd.disable_unit_files([name]) == []
        await systemd.daemon_reload(timeout=30)
        assert (await systemd.unit_state(name)).unit_file_state is UnitFileState.DISABLED
