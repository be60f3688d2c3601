"""Jobs against a real systemd --user manager: results, verification, timeouts, races."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest
from um_harness import UserManager
from um_helpers import Units, systemd_client

from pxhostd.errors import SystemdError, Timeout
from pxhostd.systemd import (
    ActiveState,
    JobResultKind,
    LoadState,
    NoSuchUnit,
    unit_journal_tail,
    unit_object_path,
)
from pxhostd.systemd import constants as c
from pxhostd.systemd.verify import pinned, restart_and_verify, start_and_verify

pytestmark = pytest.mark.usermanager

SLEEPER = "[Unit]\nDescription=sleeper\n[Service]\nExecStart=/bin/sleep 3600\n"

# Sends READY=1 (and a status line) after a delay, or never; stdlib only, like sd_notify.
NOTIFY_SCRIPT = """\
import os, socket, sys, time
delay, mode, marker = float(sys.argv[1]), sys.argv[2], sys.argv[3]
time.sleep(delay)
if mode == "ready":
    addr = os.environ["NOTIFY_SOCKET"]
    if addr.startswith("@"):
        addr = "\\0" + addr[1:]
    open(marker, "w").close()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(addr)
        sock.sendall(b"READY=1\\nSTATUS=serving requests")
time.sleep(3600)
"""


def notify_unit(units: Units, delay: float, mode: str, marker: str) -> str:
    script = units.script("notify.py", NOTIFY_SCRIPT)
    return (
        "[Service]\nType=notify\nNotifyAccess=main\n"
        f"ExecStart={sys.executable} {script} {delay} {mode} {marker}\n"
    )


async def test_start_restart_stop_with_invocation_ids(
    user_manager: UserManager, units: Units
) -> None:
    name = units.name("svc")
    units.write(name, SLEEPER)
    async with systemd_client(user_manager) as systemd:
        started = await start_and_verify(systemd, name, timeout=30)
        assert started.load_state is LoadState.LOADED
        assert started.sub_state == "running"
        assert started.main_pid > 0
        assert len(started.invocation_id) == 32
        assert started.fragment_path == str(units.path(name))
        assert started.n_restarts == 0

        restarted = await restart_and_verify(systemd, name, timeout=30)
        assert restarted.invocation_id != started.invocation_id
        assert restarted.is_active

        job = await systemd.stop_unit(name, timeout=30)
        assert job.result is JobResultKind.DONE
        assert job.unit == name
        assert job.job.startswith("/org/freedesktop/systemd1/job/")
        stopped = await systemd.unit_state(name)
        assert stopped.active_state is ActiveState.INACTIVE
        assert stopped.sub_state == "dead"
        assert stopped.main_pid == 0


async def test_notify_service_job_is_done_only_after_ready(
    user_manager: UserManager, units: Units
) -> None:
    name = units.name("notify")
    marker = user_manager.base / f"{name}.ready-sent"
    units.write(name, notify_unit(units, 1.0, "ready", str(marker)))
    async with systemd_client(user_manager) as systemd:
        state = await start_and_verify(systemd, name, timeout=30)
        # The script creates the marker right before it sends READY=1.
        assert marker.exists()
        assert state.sub_state == "running"
        assert state.status_text == "serving requests"


async def test_notify_service_that_never_gets_ready_times_out(
    user_manager: UserManager, units: Units
) -> None:
    name = units.name("never")
    units.write(name, notify_unit(units, 0, "never", "-"))
    async with systemd_client(user_manager) as systemd:
        with pytest.raises(Timeout) as caught:
            await systemd.start_unit(name, timeout=1.5)
        text = str(caught.value)
        assert name in text
        assert "activating" in text
        assert "/org/freedesktop/systemd1/job/" in text
        # The job is still queued in systemd; replacing it with a stop ends it.
        assert (await systemd.stop_unit(name, timeout=30)).done
        with pytest.raises(Timeout):
            await start_and_verify(systemd, name, timeout=1.0)
        await systemd.stop_unit(name, timeout=30)


async def test_service_failing_at_once(user_manager: UserManager, units: Units) -> None:
    name = units.name("boom")
    units.write(
        name,
        "[Service]\nType=notify\nExecStart=/bin/sh -c 'echo boom >&2; exit 3'\n",
    )
    async with systemd_client(user_manager) as systemd:
        job = await systemd.start_unit(name, timeout=30)
        assert job.result is JobResultKind.FAILED
        state = await systemd.unit_state(name)
        assert state.active_state is ActiveState.FAILED
        assert state.result == "exit-code"
        assert state.exec_main_status == 3

        with pytest.raises(SystemdError) as caught:
            await start_and_verify(systemd, name, timeout=30)
        assert "'failed'" in str(caught.value)
        assert "exit_status=3" in str(caught.value)

        # This manager has no journald: the tail is empty, not an error.
        assert await unit_journal_tail(name, user=True, invocation_id=state.invocation_id) == []

        await systemd.reset_failed_unit(name)
        assert (await systemd.unit_state(name)).active_state is ActiveState.INACTIVE


async def test_unmet_condition_is_done_but_not_active(
    user_manager: UserManager, units: Units
) -> None:
    name = units.name("cond")
    units.write(
        name,
        "[Unit]\nConditionPathExists=/nonexistent/pxhostd-test\n"
        "[Service]\nExecStart=/bin/sleep 3600\n",
    )
    async with systemd_client(user_manager) as systemd:
        async with pinned(systemd, name):
            job = await systemd.start_unit(name, timeout=30)
            assert job.result is JobResultKind.DONE
            state = await systemd.unit_state(name)
        assert not state.is_active
        assert state.condition_result is False
        with pytest.raises(SystemdError) as caught:
            await start_and_verify(systemd, name, timeout=30)
        assert "not active" in str(caught.value)
        assert "condition not met" in str(caught.value)


async def test_unknown_unit(user_manager: UserManager, units: Units) -> None:
    name = units.name("missing")
    async with systemd_client(user_manager) as systemd:
        with pytest.raises(NoSuchUnit) as caught:
            await systemd.start_unit(name, timeout=30)
        assert name in str(caught.value)
        assert isinstance(caught.value, SystemdError)
        state = await systemd.unit_state(name)
        assert state.load_state is LoadState.NOT_FOUND
        assert state.unit_file_state.value == ""


async def test_object_path_escaping_matches_systemd(
    user_manager: UserManager, units: Units
) -> None:
    name = f"{units.stem}-x_y@2:3.service"
    units.write(f"{units.stem}-x_y@.service", SLEEPER)
    async with systemd_client(user_manager) as systemd:
        assert await systemd.load_unit(name) == unit_object_path(name)


async def test_many_concurrent_jobs_all_get_their_own_result(
    user_manager: UserManager, units: Units
) -> None:
    """Quick oneshot jobs finish while replies are still in flight: no result is lost."""
    names = [units.name(f"q{i}") for i in range(24)]
    for i, name in enumerate(names):
        exec_start = "/bin/true" if i % 3 else "/bin/false"
        units.write(name, f"[Service]\nType=oneshot\nExecStart={exec_start}\n")
    async with systemd_client(user_manager) as systemd:
        for _round in range(3):
            results = await asyncio.gather(*(systemd.start_unit(n, timeout=30) for n in names))
            for i, (name, job) in enumerate(zip(names, results, strict=True)):
                assert job.unit == name
                expected = JobResultKind.DONE if i % 3 else JobResultKind.FAILED
                assert job.result is expected, (name, job)
            assert len({job.job for job in results}) == len(names)
            failed = names[::3]  # the others succeeded and may be unloaded already
            await asyncio.gather(*(systemd.reset_failed_unit(n) for n in failed))
        assert systemd._jobs.waiting == 0


async def test_a_second_subscribe_is_recognised_by_its_dbus_error_name(
    user_manager: UserManager, caplog: pytest.LogCaptureFixture
) -> None:
    """After daemon-reexec the client subscribes again; systemd's AlreadySubscribed reply
    is known by its D-Bus error name (kept on the SystemdError), not by its message."""
    async with systemd_client(user_manager) as systemd:
        with pytest.raises(SystemdError) as caught:
            await systemd._manager(c.SUBSCRIBE, what="Subscribe")
        assert caught.value.reply_name == c.ERR_ALREADY_SUBSCRIBED
        with caplog.at_level(logging.WARNING, logger="pxhostd.systemd.client"):
            await systemd._resubscribe()
        assert not caplog.records, [r.getMessage() for r in caplog.records]
