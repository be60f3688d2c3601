"""The demo payload, run for real: built with build.py, started as a process, probed over HTTP."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

DEMO_DIR = Path(__file__).resolve().parents[3] / "container" / "demo-payload"
BUILD = DEMO_DIR / "build.py"
#: Generous bound for a process to do something it does in milliseconds (a shared, slow
#: machine must not fail the test); never a speed assertion.
BOUND = 30.0


def build(outdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BUILD), str(outdir), *args],
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=False,
    )


@pytest.fixture(scope="module")
def payload_v1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("payload") / "v1"
    result = build(out, "--version", "1.0.0")
    assert result.returncode == 0, result.stderr
    return out


class NotifyListener:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(BOUND)

    def receive(self) -> dict[str, str]:
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.splitlines() if line)

    def close(self) -> None:
        self.sock.close()


@dataclass
class Running:
    proc: subprocess.Popen[str]
    notify: NotifyListener
    port: int

    def get(self, path: str, method: str = "GET") -> tuple[int, bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=BOUND) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


@contextlib.contextmanager
def run_payload(
    program: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None,
    abstract: bool = False,
) -> Iterator[Running]:
    address = f"@pxdemo-test-{uuid.uuid4().hex}" if abstract else str(tmp_path / "notify")
    listener = NotifyListener(address)
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NOTIFY_SOCKET": address,
                "PXDEMO_CONFIG": str(tmp_path / "absent.json"), **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-S", str(program), "--port", "0", *args],
        env=full_env, stderr=subprocess.PIPE, text=True,
    )
    try:
        message = listener.receive()
        while "READY" not in message:  # a slow start announces itself first
            message = listener.receive()
        assert message["READY"] == "1", message
        port = int(message["STATUS"].rsplit(":", 1)[1])
        yield Running(proc, listener, port)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=BOUND)
        assert proc.stderr is not None
        proc.stderr.close()
        listener.close()


def test_ready_only_once_listening_and_endpoints_answer(payload_v1: Path, tmp_path: Path) -> None:
    with run_payload(payload_v1 / "pxdemo", tmp_path) as running:
        # READY=1 arrived, so the socket must already accept connections.
        status, body = running.get("/v1/cluster/nodehealth")
        assert status == 200
        health = json.loads(body)
        assert health["status"] == "healthy"
        assert health["version"] == "1.0.0"
        assert health["node"] == socket.gethostname()

        status, body = running.get("/status")
        assert status == 200
        doc = json.loads(body)
        assert doc["version"] == "1.0.0"
        assert doc["config_present"] is False
        assert doc["uptime"] >= 0

        status, body = running.get("/v1/cluster/nodehealth", method="HEAD")
        assert (status, body) == (200, b"")

        assert running.get("/nope")[0] == 404
        assert running.get("/v1/cluster")[0] == 404


def test_status_line_names_version_and_address(payload_v1: Path, tmp_path: Path) -> None:
    address = f"@pxdemo-test-{uuid.uuid4().hex}"
    listener = NotifyListener(address)
    proc = subprocess.Popen(
        [sys.executable, "-S", str(payload_v1 / "pxdemo"), "--port", "0"],
        env={"NOTIFY_SOCKET": address, "PXDEMO_CONFIG": str(tmp_path / "absent.json")},
        stderr=subprocess.DEVNULL,
    )
    try:
        message = listener.receive()
        assert message["READY"] == "1"
        assert message["STATUS"].startswith("pxdemo 1.0.0 serving on 127.0.0.1:")
    finally:
        proc.kill()
        proc.wait(timeout=BOUND)
        listener.close()


def test_sigterm_sends_stopping_and_exits_zero(payload_v1: Path, tmp_path: Path) -> None:
    with run_payload(payload_v1 / "pxdemo", tmp_path, abstract=True) as running:
        running.proc.send_signal(signal.SIGTERM)
        assert running.proc.wait(timeout=BOUND) == 0
        assert running.notify.receive().get("STOPPING") == "1"
        assert running.proc.stderr is not None
        assert "SIGTERM received; stopping" in running.proc.stderr.read()


def test_config_cluster_name_is_logged_and_reported(payload_v1: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"clusterid": "px-cluster-7", "kvdb": ["etcd:http://x:2379"]}))
    with run_payload(
        payload_v1 / "pxdemo", tmp_path, "--config", str(config), "-k", "etcd:secret-token"
    ) as running:
        doc = json.loads(running.get("/status")[1])
        assert doc["config_present"] is True
        assert doc["cluster"] == "px-cluster-7"
        assert json.loads(running.get("/v1/cluster/nodehealth")[1])["cluster"] == "px-cluster-7"
        running.proc.send_signal(signal.SIGTERM)
        assert running.proc.wait(timeout=BOUND) == 0
        assert running.proc.stderr is not None
        log = running.proc.stderr.read()
    assert "cluster px-cluster-7" in log
    assert "ignoring 2 argument(s) meant for Portworx" in log
    assert "secret-token" not in log


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"clusterid": 5}'])
def test_bad_config_exits_nonzero_with_clear_message(
    payload_v1: Path, tmp_path: Path, content: str
) -> None:
    config = tmp_path / "config.json"
    config.write_text(content)
    result = subprocess.run(
        [sys.executable, "-S", str(payload_v1 / "pxdemo"), "--port", "0", "--config", str(config)],
        env={}, capture_output=True, text=True, timeout=BOUND, check=False,
    )
    assert result.returncode == 2
    assert f"config {config}" in result.stderr
    assert "exiting with status 2" in result.stderr


def test_broken_build_exits_at_once_nonzero(tmp_path: Path) -> None:
    out = tmp_path / "broken"
    assert build(out, "--version", "3.0.0", "--broken").returncode == 0
    # Run through its own shebang and exec bit, as systemd will.
    result = subprocess.run(
        [str(out / "pxdemo")], env={}, capture_output=True, text=True, timeout=BOUND, check=False
    )
    assert result.returncode == 3
    assert "3.0.0 is a deliberately broken build" in result.stderr
    assert (out / "VERSION").read_text() == "3.0.0 (broken)\n"


def test_slow_start_delays_ready_but_honours_sigterm(payload_v1: Path, tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    listener = NotifyListener(address)
    proc = subprocess.Popen(
        [sys.executable, "-S", str(payload_v1 / "pxdemo"), "--port", "0"],
        env={"NOTIFY_SOCKET": address, "PXDEMO_SLOW_START": "600",
             "PXDEMO_CONFIG": str(tmp_path / "absent.json")},
        stderr=subprocess.PIPE, text=True,
    )
    try:
        first = listener.receive()
        assert "READY" not in first
        assert first["STATUS"] == "pxdemo 1.0.0 slow start: 600 s"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=BOUND) == 0
        assert proc.stderr is not None
        assert "stop requested during slow start" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=BOUND)
        assert proc.stderr is not None
        proc.stderr.close()
        listener.close()


def test_slow_start_build_bakes_the_delay(tmp_path: Path) -> None:
    out = tmp_path / "slow"
    assert build(out, "--version", "1.0.1", "--slow-start", "0.2").returncode == 0
    assert "SLOW_START = 0.2\n" in (out / "pxdemo").read_text()
    with run_payload(out / "pxdemo", tmp_path) as running:
        assert running.get("/status")[0] == 200


def test_build_is_deterministic_and_manifest_matches(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert build(a, "--version", "2.0.0").returncode == 0
    assert build(b, "--version", "2.0.0").returncode == 0
    names = sorted(p.name for p in a.iterdir())
    assert names == ["VERSION", "payload.yaml", "pxdemo"]
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes()

    manifest = yaml.safe_load((a / "payload.yaml").read_text())
    assert manifest["name"] == "portworx-demo"
    assert manifest["version"] == "2.0.0"
    assert manifest["exec"] == ["pxdemo"]
    assert manifest["notify"] is True
    assert manifest["health"] == "http://127.0.0.1:9001/v1/cluster/nodehealth"
    assert set(manifest["files"]) == {"pxdemo", "VERSION"}
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((a / rel).read_bytes()).hexdigest() == digest
    assert os.stat(a / "pxdemo").st_mode & 0o777 == 0o755


def test_version_changes_every_digest(tmp_path: Path) -> None:
    assert build(tmp_path / "v1", "--version", "1.0.0").returncode == 0
    assert build(tmp_path / "v2", "--version", "1.0.1").returncode == 0
    m1 = yaml.safe_load((tmp_path / "v1" / "payload.yaml").read_text())["files"]
    m2 = yaml.safe_load((tmp_path / "v2" / "payload.yaml").read_text())["files"]
    assert all(m1[rel] != m2[rel] for rel in m1)


def test_build_options_name_port_health(tmp_path: Path) -> None:
    out = tmp_path / "p"
    result = build(out, "--version", "1.0.0", "--name", "px-x", "--port", "19001")
    assert result.returncode == 0
    manifest = yaml.safe_load((out / "payload.yaml").read_text())
    assert manifest["name"] == "px-x"
    assert manifest["health"] == "http://127.0.0.1:19001/v1/cluster/nodehealth"
    assert "DEFAULT_PORT = 19001\n" in (out / "pxdemo").read_text()

    assert build(out, "--version", "1.0.0", "--health-url", "").returncode == 0
    assert "health" not in yaml.safe_load((out / "payload.yaml").read_text())


@pytest.mark.parametrize(
    "args",
    [
        ["--version", "1.0\n0"],
        ["--version", "../1"],
        ["--version", "1.0.0", "--name", "Bad Name"],
        ["--version", "1.0.0", "--port", "0"],
        ["--version", "1.0.0", "--health-url", "http://x/\"y\" z"],
    ],
)
def test_bad_build_input_is_refused_and_writes_nothing(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "out"
    result = build(out, *args)
    assert result.returncode == 1
    assert result.stderr.startswith("build.py: bad ")
    assert not out.exists()


def test_build_refuses_a_directory_with_foreign_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious").write_text("keep")
    result = build(out, "--version", "1.0.0")
    assert result.returncode == 1
    assert "precious" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["precious"]


def test_port_in_use_is_a_clear_failure(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-S", str(DEMO_DIR / "pxdemo.py"), "--port", str(port)],
            env={"PXDEMO_CONFIG": str(tmp_path / "absent.json")},
            capture_output=True, text=True, timeout=BOUND, check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_unbuilt_source_reports_dev_version() -> None:
    result = subprocess.run(
        [sys.executable, "-S", str(DEMO_DIR / "pxdemo.py"), "--version"],
        capture_output=True, text=True, timeout=BOUND, check=True,
    )
    assert result.stdout == "0.0.0-dev\n"
