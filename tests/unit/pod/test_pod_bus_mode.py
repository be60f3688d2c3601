"""`--host-access=bus` (Docker Swarm): options, Docker secrets, the host daemon's version."""

from __future__ import annotations

from pathlib import Path

import pytest

from pxhostd.errors import HostStateError, InvalidSpec
from pxhostd.pod import busaccess, dockersecrets, specbuild
from pxhostd.pod.busaccess import HostAccess

SECRET = "s3cr3t-hunter2"


def test_host_access_is_the_pods_own_option_and_defaults_to_nsenter() -> None:
    assert specbuild.parse_pod_args(["-c", "x"]).host_access is HostAccess.NSENTER
    for argv in (["--host-access=bus", "-c", "x"], ["-c", "x", "--host-access", "bus"]):
        options = specbuild.parse_pod_args(argv)
        assert options.host_access is HostAccess.BUS
        assert options.args == ("-c", "x")
    assert specbuild.parse_pod_args(["--host-access=nsenter"]).host_access is HostAccess.NSENTER
    # After `--` it is the service's.
    assert specbuild.parse_pod_args(["--", "--host-access=bus"]).args == ("--host-access=bus",)


@pytest.mark.parametrize("value", ["", "Bus", "docker", "bus;id"])
def test_unknown_host_access_is_a_usage_error(value: str) -> None:
    with pytest.raises(specbuild.UsageError, match="--host-access: expected nsenter or bus"):
        specbuild.parse_pod_args([f"--host-access={value}"])


def test_help_names_the_mode() -> None:
    assert "--host-access" in specbuild.argparse_help()


def test_docker_secrets_become_the_kubernetes_secret_environment(tmp_path: Path) -> None:
    (tmp_path / "portworx-token").write_text(SECRET + "\n")
    (tmp_path / "portworx-kvdb-userpwd").write_text("user:pa ss ")
    (tmp_path / "portworx-acltoken").write_bytes(b"acl\r\n")
    (tmp_path / "portworx-env.REGISTRY_PASS").write_text("reg")
    (tmp_path / "someone-elses-secret").write_text("not ours")
    assert dockersecrets.read_docker_secrets(tmp_path) == {
        "PXHOSTD_TOKEN": SECRET,
        "PXHOSTD_KVDB_USERPWD": "user:pa ss ",  # only one trailing newline is trimmed
        "PXHOSTD_ACLTOKEN": "acl",
        "REGISTRY_PASS": "reg",
    }


def test_no_secrets_directory_means_no_secrets(tmp_path: Path) -> None:
    assert dockersecrets.read_docker_secrets(tmp_path / "absent") == {}


@pytest.mark.parametrize(
    ("name", "data", "why"),
    [
        ("portworx-token", b"", "is empty"),
        ("portworx-token", b"\n", "is empty"),
        ("portworx-token", b"a\nb", "line break"),
        ("portworx-token", b"a\0b", "NUL"),
        ("portworx-token", b"\xff\xfe", "not UTF-8"),
        ("portworx-token", b"x" * (dockersecrets.MAX_SECRET_BYTES + 1), "larger than"),
        ("portworx-env.A-B", b"v", "not a valid environment variable name"),
        ("portworx-env.", b"v", "not a valid environment variable name"),
    ],
)
def test_a_bad_secret_is_named_without_its_value(
    tmp_path: Path, name: str, data: bytes, why: str
) -> None:
    (tmp_path / name).write_bytes(data)
    with pytest.raises(InvalidSpec) as info:
        dockersecrets.read_docker_secrets(tmp_path)
    message = str(info.value)
    assert name in message and why in message
    if len(data) > 2:
        assert data[:3].decode(errors="ignore") not in message.replace(name, "")


def test_a_secret_wins_over_an_inline_variable_of_the_same_name(tmp_path: Path) -> None:
    (tmp_path / "portworx-token").write_text(SECRET)
    env = busaccess.pod_environment({"PXHOSTD_TOKEN": "inline", "A": "1"}, tmp_path)
    assert env == {"PXHOSTD_TOKEN": SECRET, "A": "1"}


def test_secret_names_are_what_the_generator_writes() -> None:
    from pxhostd.manifest.model import swarm

    assert set(swarm.SECRET_NAMES.values()) <= set(dockersecrets.SECRET_FILES)


@pytest.mark.parametrize("host", ["0.1.0", "0.2", "1.0", "0.1.0+b1"])
def test_host_daemon_as_new_or_newer_is_accepted(host: str) -> None:
    busaccess.check_daemon_version(host, "0.1.0")


@pytest.mark.parametrize("host", ["0.0.9", "0.1.0~rc1", "0.0"])
def test_older_host_daemon_names_the_package_and_version(host: str) -> None:
    with pytest.raises(HostStateError) as info:
        busaccess.check_daemon_version(host, "0.1.0")
    message = str(info.value)
    assert f"pxhostd {host} is older than 0.1.0" in message
    assert "pxhostd package, version 0.1.0 or newer" in message
    assert "pxhostd_0.1.0_all.deb" in message and "pxhostd-0.1.0-1.noarch.rpm" in message


def test_nonsense_host_version_is_refused_with_the_advice() -> None:
    with pytest.raises(HostStateError, match="not a version; install the pxhostd package"):
        busaccess.check_daemon_version("banana", "0.1.0")
