"""The real entrypoint as a subprocess: stop signals, no TTY, no orphan, refusals.

The process runs `pxhostd.pod.entrypoint.main` with settings pointing at scratch places, a
fake host (the stand-in `nsenter` of test_entrypoint_host) and a bus address where no bus
listens. It has no terminal: stdin is /dev/null and it runs in its own session.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_entrypoint_host import FAKE_NSENTER

from pxhostd import __version__

REPO = Path(__file__).resolve().parents[3]
BUILD_PAYLOAD = REPO / "container" / "demo-payload" / "build.py"
BOUND = 60.0

RUNNER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from pxhostd.pod.entrypoint import PodSettings, main
    cfg = json.loads(sys.argv[1])
    settings = PodSettings(
        required_mounts=tuple(cfg["required"]),
        mountinfo=Path(cfg["mountinfo"]),
        host_mountinfo=Path(cfg["mountinfo"]),
        host_mnt_ns=Path(cfg["ns"]),
        status_file=Path(cfg["run"]) / "status",
        lock_file=Path(cfg["run"]) / "host.lock",
        image_packages=Path(cfg["packages"]),
        image_payload=Path(cfg["payload"]),
        host_packages=Path(cfg["shared"]) / "packages",
        host_payloads=Path(cfg["shared"]) / "payloads",
        bus_address=cfg["bus"],
        termination_log=Path(cfg["termlog"]),
        submission=Path(cfg["run"]) / "pod" / "submission",
        daemon_wait=cfg.get("daemon_wait", 120.0),
    )
    sys.exit(main(sys.argv[2:], settings))
    """
)


class PodProcess:
    def __init__(self, proc: subprocess.Popen[str], state: Path) -> None:
        self.proc = proc
        self.state = state
        self.out = ""

    def wait_output(self, text: str) -> None:
        deadline = time.monotonic() + BOUND
        assert self.proc.stdout is not None
        while text not in self.out:
            assert time.monotonic() < deadline, f"never printed {text!r}: {self.out}"
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"exited ({self.proc.wait()}) before {text!r}: {self.out}")
            self.out += line

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=BOUND)
        self.out += out
        return self.proc.returncode, self.out, err


StartPod = Callable[..., PodProcess]


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[StartPod]:
    state = tmp_path / "host"
    state.mkdir()
    (state / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (state / "pxhostd-version").write_text(__version__)
    (state / "active-pxhostd.service").write_text("active")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "nsenter").write_text(FAKE_NSENTER.format(python=sys.executable, state=str(state)))
    (bindir / "nsenter").chmod(0o755)
    payload = tmp_path / "image" / "payload"
    subprocess.run([sys.executable, str(BUILD_PAYLOAD), str(payload), "--version", "1.0.0"],
                   check=True)
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("1 0 0:50 / / rw - overlay overlay rw\n")
    (tmp_path / "termination-log").write_text("")
    (tmp_path / "ns").write_text("")
    procs: list[subprocess.Popen[str]] = []

    def start(
        *args: str, required: tuple[str, ...] = (), host: dict[str, str] | None = None,
        daemon_wait: float = 120.0,
    ) -> PodProcess:
        for name, text in (host or {}).items():
            (state / name).write_text(text)
        cfg = {
            "required": list(required), "mountinfo": str(mountinfo), "ns": str(tmp_path / "ns"),
            "run": str(tmp_path / "run"), "packages": str(tmp_path / "image" / "packages"),
            "payload": str(payload), "shared": str(tmp_path / "shared"),
            "bus": f"unix:path={tmp_path / 'no-bus-here'}",
            "termlog": str(tmp_path / "termination-log"), "daemon_wait": daemon_wait,
        }
        env = {"PATH": f"{bindir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO),
               "PX_TEST": "one"}
        proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, json.dumps(cfg), "--endpoint", "127.0.0.1:0", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env, start_new_session=True, cwd=tmp_path,
        )
        procs.append(proc)
        return PodProcess(proc, state)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def host_commands(state: Path) -> list[list[str]]:
    path = state / "calls.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["argv"][2:] for line in lines]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2] == "Z"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_exits_zero_and_asks_nothing_of_the_host(pod: StartPod, signum: int) -> None:
    p = pod("-c", "px")
    p.wait_output("waiting for pxhostd on the system bus")
    p.proc.send_signal(signum)
    code, out, err = p.finish()
    assert code == 0, err
    assert "stopped; the storage service keeps running" in out
    commands = host_commands(p.state)
    assert commands  # it did talk to the (fake) host before the signal
    assert not any("stop" in c for c in commands)  # ... never to stop anything
    assert "Traceback" not in err


def test_stop_during_a_host_command_kills_it_and_leaves_no_orphan(pod: StartPod) -> None:
    p = pod("-c", "px", host={"slow": "1"})
    pid_file = p.state / "sleepy.pid"
    deadline = time.monotonic() + BOUND
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and p.proc.poll() is None
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    p.proc.send_signal(signal.SIGTERM)
    code, _out, err = p.finish()
    assert code == 0, err
    deadline = time.monotonic() + 10
    while not _gone(grandchild):
        assert time.monotonic() < deadline, "the host command's child outlived the pod"
        time.sleep(0.05)


def test_missing_mounts_one_message_no_host_call(pod: StartPod, tmp_path: Path) -> None:
    p = pod("-c", "px", required=(str(tmp_path / "etc-pwx"), str(tmp_path)))
    code, _out, err = p.finish()
    assert code == 1
    lines = [line for line in err.splitlines() if "MissingMounts" in line]
    assert len(lines) == 1
    assert f"{tmp_path / 'etc-pwx'}, {tmp_path}" in lines[0]
    assert host_commands(p.state) == []
    assert "MissingMounts" in (tmp_path / "termination-log").read_text()


def test_invalid_spec_exits_nonzero_with_the_named_error(pod: StartPod) -> None:
    p = pod("--service", "pxhostd", "-c", "px")
    code, _out, err = p.finish()
    assert code == 1
    assert "error: InvalidSpec: spec.service: 'pxhostd' is reserved" in err


def test_bad_machine_id_stops_before_any_change(pod: StartPod) -> None:
    p = pod("-c", "px", host={"machine-id": "uninitialized\n"})
    code, _out, err = p.finish()
    assert code == 1
    assert "machine-id says 'uninitialized'" in err
    assert host_commands(p.state) == [["cat", "--", "/etc/machine-id"]]


def test_usage_error_exits_2(pod: StartPod) -> None:
    code, _out, err = pod("--wipe").finish()
    assert code == 2 and "--wipe only goes with --uninstall" in err


def test_a_record_of_an_earlier_run_never_counts(pod: StartPod, tmp_path: Path) -> None:
    """The record is removed at start: until this run's submission ends there is none, so
    `pxhostctl probe --pod` says not ready (here no daemon ever answers: exit 1)."""
    record = tmp_path / "run" / "pod" / "submission"
    record.parent.mkdir(parents=True)
    record.write_text("RESULT=done\nSPEC_DIGEST=x\nRELEASE=\nTXID=\nMESSAGE=old run\n")
    code, out, err = pod("-c", "px", daemon_wait=0.5).finish()
    assert code == 1 and "error: DaemonUnavailable" in err.splitlines()[-1]
    assert "spec: args ['-c', 'px']" in out  # it got as far as building the spec
    assert not record.exists()
