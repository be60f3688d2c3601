"""The readiness probe against real status files and a real HTTP health server."""

from __future__ import annotations

import contextlib
import http.server
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_http import serve

from pxhostd.status import probe as probe_mod
from pxhostd.status.probe import (
    ProbeResult,
    check_health_url,
    check_local_url,
    judge,
    probe,
)
from pxhostd.status.statusfile import DaemonState, Status, StatusFile, current_boot_id
from pxhostd.status.submission import (
    Submission,
    SubmissionResult,
    format_submission,
    parse_submission,
    write_submission,
)

BOOT = "boot-a"
REPO = Path(__file__).resolve().parents[3]
NOW = 1_700_000_000.0


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        routes = {"/ok": 200, "/sick": 503, "/moved": 302}
        code = routes.get(self.path, 404)
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[str]:
    with serve(Health) as url:
        yield url


def write(tmp_path: Path, *, heartbeat: float = NOW, boot_id: str = BOOT, **fields: object) -> Path:
    path = tmp_path / "status"
    sf = StatusFile(path, boot_id=boot_id, clock=lambda: heartbeat)
    base = {"ready": True, "status": "portworx 1.0.0 active", "state": DaemonState.IDLE}
    sf.write(Status(**{**base, **fields}))  # type: ignore[arg-type]
    return path


def run(path: Path, **kw: object) -> ProbeResult:
    return probe(path, max_age=15, now=NOW, boot_id=BOOT, **kw)  # type: ignore[arg-type]


def test_ready_fresh_same_boot_is_ok(tmp_path: Path) -> None:
    assert run(write(tmp_path)) == ProbeResult(True, "portworx 1.0.0 active")


def test_missing_file_is_not_ready(tmp_path: Path) -> None:
    result = run(tmp_path / "status")
    assert not result.ok
    assert "no status file" in result.reason


def test_corrupt_file_is_not_ready(tmp_path: Path) -> None:
    (tmp_path / "status").write_text("READY=1\n")
    result = run(tmp_path / "status")
    assert not result.ok
    assert "lacks" in result.reason


def test_stale_heartbeat_is_not_ready(tmp_path: Path) -> None:
    result = run(write(tmp_path, heartbeat=NOW - 16))
    assert not result.ok
    assert "16.0 s old" in result.reason
    assert run(write(tmp_path, heartbeat=NOW - 14)).ok


def test_heartbeat_far_in_the_future_is_not_ready(tmp_path: Path) -> None:
    result = run(write(tmp_path, heartbeat=NOW + 100))
    assert not result.ok
    assert "future" in result.reason


def test_other_boot_is_not_ready(tmp_path: Path) -> None:
    result = run(write(tmp_path, boot_id="boot-before-reboot"))
    assert result == ProbeResult(False, "status file is from another boot")


def test_not_ready_says_why(tmp_path: Path) -> None:
    installing = run(
        write(tmp_path, ready=False, state=DaemonState.INSTALLING, status="upgrading\nto v2")
    )
    assert installing == ProbeResult(False, "READY=0 (upgrading to v2)")
    failed = run(write(tmp_path, ready=False, last_error="RolledBack: v3 exited with 3"))
    assert failed == ProbeResult(False, "READY=0 (RolledBack: v3 exited with 3)")


def test_health_url_must_answer_2xx(tmp_path: Path, health_server: str) -> None:
    assert run(write(tmp_path, health_url=f"{health_server}/ok")).ok
    sick = run(write(tmp_path, health_url=f"{health_server}/sick"))
    assert sick == ProbeResult(False, f"health {health_server}/sick answered 503")
    moved = run(write(tmp_path, health_url=f"{health_server}/moved"))
    assert moved == ProbeResult(False, f"health {health_server}/moved answered 302")
    # Skipped on request (e.g. a probe that must not depend on the payload).
    assert run(write(tmp_path, health_url=f"{health_server}/sick"), check_health=False).ok


def test_health_url_that_does_not_listen(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run(write(tmp_path, health_url=f"http://127.0.0.1:{port}/x"))
    assert not result.ok
    assert "unreachable" in result.reason


def test_health_url_timeout(tmp_path: Path) -> None:
    import socket

    # A listening socket that never accepts: the connection is queued, the GET never answered.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/h"
        result = run(write(tmp_path, health_url=url), health_timeout=0.2)
    assert not result.ok
    assert "unreachable" in result.reason


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:9001/h",
        "http://example.invalid:9001/h",
        "https://127.0.0.1:9001/h",
        "file:///etc/passwd",
        "http://user:pw@127.0.0.1:9001/h",
    ],
)
def test_health_url_must_be_loopback_http(url: str) -> None:
    with pytest.raises(probe_mod.UnsafeHealthUrl):
        check_local_url(url)
    assert not check_health_url(url).ok


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9001/h", "http://127.0.0.2:1/", "http://[::1]:9001/", "http://localhost:9001/"]
)
def test_loopback_urls_are_accepted(url: str) -> None:
    assert check_local_url(url) == url


def test_pid_check_is_optional(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(proc.stdout)
    path = tmp_path / "status"
    StatusFile(path, boot_id=BOOT, clock=lambda: NOW, pid=dead_pid).write(Status(ready=True))
    assert run(path).ok
    result = run(path, check_pid=True)
    assert result == ProbeResult(False, f"daemon pid {dead_pid} is not running")
    StatusFile(path, boot_id=BOOT, clock=lambda: NOW).write(Status(ready=True))
    assert run(path, check_pid=True).ok


def test_judge_is_pure() -> None:
    status = Status(ready=True, status="fine", boot_id=BOOT, heartbeat=NOW)
    assert judge(status, max_age=1, now=NOW + 0.5, boot_id=BOOT) == ProbeResult(True, "fine")
    assert not judge(status, max_age=1, now=NOW + 2, boot_id=BOOT).ok


def test_main_exit_codes_and_one_line(tmp_path: Path, health_server: str) -> None:
    path = tmp_path / "status"
    sf = StatusFile(path)  # real clock and boot id: main() uses both
    sf.write(Status(ready=True, status="portworx 1.0.0\nactive", health_url=f"{health_server}/ok"))
    ok = subprocess.run(
        [sys.executable, "-m", "pxhostd.status.probe", "--status-file", str(path)],
        capture_output=True, text=True, check=False, cwd=REPO,
    )
    assert (ok.returncode, ok.stdout) == (0, "ready: portworx 1.0.0 active\n")

    sf.update(health_url=f"{health_server}/sick")
    sick = subprocess.run(
        [sys.executable, "-m", "pxhostd.status.probe", "--status-file", str(path)],
        capture_output=True, text=True, check=False, cwd=REPO,
    )
    assert sick.returncode == 9
    assert sick.stdout == f"not ready: health {health_server}/sick answered 503\n"

    assert probe_mod.main(["--status-file", str(path), "--no-health"]) == 0
    assert probe_mod.main(["--status-file", str(tmp_path / "absent")]) == 9
    assert current_boot_id() == sf.read().boot_id


# -- in the pod: the host must run this pod's spec -------------------------------------------

DIGEST = "sha256:" + "a" * 64
OLD_DIGEST = "sha256:" + "b" * 64


def record(tmp_path: Path, result: SubmissionResult = SubmissionResult.DONE,
           digest: str = DIGEST, release: str = "1.1.0-abc", message: str = "done") -> Path:
    path = tmp_path / "pod" / "submission"
    write_submission(path, Submission(result, digest, release, "pod:n:1", message))
    return path


def test_pod_probe_wants_its_own_record(tmp_path: Path) -> None:
    status = write(tmp_path, spec_digest=DIGEST, release="1.1.0-abc")
    missing = run(status, check_health=False, submission=tmp_path / "none")
    assert missing == ProbeResult(False, "this pod has not finished submitting its spec")
    assert run(status, check_health=False, submission=record(tmp_path)).ok


def test_pod_probe_fails_while_the_host_runs_an_older_pods_spec(tmp_path: Path) -> None:
    """The upgrade case: the old version is READY=1, but it is not what this pod asked for."""
    status = write(tmp_path, spec_digest=OLD_DIGEST, release="1.0.0-def")
    result = run(status, check_health=False, submission=record(tmp_path))
    assert not result.ok and "another spec" in result.reason
    same_spec = write(tmp_path, spec_digest=DIGEST, release="1.0.0-def")
    result = run(same_spec, check_health=False, submission=record(tmp_path))
    assert not result.ok and "release 1.0.0-def" in result.reason


def test_pod_probe_fails_after_a_failed_submission(tmp_path: Path) -> None:
    status = write(tmp_path, spec_digest=OLD_DIGEST, release="1.0.0-def")
    sub = record(tmp_path, SubmissionResult.FAILED, release="",
                 message="install: failed: RolledBack: 1.1.0 did not start")
    result = run(status, check_health=False, submission=sub)
    assert result == ProbeResult(
        False, "this pod's submission failed: install: failed: RolledBack: 1.1.0 did not start"
    )


def test_pod_probe_still_needs_ready_and_a_fresh_heartbeat(tmp_path: Path) -> None:
    sub = record(tmp_path)
    assert not run(write(tmp_path, ready=False, spec_digest=DIGEST, release="1.1.0-abc"),
                   check_health=False, submission=sub).ok
    stale = write(tmp_path, heartbeat=NOW - 60, spec_digest=DIGEST, release="1.1.0-abc")
    assert "old" in run(stale, check_health=False, submission=sub).reason


def test_submission_record_round_trips_and_refuses_garbage(tmp_path: Path) -> None:
    sub = Submission(SubmissionResult.FAILED, DIGEST, "", "pod:n:1", "a\nREADY=1")
    assert parse_submission(format_submission(sub)) == sub
    bad = tmp_path / "bad"
    bad.write_text("RESULT=maybe\nSPEC_DIGEST=\nRELEASE=\nTXID=\nMESSAGE=\n")
    status = write(tmp_path, spec_digest=DIGEST)
    result = run(status, check_health=False, submission=bad)
    assert not result.ok and "RESULT" in result.reason


def test_main_pod_flag_uses_the_record(tmp_path: Path) -> None:
    status = write(tmp_path, heartbeat=time.time(), boot_id=current_boot_id(),
                   spec_digest=DIGEST, release="1.1.0-abc")
    args = ["--status-file", str(status), "--no-health"]
    assert probe_mod.main([*args, "--submission", str(tmp_path / "none")]) == 9
    assert probe_mod.main([*args, "--submission", str(record(tmp_path))]) == 0
    assert probe_mod.main(args) == 0  # on the host: no record is asked for


@contextlib.contextmanager
def _answering(chunks: Iterator[bytes]) -> Iterator[str]:
    """A one-connection server that sends `chunks` (until the client goes) as its answer."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            for chunk in chunks:
                if done.is_set():
                    return
                try:
                    conn.sendall(chunk)
                except OSError:
                    return
                done.wait(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/h"
    finally:
        done.set()
        thread.join(timeout=30)
        listener.close()


def test_health_client_reads_only_a_bounded_status_line() -> None:
    import itertools

    flood = itertools.chain([b"HTTP/1.1 200 OK\r\n"], itertools.repeat(b"X-Flood: y\r\n"))
    with _answering(flood) as url:
        assert check_health_url(url, timeout=30) == ProbeResult(True, f"health {url} answered 200")
    with _answering(iter([b"HTTP/1.1 200 " + b"x" * 5000])) as url:
        assert check_health_url(url, timeout=30) == ProbeResult(
            False, f"health {url} unreachable: status line too long")
    with _answering(iter([b"SSH-2.0-x\r\n"])) as url:
        assert "bad status line" in check_health_url(url, timeout=30).reason


def test_health_client_has_one_deadline_for_a_trickling_server() -> None:
    """A byte at a time, never a full line: each read is quick, the whole must still end."""
    import itertools

    with _answering(itertools.repeat(b"H")) as url:
        result = check_health_url(url, timeout=0.5)
    assert result == ProbeResult(False, f"health {url} unreachable: timed out")
