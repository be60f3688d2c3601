"""Status file format, escaping, stamping and atomic replacement."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pxhostd.errors import HostStateError, PxError
from pxhostd.hostfs import TEMP_PREFIX
from pxhostd.status.statusfile import (
    DEFAULT_MAX_AGE,
    HEARTBEAT_INTERVAL,
    KEYS,
    OPTIONAL_KEYS,
    DaemonState,
    Status,
    StatusCorrupt,
    StatusFile,
    StatusMissing,
    current_boot_id,
    escape_value,
    format_status,
    one_line,
    parse_status,
    read_status,
    unescape_value,
)

BOOT = "3f1c9c4e-0b7a-4a55-9d7e-1f2a3b4c5d6e"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sample(**changes: object) -> Status:
    base = Status(
        ready=True,
        status="portworx 1.0.0 active",
        state=DaemonState.IDLE,
        version="1.0.0",
        service_state="active/running",
        health_url="http://127.0.0.1:9001/v1/cluster/nodehealth",
    )
    return Status(**{**base.__dict__, **changes})


@given(st.text())
def test_escape_round_trips_and_never_breaks_a_line(value: str) -> None:
    escaped = escape_value(value)
    assert unescape_value(escaped) == value
    assert len(escaped.splitlines()) <= 1
    escaped.encode("utf-8")  # surrogates are escaped too, so the file is always UTF-8


def test_escape_examples() -> None:
    assert escape_value("a\nb") == "a\\nb"
    assert escape_value("back\\slash") == "back\\\\slash"
    assert escape_value("tab\tcr\r") == "tab\\tcr\\r"
    assert escape_value("\x00\x7f\x85\u2028") == "\\x00\\x7f\\x85\\u2028"
    assert escape_value("a=b ünïcode ✓") == "a=b ünïcode ✓"


@pytest.mark.parametrize("bad", ["\\", "\\q", "\\x4", "\\xzz", "\\u12"])
def test_malformed_escapes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        unescape_value(bad)


@given(
    st.builds(
        Status,
        ready=st.booleans(),
        status=st.text(),
        state=st.text(),
        version=st.text(),
        service_state=st.text(),
        last_error=st.text(),
        health_url=st.text(),
        spec_digest=st.text(),
        release=st.text(),
        generation=st.integers(min_value=0, max_value=2**63),
        boot_id=st.text(),
        pid=st.integers(min_value=0, max_value=2**22),
        heartbeat=st.integers(min_value=0, max_value=2**40).map(lambda us: us / 1_000_000),
    )
)
def test_format_parse_round_trip(status: Status) -> None:
    text = format_status(status)
    assert [line.split("=", 1)[0] for line in text.splitlines()] == [*KEYS, *OPTIONAL_KEYS]
    assert parse_status(text) == status


def test_a_file_without_the_later_keys_still_reads() -> None:
    """An older daemon's file (no SPEC_DIGEST, RELEASE) is read with both empty."""
    text = "".join(line + "\n" for line in format_status(sample(spec_digest="sha256:ab",
                                                                 release="1-x")).splitlines()
                   if line.split("=", 1)[0] in KEYS)
    back = parse_status(text)
    assert (back.spec_digest, back.release, back.ready) == ("", "", True)


def test_a_value_cannot_inject_a_line(tmp_path: Path) -> None:
    sf = StatusFile(tmp_path / "status", boot_id=BOOT, clock=FakeClock())
    sf.write(sample(ready=False, status="evil\nREADY=1\nSTATE=idle", last_error="x\r\nREADY=1"))
    text = (tmp_path / "status").read_text()
    assert [line for line in text.splitlines() if line.startswith("READY=")] == ["READY=0"]
    back = sf.read()
    assert back.ready is False
    assert back.status == "evil\nREADY=1\nSTATE=idle"


def test_file_text_is_documented_format(tmp_path: Path) -> None:
    clock = FakeClock(1_700_000_000.25)
    sf = StatusFile(tmp_path / "status", boot_id=BOOT, clock=clock, pid=4242)
    sf.write(sample(last_error="RolledBack: v3 did not start"))
    assert (tmp_path / "status").read_text() == (
        "READY=1\n"
        "STATUS=portworx 1.0.0 active\n"
        "STATE=idle\n"
        "VERSION=1.0.0\n"
        "SERVICE_STATE=active/running\n"
        "GENERATION=1\n"
        f"BOOT_ID={BOOT}\n"
        "PID=4242\n"
        "HEARTBEAT=1700000000.250000\n"
        "LAST_ERROR=RolledBack: v3 did not start\n"
        "HEALTH_URL=http://127.0.0.1:9001/v1/cluster/nodehealth\n"
        "SPEC_DIGEST=\n"
        "RELEASE=\n"
    )


def test_generation_counts_changes_and_heartbeat_always_moves(tmp_path: Path) -> None:
    clock = FakeClock()
    sf = StatusFile(tmp_path / "status", boot_id=BOOT, clock=clock)
    first = sf.write(sample(ready=False, state=DaemonState.INSTALLING))
    assert first.generation == 1

    clock.now += 5
    same = sf.write(sample(ready=False, state=DaemonState.INSTALLING))
    assert same.generation == 1
    assert same.heartbeat == first.heartbeat + 5
    assert sf.read().heartbeat == same.heartbeat

    clock.now += 1
    changed = sf.write(sample(ready=True))
    assert changed.generation == 2

    updated = sf.update(ready=False, last_error="SystemdError: unit failed")
    assert updated.generation == 3
    assert sf.read().last_error == "SystemdError: unit failed"
    assert sf.read().status == "portworx 1.0.0 active"


def test_generation_continues_over_a_daemon_restart_in_the_same_boot(tmp_path: Path) -> None:
    path = tmp_path / "status"
    old = StatusFile(path, boot_id=BOOT, clock=FakeClock())
    old.write(sample(ready=False))
    old.write(sample(ready=True))
    assert old.read().generation == 2

    restarted = StatusFile(path, boot_id=BOOT, clock=FakeClock())
    assert restarted.write(sample(ready=True)).generation == 3

    other_boot = StatusFile(path, boot_id="another-boot", clock=FakeClock())
    assert other_boot.write(sample()).generation == 1


def test_writer_stamps_pid_and_real_boot_id(tmp_path: Path) -> None:
    sf = StatusFile(tmp_path / "status")
    written = sf.write(Status())
    assert written.boot_id == current_boot_id()
    assert written.pid > 0
    assert written.heartbeat > 0
    assert written.state == "starting"


def test_missing_and_corrupt_files_are_named_errors(tmp_path: Path) -> None:
    path = tmp_path / "status"
    with pytest.raises(StatusMissing) as missing:
        read_status(path)
    assert isinstance(missing.value, HostStateError)
    assert isinstance(missing.value, PxError)
    assert str(path) in str(missing.value)

    good = format_status(sample())
    cases = {
        "garbage": "hello world\n",
        "lacks keys": "READY=1\n",
        "repeats": good + "READY=1\n",
        "bad ready": good.replace("READY=1", "READY=yes"),
        "bad number": good.replace("PID=0", "PID=x"),
        "nan": good.replace("HEARTBEAT=0.000000", "HEARTBEAT=nan"),
        "bad escape": good.replace("VERSION=1.0.0", "VERSION=1\\q"),
        "lower key": good + "ready=1\n",
    }
    for name, text in cases.items():
        path.write_text(text)
        with pytest.raises(StatusCorrupt):
            read_status(path)
        assert name  # each case above is a distinct way to break the file

    path.write_bytes(good.encode() + b"X=\xff\n")
    with pytest.raises(StatusCorrupt, match="not UTF-8"):
        read_status(path)
    path.write_bytes(b"A=" + b"a" * 70_000 + b"\n")
    with pytest.raises(StatusCorrupt, match="larger than"):
        read_status(path)


def test_unknown_keys_from_a_newer_daemon_are_ignored() -> None:
    text = format_status(sample()) + "FUTURE_KEY=whatever\n"
    assert parse_status(text) == sample()


def test_concurrent_writes_leave_one_whole_file(tmp_path: Path) -> None:
    sf = StatusFile(tmp_path / "status", boot_id=BOOT)

    def writer(n: int) -> None:
        for i in range(25):
            sf.write(sample(status=f"writer {n} step {i}"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = sf.read()
    assert final == sf.last
    assert final.generation == 100
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)] == []


def test_remove(tmp_path: Path) -> None:
    sf = StatusFile(tmp_path / "status", boot_id=BOOT)
    sf.write(sample())
    assert sf.remove() is True
    assert sf.remove() is False
    with pytest.raises(StatusMissing):
        sf.read()


def test_freshness_defaults_and_one_line() -> None:
    assert DEFAULT_MAX_AGE == 3 * HEARTBEAT_INTERVAL
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line("x" * 600, limit=10) == "xxxxxxx..."
