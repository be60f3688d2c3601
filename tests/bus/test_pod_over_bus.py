"""`pxhostd-pod --host-access=bus` against pxhostd's real D-Bus surface (in-memory engine).

The pod runs as a subprocess without a TTY, with a private dbus-daemon as its system bus,
a stand-in `nsenter` that records any call (there must be none in this mode), scratch
places for /opt/pwx and /run/pxhostd, and Docker secret files. What the daemon received is
read from the in-memory engine. The real host, Docker and Swarm: tests/e2e/test_swarm.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from test_manager import running_daemon

from pxhostd import __version__

REPO = Path(__file__).resolve().parents[2]
BUILD_PAYLOAD = REPO / "container" / "demo-payload" / "build.py"
SECRET = "s3cr3t-hunter2"
BOUND = 60.0

RUNNER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from pxhostd.pod.entrypoint import PodSettings, main
    cfg = json.loads(sys.argv[1])
    settings = PodSettings(
        mountinfo=Path(cfg["mountinfo"]),
        bus_required_mounts=tuple(cfg["required"]),
        status_file=Path(cfg["run"]) / "status",
        lock_file=Path(cfg["run"]) / "host.lock",
        image_payload=Path(cfg["payload"]),
        host_payloads=Path(cfg["shared"]) / "payloads",
        bus_address=cfg["bus"],
        daemon_wait=cfg["wait"],
        termination_log=Path(cfg["termlog"]),
        secrets_dir=Path(cfg["secrets"]),
        min_host_version=cfg["min_version"],
    )
    sys.exit(main(sys.argv[2:], settings))
    """
)

NSENTER_TRAP = """#!/bin/sh
echo "$@" >>{calls}
exit 99
"""


class BusPod:
    def __init__(self, tmp: Path, bus: str) -> None:
        self.tmp = tmp
        self.bus = bus
        self.calls = tmp / "nsenter-calls"
        self.secrets = tmp / "secrets"
        self.secrets.mkdir()
        (self.secrets / "portworx-token").write_text(SECRET + "\n")
        (self.secrets / "portworx-env.REGISTRY_PASS").write_text("reg-" + SECRET)
        self.payload = tmp / "image" / "payload"
        subprocess.run([sys.executable, str(BUILD_PAYLOAD), str(self.payload), "--version",
                        "1.0.0"], check=True)
        bindir = tmp / "bin"
        bindir.mkdir()
        (bindir / "nsenter").write_text(NSENTER_TRAP.format(calls=self.calls))
        (bindir / "nsenter").chmod(0o755)
        self.path = f"{bindir}:{os.environ['PATH']}"
        (tmp / "mountinfo").write_text("1 0 0:50 / / rw - overlay overlay rw\n")
        (tmp / "termination-log").write_text("")

    async def start(self, *args: str, required: tuple[str, ...] = (), wait: float = 5.0,
                    min_version: str = __version__, bus: str | None = None
                    ) -> asyncio.subprocess.Process:
        cfg = {
            "mountinfo": str(self.tmp / "mountinfo"), "required": list(required),
            "run": str(self.tmp / "run"), "payload": str(self.payload),
            "shared": str(self.tmp / "shared"), "bus": bus or self.bus, "wait": wait,
            "termlog": str(self.tmp / "termination-log"), "secrets": str(self.secrets),
            "min_version": min_version,
        }
        (self.tmp / "run").mkdir(exist_ok=True)
        env = {"PATH": self.path, "PYTHONPATH": str(REPO), "PX_TEST": "one",
               "HOSTNAME": "c0ffee", "HOME": "/root"}
        return await asyncio.create_subprocess_exec(
            sys.executable, "-c", RUNNER, json.dumps(cfg), "--host-access=bus",
            "--endpoint", "127.0.0.1:0", *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True, cwd=self.tmp,
        )


async def read_until(proc: asyncio.subprocess.Process, text: str, seen: list[str]) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + BOUND
    while not any(text in line for line in seen):
        line = await asyncio.wait_for(proc.stdout.readline(), deadline - time.monotonic())
        if not line:
            err = await proc.stderr.read() if proc.stderr else b""
            raise AssertionError(f"exited before {text!r}: {seen} {err.decode()}")
        seen.append(line.decode())


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro_fn())


def test_bus_mode_submits_the_spec_with_secrets_and_runs_no_host_command(
    dbus_address: str, state_root: Path, tmp_path: Path
) -> None:
    pod = BusPod(tmp_path, dbus_address)

    async def body() -> None:
        async with running_daemon(dbus_address, state_root) as daemon:
            proc = await pod.start("-c", "swarm-cluster", "-x", "swarm")
            out: list[str] = []
            await read_until(proc, "install: done (changed)", out)
            await read_until(proc, "serving 127.0.0.1:0/health", out)
            spec = daemon.engine.calls[-1].params
            proc.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            stdout, stderr = await asyncio.wait_for(proc.communicate(), BOUND)
            elapsed = time.monotonic() - t0
            assert proc.returncode == 0, stderr.decode()
            assert elapsed < 2.0
            text = "".join(out) + stdout.decode() + stderr.decode()
            assert "host: pxhostd " + __version__ + " on the system bus" in text
            assert "stopped; the storage service keeps running" in text
            # Only the install: nothing asked of the daemon on the way out.
            assert [c.operation for c in daemon.engine.calls] == ["install"]
            assert SECRET not in text
        assert spec["args"] == ["-c", "swarm-cluster"]
        assert spec["mounts"] == []
        assert str(spec["payload"]).startswith(str(tmp_path / "shared" / "payloads"))
        env = dict(spec["env"])
        assert env["PX_TEST"] == "one"
        assert env["REGISTRY_PASS"] == "reg-" + SECRET  # a Docker secret, not an arg
        # The token file arrives like the Kubernetes Secret's PXHOSTD_TOKEN: as PX_TOKEN.
        assert env["PX_TOKEN"] == SECRET
        assert not any(k.startswith("PXHOSTD_") for k in env)
        assert SECRET not in json.dumps(spec["args"])
        assert not pod.calls.exists(), "bus mode ran a host command"

    run(body)


def test_bus_mode_uninstall(dbus_address: str, state_root: Path, tmp_path: Path) -> None:
    pod = BusPod(tmp_path, dbus_address)

    async def body() -> None:
        async with running_daemon(dbus_address, state_root) as daemon:
            daemon.engine.spec = {"payload": "/x"}
            proc = await pod.start("--uninstall", "--wipe")
            stdout, stderr = await asyncio.wait_for(proc.communicate(), BOUND)
            assert proc.returncode == 0, stderr.decode()
            assert "uninstall: done" in stdout.decode()
            call = daemon.engine.calls[-1]
            assert call.operation == "uninstall"
            assert call.params.get("wipe") is True
        assert not pod.calls.exists()

    run(body)


def test_no_pxhostd_on_the_bus_names_the_package(tmp_path: Path, dbus_address: str) -> None:
    pod = BusPod(tmp_path, dbus_address)

    async def body() -> None:
        proc = await pod.start("-c", "x", wait=0.5)
        _stdout, stderr = await asyncio.wait_for(proc.communicate(), BOUND)
        assert proc.returncode == 1
        last = stderr.decode().strip().splitlines()[-1]
        assert "error: HostStateError: no pxhostd on this host's system bus" in last
        assert f"install the pxhostd package, version {__version__} or newer" in last
        assert last in (tmp_path / "termination-log").read_text()

    run(body)
    assert not pod.calls.exists()


def test_too_old_host_daemon_names_the_version_needed(
    dbus_address: str, state_root: Path, tmp_path: Path
) -> None:
    pod = BusPod(tmp_path, dbus_address)

    async def body() -> None:
        async with running_daemon(dbus_address, state_root) as daemon:
            proc = await pod.start("-c", "x", min_version="99.0")
            _stdout, stderr = await asyncio.wait_for(proc.communicate(), BOUND)
            assert proc.returncode == 1
            assert (f"the host's pxhostd {__version__} is older than 99.0, which this pod "
                    "needs: install the pxhostd package, version 99.0 or newer") in stderr.decode()
            assert daemon.engine.calls == []

    run(body)


def test_missing_bus_mounts_in_one_message(tmp_path: Path, dbus_address: str) -> None:
    pod = BusPod(tmp_path, dbus_address)
    missing = (str(tmp_path / "run-dbus-socket"), str(tmp_path / "opt-pwx"))

    async def body() -> None:
        proc = await pod.start("-c", "x", required=missing)
        _stdout, stderr = await asyncio.wait_for(proc.communicate(), BOUND)
        assert proc.returncode == 1
        lines = [line for line in stderr.decode().splitlines() if "MissingMounts" in line]
        assert len(lines) == 1 and ", ".join(missing) in lines[0]

    run(body)


@pytest.mark.parametrize("content", [b"", b"two\nlines"])
def test_a_bad_docker_secret_stops_the_pod_by_name(
    dbus_address: str, state_root: Path, tmp_path: Path, content: bytes
) -> None:
    pod = BusPod(tmp_path, dbus_address)
    (pod.secrets / "portworx-kvdb-userpwd").write_bytes(content)

    async def body() -> None:
        async with running_daemon(dbus_address, state_root) as daemon:
            proc = await pod.start("-c", "x")
            _stdout, stderr = await asyncio.wait_for(proc.communicate(), BOUND)
            assert proc.returncode == 1
            assert "InvalidSecret: secret portworx-kvdb-userpwd" in stderr.decode()
            assert daemon.engine.calls == []

    run(body)
