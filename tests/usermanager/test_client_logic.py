"""Pure logic of the systemd client (no bus): escaping, job matching, parsing, errors."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pxhostd.errors import AccessDenied, SystemdError, Timeout
from pxhostd.systemd import (
    ActiveState,
    JobResult,
    JobResultKind,
    LoadState,
    NoSuchUnit,
    UnitFileState,
    UnitState,
    bus_path_escape,
    unit_object_path,
)
from pxhostd.systemd.errors import error_from_reply
from pxhostd.systemd.jobs import JobTracker
from pxhostd.systemd.transport import bounded, match_rule


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("portworx.service", "portworx_2eservice"),
        ("dbus-org.freedesktop.login1.service", "dbus_2dorg_2efreedesktop_2elogin1_2eservice"),
        ("1x", "_31x"),
        ("a_b", "a_5fb"),
        ("", "_"),
        ("ü", "_c3_bc"),
    ],
)
def test_bus_path_escape(name: str, escaped: str) -> None:
    assert bus_path_escape(name) == escaped


def test_unit_object_path() -> None:
    assert unit_object_path("px.service") == "/org/freedesktop/systemd1/unit/px_2eservice"


def result(job: str, kind: JobResultKind = JobResultKind.DONE) -> JobResult:
    return JobResult(unit="u.service", job=job, result=kind)


async def test_job_removed_before_the_reply_is_not_lost() -> None:
    tracker = JobTracker()
    tracker.job_removed(result("/job/1", JobResultKind.FAILED))
    future = tracker.expect("/job/1")
    assert future.done()
    assert future.result().result is JobResultKind.FAILED
    assert tracker.buffered == 0


async def test_job_removed_after_expect_resolves_only_its_job() -> None:
    tracker = JobTracker()
    one, two = tracker.expect("/job/1"), tracker.expect("/job/2")
    tracker.job_removed(result("/job/2"))
    assert two.done() and not one.done()
    tracker.forget("/job/1")
    assert one.cancelled()
    assert tracker.waiting == 0


async def test_unclaimed_results_are_bounded() -> None:
    tracker = JobTracker(ttl=60, max_early=3)
    for i in range(10):
        tracker.job_removed(result(f"/job/{i}"))
    assert tracker.buffered == 3
    assert tracker.expect("/job/9").done()
    assert not tracker.expect("/job/0").done()


async def test_fail_all_wakes_waiters() -> None:
    tracker = JobTracker()
    future = tracker.expect("/job/1")
    tracker.fail_all(SystemdError("gone"))
    with pytest.raises(SystemdError):
        await future


def test_unknown_enum_values_are_tolerated(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert ActiveState.parse("hibernating-xyz") is ActiveState.UNKNOWN
        assert ActiveState.parse("hibernating-xyz") is ActiveState.UNKNOWN
    assert sum("hibernating-xyz" in r.getMessage() for r in caplog.records) == 1
    assert JobResultKind.parse("frozen") is JobResultKind.FROZEN
    assert UnitFileState.parse("") is UnitFileState.NONE


def test_unit_state_from_properties() -> None:
    unit = {
        "LoadState": "loaded", "ActiveState": "failed", "SubState": "failed",
        "InvocationID": bytes(range(16)), "UnitFileState": "enabled",
        "NeedDaemonReload": True, "FragmentPath": "/etc/systemd/system/p.service",
        "ConditionResult": True, "ConditionTimestamp": 5,
    }
    service = {"Result": "exit-code", "MainPID": 0, "ExecMainStatus": 3,
               "StatusText": "bad", "NRestarts": 2}
    state = UnitState.from_properties("p.service", unit, service)
    assert state.load_state is LoadState.LOADED
    assert state.invocation_id == bytes(range(16)).hex()
    assert (state.exec_main_status, state.n_restarts, state.need_daemon_reload) == (3, 2, True)
    assert "exit_status=3" in state.describe() and "condition not met" not in state.describe()


def test_condition_result_counts_only_once_checked() -> None:
    fresh = UnitState.from_properties(
        "p.service", {"ConditionResult": False, "ConditionTimestamp": 0}, {}
    )
    assert fresh.condition_result is True
    checked = UnitState.from_properties(
        "p.service", {"ConditionResult": False, "ConditionTimestamp": 123}, {}
    )
    assert checked.condition_result is False
    assert "condition not met" in checked.describe()


def test_error_mapping() -> None:
    err = error_from_reply("org.freedesktop.systemd1.NoSuchUnit", "Unit x not found.", "Start x")
    assert isinstance(err, NoSuchUnit) and isinstance(err, SystemdError)
    assert err.dbus_name == "com.portworx.pxhostd1.Error.SystemdError"
    assert err.reply_name == "org.freedesktop.systemd1.NoSuchUnit"
    assert "Start x" in str(err)
    assert isinstance(error_from_reply("org.freedesktop.DBus.Error.AccessDenied", "", "x"),
                      AccessDenied)
    other = error_from_reply("org.freedesktop.systemd1.LoadFailed", "bad", "Start y")
    assert type(other) is SystemdError
    assert "LoadFailed" in str(other)
    assert other.reply_name == "org.freedesktop.systemd1.LoadFailed"
    unreachable = error_from_reply("org.freedesktop.DBus.Error.ServiceUnknown", "gone", "z")
    assert isinstance(unreachable, SystemdError)
    assert unreachable.reply_name == "org.freedesktop.DBus.Error.ServiceUnknown"
    assert SystemdError("a check of ours").reply_name == ""


async def test_bounded_raises_named_timeout() -> None:
    with pytest.raises(Timeout) as caught:
        async with bounded(0.01, "waiting for nothing"):
            await asyncio.Event().wait()
    assert "waiting for nothing" in str(caught.value)


def test_match_rule() -> None:
    assert match_rule(type="signal", member="JobRemoved") == "type='signal',member='JobRemoved'"
