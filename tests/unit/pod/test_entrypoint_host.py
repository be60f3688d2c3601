"""The nsenter chokepoint, host preparation and the host daemon install, with a fake host.

`nsenter` here is a stand-in script on PATH that plays the host: it records every call
and answers the few commands the pod runs from a state directory. This proves our own
logic (argv passed verbatim, environment kept from the host, timeouts, kill on cancel,
decisions); the real nsenter, apt-get and systemd are exercised in tests/e2e/test_pod.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pxhostd.errors import HostStateError
from pxhostd.pod import hostinstall, hostprep
from pxhostd.pod.hostenter import HOST_ENV, Host, HostCommandFailed
from pxhostd.pod.hostinstall import Plan, ensure_host_daemon

FAKE_NSENTER = textwrap.dedent(
    """\
    #!{python}
    import json, os, subprocess, sys, time
    from pathlib import Path
    state = Path({state!r})
    argv = sys.argv[1:]
    with open(state / "calls.jsonl", "a") as f:
        f.write(json.dumps({{"argv": argv, "env": dict(os.environ)}}) + "\\n")
    assert argv[0].startswith("--mount=") and argv[1] == "--", argv
    cmd = argv[2:]
    def read(name, default=""):
        p = state / name
        return p.read_text() if p.exists() else default
    if cmd[0] == "echo-args":
        print(json.dumps(cmd[1:]))
    elif cmd[0] == "fail":
        print("something went wrong", file=sys.stderr)
        sys.exit(3)
    elif cmd[0] == "sleepy":
        child = subprocess.Popen(["sleep", "300"])
        (state / "sleepy.pid").write_text(str(child.pid))
        child.wait()
    elif cmd == ["cat", "--", "/etc/machine-id"]:
        print(read("machine-id"), end="")
    elif cmd[0] == "findmnt":
        if read("slow"):
            child = subprocess.Popen(["sleep", "300"])
            (state / "sleepy.pid").write_text(str(child.pid))
            child.wait()
        print(read("propagation", "private"))
    elif cmd == ["mount", "--make-shared", "/"]:
        (state / "propagation").write_text("shared")
    elif cmd == ["pxhostd", "--version"]:
        v = read("pxhostd-version")
        if not v:
            print("nsenter: failed to execute pxhostd: No such file or directory", file=sys.stderr)
            sys.exit(127)
        print("pxhostd " + v)
    elif cmd[:2] == ["systemctl", "is-active"]:
        s = read("active-" + cmd[2], "inactive")
        print(s)
        sys.exit(0 if s == "active" else 3)
    elif cmd[:2] == ["systemctl", "start"]:
        (state / ("active-" + cmd[2])).write_text("active")
    elif cmd[0] == "systemd-run":
        deb = cmd[-1]
        if read("install-fails"):
            sys.exit(1)
        (state / "pxhostd-version").write_text(Path(deb).name.split("_")[1])
        (state / "active-pxhostd.service").write_text("active")
    elif cmd[0] == "journalctl":
        print("(Reading database ... 5%")
        print("Setting up pxhostd")
    else:
        print("nsenter: failed to execute " + cmd[0], file=sys.stderr)
        sys.exit(127)
    """
)


@pytest.fixture
def fake_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    state = tmp_path / "host"
    state.mkdir()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "nsenter"
    script.write_text(FAKE_NSENTER.format(python=sys.executable, state=str(state)))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("POD_SECRET", "must-not-reach-the-host")
    return state


def calls(state: Path) -> list[dict[str, object]]:
    path = state / "calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def commands(state: Path) -> list[list[str]]:
    return [list(c["argv"])[2:] for c in calls(state)]  # type: ignore[call-overload]


# -- the chokepoint ------------------------------------------------------------------------


def test_argv_goes_through_verbatim_with_a_fixed_environment(fake_host: Path) -> None:
    host = Host(Path("/host_proc/1/ns/mnt"))
    nasty = ["a b", "$(reboot)", "; rm -rf /", "'\"", "*"]
    result = asyncio.run(host.run(["echo-args", *nasty]))
    assert json.loads(result.stdout) == nasty
    (call,) = calls(fake_host)
    assert call["argv"] == ["--mount=/host_proc/1/ns/mnt", "--", "echo-args", *nasty]
    assert call["env"] == dict(HOST_ENV)  # the pod's environment never reaches the host


def test_a_string_is_refused() -> None:
    host = Host()
    with pytest.raises(TypeError):
        asyncio.run(host.run("systemctl restart portworx"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        asyncio.run(host.run([]))


def test_failure_names_command_status_and_reason(fake_host: Path) -> None:
    with pytest.raises(HostCommandFailed) as err:
        asyncio.run(Host().run(["fail", "now"]))
    assert err.value.returncode == 3
    assert "`fail now` failed (exit 3): something went wrong" in str(err.value)
    result = asyncio.run(Host().run(["fail"], check=False))
    assert result.returncode == 3 and not result.ok


def test_missing_program_on_the_host(fake_host: Path) -> None:
    result = asyncio.run(Host().run(["no-such-tool"], check=False))
    assert result.not_found
    with pytest.raises(HostCommandFailed, match="no-such-tool not found on the host"):
        asyncio.run(Host().run(["no-such-tool"]))


def test_missing_nsenter_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HostCommandFailed, match="not found in the pod"):
        asyncio.run(Host(nsenter=str(tmp_path / "nope")).run(["true"]))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2] == "Z"


def _wait_pid_file(path: Path) -> int:
    deadline = time.monotonic() + 30
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, "fake command never started"
        time.sleep(0.05)
    return int(path.read_text())


def test_timeout_kills_the_whole_command(fake_host: Path) -> None:
    with pytest.raises(HostCommandFailed, match=r"did not finish within 0\.5 s"):
        asyncio.run(Host().run(["sleepy"], timeout=0.5))
    grandchild = _wait_pid_file(fake_host / "sleepy.pid")
    deadline = time.monotonic() + 10
    while not _gone(grandchild):
        assert time.monotonic() < deadline, "the command's child outlived the timeout"
        time.sleep(0.05)


def test_cancel_kills_and_reaps_the_command(fake_host: Path) -> None:
    async def scenario() -> int:
        task = asyncio.create_task(Host().run(["sleepy"], timeout=60))
        pid_file = fake_host / "sleepy.pid"
        while not pid_file.exists() or not pid_file.read_text():
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return int(pid_file.read_text())

    grandchild = asyncio.run(scenario())
    deadline = time.monotonic() + 10
    while not _gone(grandchild):
        assert time.monotonic() < deadline, "the command's child outlived the cancel"
        time.sleep(0.05)


# -- host checks and preparation -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("\n", "is empty"),
        ("uninitialized\n", "uninitialized"),
        ("0" * 32, "not a valid machine id"),
        ("ABCDEF0123456789ABCDEF0123456789", "not a valid machine id"),
        ("abc", "not a valid machine id"),
    ],
)
def test_bad_machine_ids(text: str, message: str) -> None:
    with pytest.raises(HostStateError, match=message):
        hostprep.parse_machine_id(text)


def test_machine_id_through_the_host(fake_host: Path) -> None:
    (fake_host / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    assert asyncio.run(hostprep.host_machine_id(Host())) == "0123456789abcdef0123456789abcdef"
    (fake_host / "machine-id").write_text("")
    with pytest.raises(HostStateError, match="empty"):
        asyncio.run(hostprep.host_machine_id(Host()))


def test_own_namespace_is_not_the_host(tmp_path: Path) -> None:
    with pytest.raises(HostStateError, match="pod's own mount namespace"):
        hostprep.check_host_namespace(Path("/proc/self/ns/mnt"))
    with pytest.raises(HostStateError, match="cannot read the host mount namespace"):
        hostprep.check_host_namespace(tmp_path / "missing")
    hostprep.check_host_namespace(tmp_path)  # any other file is accepted


def test_shared_root_is_made_once(fake_host: Path) -> None:
    assert asyncio.run(hostprep.ensure_shared_root(Host())) is True
    assert asyncio.run(hostprep.ensure_shared_root(Host())) is False
    assert commands(fake_host).count(["mount", "--make-shared", "/"]) == 1


@pytest.mark.parametrize(
    ("value", "shared"),
    [("shared", True), ("private", False), ("private,slave", False), ("shared,slave", True)],
)
def test_is_shared(value: str, shared: bool) -> None:
    assert hostprep.is_shared(value) is shared


# -- host daemon install -------------------------------------------------------------------


@pytest.fixture
def image(tmp_path: Path) -> Path:
    packages = tmp_path / "image" / "packages"
    packages.mkdir(parents=True)
    (packages / "pxhostd_0.2.0_all.deb").write_bytes(b"fake deb 0.2.0")
    return packages


def _install(image: Path, tmp_path: Path, version: str = "0.2.0") -> tuple[Plan, list[str]]:
    lines: list[str] = []
    plan = asyncio.run(ensure_host_daemon(
        Host(), version, lines.append, package_dir=image,
        host_packages=tmp_path / "shared" / "packages", lock_path=tmp_path / "run" / "host.lock",
    ))
    return plan, lines


def test_installs_when_missing(fake_host: Path, image: Path, tmp_path: Path) -> None:
    plan, lines = _install(image, tmp_path)
    assert plan is Plan.INSTALL
    shared = tmp_path / "shared" / "packages" / "pxhostd_0.2.0_all.deb"
    assert shared.read_bytes() == b"fake deb 0.2.0"
    (run,) = [c for c in commands(fake_host) if c[0] == "systemd-run"]
    assert run[-1] == str(shared)
    assert "--reinstall" not in run
    assert "host apt-get: Setting up pxhostd" in lines
    assert not any("Reading database" in line for line in lines)


def test_identical_version_does_nothing(fake_host: Path, image: Path, tmp_path: Path) -> None:
    (fake_host / "pxhostd-version").write_text("0.2.0")
    (fake_host / "active-pxhostd.service").write_text("active")
    plan, _ = _install(image, tmp_path)
    assert plan is Plan.NOTHING
    assert not any(c[0] in ("systemd-run", "systemctl") and c[1] != "is-active"
                   for c in commands(fake_host))
    assert not (tmp_path / "shared").exists()


def test_older_version_is_upgraded_newer_kept(fake_host: Path, image: Path,
                                              tmp_path: Path) -> None:
    (fake_host / "pxhostd-version").write_text("0.10.0")
    assert _install(image, tmp_path)[0] is Plan.KEEP_NEWER
    (fake_host / "pxhostd-version").write_text("0.1.9")
    (tmp_path / "shared" / "packages").mkdir(parents=True)
    (tmp_path / "shared" / "packages" / "pxhostd_0.1.9_all.deb").write_text("old")
    assert _install(image, tmp_path)[0] is Plan.UPGRADE
    assert (fake_host / "pxhostd-version").read_text() == "0.2.0"
    assert sorted(p.name for p in (tmp_path / "shared" / "packages").iterdir()) == [
        "pxhostd_0.2.0_all.deb"
    ]


def test_stopped_daemon_is_started(fake_host: Path, image: Path, tmp_path: Path) -> None:
    (fake_host / "pxhostd-version").write_text("0.2.0")
    _install(image, tmp_path)
    assert ["systemctl", "start", "pxhostd.service"] in commands(fake_host)


def test_failed_install_is_an_error(fake_host: Path, image: Path, tmp_path: Path) -> None:
    (fake_host / "install-fails").write_text("1")
    with pytest.raises(HostStateError, match=r"installing pxhostd_0\.2\.0_all\.deb on the host"):
        _install(image, tmp_path)


def test_image_without_its_package(fake_host: Path, image: Path, tmp_path: Path) -> None:
    with pytest.raises(HostStateError, match=r"no pxhostd_0.3.0_all.deb .*pxhostd_0.2.0_all"):
        _install(image, tmp_path, "0.3.0")


def test_broken_host_daemon_is_reinstalled(fake_host: Path, image: Path,
                                           tmp_path: Path) -> None:
    (fake_host / "pxhostd-version").write_text("garbage output")
    plan, _ = _install(image, tmp_path)
    assert plan is Plan.REPAIR
    (run,) = [c for c in commands(fake_host) if c[0] == "systemd-run"]
    assert "--reinstall" in run
    assert hostinstall.INSTALL_UNIT in " ".join(run)


def test_without_host_pid_the_pod_refuses_first(tmp_path: Path) -> None:
    """Another PID namespace than the host's: exit with the hostPID advice."""
    own = Path("/proc/self/ns/pid")
    other = Path("/proc/self/ns/mnt")  # any other namespace stands in for the host's
    with pytest.raises(HostStateError, match=r"set `hostPID: true`"):
        hostprep.check_host_pid(other, own)
    hostprep.check_host_pid(own, own)  # the same namespace: hostPID is set
    hostprep.check_host_pid(tmp_path / "missing", own)  # left to the mount check
