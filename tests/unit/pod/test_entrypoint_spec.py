"""The pod's arguments, environment and mounts -> the desired spec; nothing secret logged."""

from __future__ import annotations

import logging

import pytest

from pxhostd.errors import HostStateError, InvalidSpec
from pxhostd.log import REDACTED, is_secret_name
from pxhostd.pod.mounts import MissingMounts, parse_mountinfo
from pxhostd.pod.specbuild import (
    DEFAULT_ENDPOINT,
    SECRET_ENV,
    SERVICE_MOUNTS_ENV,
    PodOptions,
    UsageError,
    build_spec,
    declared_service_mounts,
    describe_spec,
    is_dropped_env,
    parse_pod_args,
    redact_args,
    spec_env,
    spec_mounts,
)
from pxhostd.spec.validate import spec_from_dict

SECRET = "hunter2-secret-value"


def test_own_options_are_taken_out_everything_else_goes_to_the_service() -> None:
    opts = parse_pod_args(
        ["-c", "px", "--endpoint", "127.0.0.1:9115", "-s", "/dev/sdb", "--debug",
         "--service=px2", "-x", "kubernetes", "--sync", "--log", "/var/log/x", "-a"]
    )
    assert opts.args == ("-c", "px", "-s", "/dev/sdb", "-a")
    assert opts.endpoint == ("127.0.0.1", 9115)
    assert opts.service == "px2"
    assert opts.debug and not opts.uninstall
    assert opts.ignored == ("-x kubernetes", "--sync", "--log")


def test_double_dash_passes_the_rest_verbatim() -> None:
    opts = parse_pod_args(["-c", "px", "--", "--debug", "--payload", "/x"])
    assert opts.args == ("-c", "px", "--debug", "--payload", "/x")
    assert not opts.debug and opts.payload is None


def test_defaults() -> None:
    opts = parse_pod_args([])
    assert opts == PodOptions()
    assert opts.endpoint == DEFAULT_ENDPOINT == ("127.0.0.1", 9015)


def test_uninstall_and_wipe() -> None:
    opts = parse_pod_args(["--uninstall", "--wipe"])
    assert opts.uninstall and opts.wipe


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--wipe"], "--wipe only goes with --uninstall"),
        (["--endpoint"], "--endpoint needs a value"),
        (["--endpoint", "9015"], "must be ADDRESS:PORT"),
        (["--endpoint", "1.2.3.4:99999"], "must be ADDRESS:PORT"),
        (["--payload", "relative/dir"], "--payload"),
    ],
)
def test_bad_own_options_are_named(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_pod_args(argv)


def test_a_flag_with_a_value_is_not_mistaken_for_an_own_option() -> None:
    # "--debug=1" is not the pod's --debug (a flag takes no value): it goes to the service.
    assert parse_pod_args(["--debug=1"]).args == ("--debug=1",)


POD_ENV = {
    "PATH": "/usr/bin", "HOME": "/root", "HOSTNAME": "node1", "TERM": "xterm",
    "LANG": "C.UTF-8", "LC_CTYPE": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
    "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_PORT": "tcp://10.96.0.1:443",
    "PORTWORX_SERVICE_SERVICE_HOST": "10.96.0.20",
    "PORTWORX_SERVICE_SERVICE_PORT": "9001",
    "PORTWORX_SERVICE_SERVICE_PORT_PX_API": "9001",
    "PORTWORX_SERVICE_PORT": "tcp://10.96.0.20:9001",
    "PORTWORX_SERVICE_PORT_9001_TCP": "tcp://10.96.0.20:9001",
    "PORTWORX_SERVICE_PORT_9001_TCP_ADDR": "10.96.0.20",
    "PORTWORX_SERVICE_PORT_9001_TCP_PORT": "9001",
    "PORTWORX_SERVICE_PORT_9001_TCP_PROTO": "tcp",
    "PXHOSTD_NODE_NAME": "node1", "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/x",
    "PX_TEST": "one", "PX_HTTP_PORT": "9001", "REGISTRY_PASS": SECRET,
    "bad.name": "x",
}


def test_env_keeps_the_users_and_drops_the_runtimes() -> None:
    assert spec_env(POD_ENV) == {"PX_TEST": "one", "PX_HTTP_PORT": "9001",
                                 "REGISTRY_PASS": SECRET}


@pytest.mark.parametrize(
    ("name", "value", "dropped"),
    [
        ("MY_PORT", "9001", False),  # a user's *_PORT without a URL value stays
        ("MY_PORT", "tcp://10.0.0.1:80", True),  # a service link
        ("PX_SERVICE_HOST", "10.0.0.1", True),
        ("PATHS", "x", False),
        ("PXHOSTD_ANYTHING", "x", True),
    ],
)
def test_env_drop_rules(name: str, value: str, dropped: bool) -> None:
    assert is_dropped_env(name, value) is dropped


HOST_MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:5 / /proc rw shared:2 - proc proc rw
"""
POD_MOUNTINFO = """\
100 90 0:50 / / rw - overlay overlay rw,lowerdir=/x
101 100 0:51 / /proc rw - proc proc rw
102 100 8:1 /etc/pwx /etc/pwx rw - ext4 /dev/sda1 rw
103 100 8:1 /opt/pwx /opt/pwx rw - ext4 /dev/sda1 rw
104 100 8:1 /etc/systemd/system /etc/systemd/system rw - ext4 /dev/sda1 rw
105 100 0:5 /1/ns /host_proc/1/ns rw - proc proc rw
106 100 0:30 /pxhostd /run/pxhostd rw - tmpfs tmpfs rw
107 100 0:30 /dbus /run/dbus rw - tmpfs tmpfs rw
108 100 8:1 /var/lib/kubelet /var/lib/kubelet rw - ext4 /dev/sda1 rw
109 100 8:1 /srv/data /data ro - ext4 /dev/sda1 rw
110 100 8:1 /etc/hosts /etc/hosts rw - ext4 /dev/sda1 rw
111 100 0:30 /containers/storage/overlay-containers/c0ffee/userdata/.containerenv \
/run/.containerenv rw - tmpfs tmpfs rw
112 100 8:1 /var/lib/kubelet/pods/p1/containers/px/0 /dev/termination-log rw - ext4 /dev/sda1 rw
113 100 8:1 /var/lib/containers/storage/overlay-containers/c0ffee/userdata/hosts \
/etc/hosts rw - ext4 /dev/sda1 rw
114 100 8:1 /var/lib/osd /var/lib/osd rw - ext4 /dev/sda1 rw
115 100 0:60 / /var/run/secrets/kubernetes.io/serviceaccount ro - tmpfs tmpfs rw
""".replace("\\\n", "")
HOST_MOUNTINFO_RUN = HOST_MOUNTINFO + "40 22 0:30 / /run rw shared:5 - tmpfs tmpfs rw\n"


def test_declared_mounts_are_exactly_the_services() -> None:
    pod = parse_mountinfo(POD_MOUNTINFO)
    host = parse_mountinfo(HOST_MOUNTINFO_RUN)
    declared = declared_service_mounts({SERVICE_MOUNTS_ENV: "/var/lib/kubelet:/data"})
    assert declared == ["/var/lib/kubelet", "/data"]
    assert spec_mounts(pod, host, declared) == [
        "/var/lib/kubelet:/var/lib/kubelet",
        "/srv/data:/data:ro",
    ]
    assert spec_mounts(pod, host, []) == []
    assert declared_service_mounts({}) is None


def test_a_declared_mount_that_is_missing_is_named() -> None:
    pod = parse_mountinfo(POD_MOUNTINFO)
    with pytest.raises(MissingMounts, match="/var/cores, /mnt/x"):
        spec_mounts(pod, None, ["/var/lib/osd", "/var/cores", "/mnt/x"])


def test_a_declared_mount_on_a_runtime_tmpfs_is_refused() -> None:
    pod = parse_mountinfo(POD_MOUNTINFO)
    with pytest.raises(HostStateError, match="must be a hostPath"):
        spec_mounts(pod, parse_mountinfo(HOST_MOUNTINFO),
                    ["/var/run/secrets/kubernetes.io/serviceaccount"])


def test_without_a_declaration_runtime_injections_never_reach_the_service() -> None:
    """An older DaemonSet: only mounts at their own host path; never what a runtime adds."""
    mounts = spec_mounts(parse_mountinfo(POD_MOUNTINFO), parse_mountinfo(HOST_MOUNTINFO_RUN))
    assert mounts == ["/var/lib/kubelet:/var/lib/kubelet", "/var/lib/osd:/var/lib/osd"]
    for injected in ("/run/.containerenv", "/dev/termination-log", "/etc/hosts", "/data"):
        assert not any(m.split(":")[1] == injected for m in mounts)


def test_secrets_reach_the_service_env_under_their_documented_names() -> None:
    env = spec_env({"PXHOSTD_TOKEN": "t$(x)", "PXHOSTD_KVDB_USERPWD": "u:p",
                    "PXHOSTD_ACLTOKEN": "acl", "PXHOSTD_NODE_NAME": "n1", "A": "1"})
    assert env == {"PX_TOKEN": "t$(x)", "PX_KVDB_USERPWD": "u:p", "PX_ACLTOKEN": "acl",
                   "A": "1"}
    assert set(SECRET_ENV.values()) == {"PX_TOKEN", "PX_KVDB_USERPWD", "PX_ACLTOKEN"}
    assert all(is_secret_name(name) for name in SECRET_ENV.values())


def test_a_secret_set_twice_is_refused() -> None:
    with pytest.raises(InvalidSpec, match="PX_TOKEN is set both"):
        spec_env({"PXHOSTD_TOKEN": "a", "PX_TOKEN": "b"})


def test_built_spec_validates_and_keeps_order() -> None:
    opts = parse_pod_args(["-c", "px", "--service", "px2", "-t", SECRET])
    spec = build_spec(opts, "/opt/pwx/pod/payloads/p-1", spec_env(POD_ENV), ["/a:/a"])
    assert spec == {
        "payload": "/opt/pwx/pod/payloads/p-1",
        "service": "px2",
        "args": ["-c", "px", "-t", SECRET],
        "env": {"PX_HTTP_PORT": "9001", "PX_TEST": "one", "REGISTRY_PASS": SECRET},
        "mounts": ["/a:/a"],
    }
    checked = spec_from_dict(spec)
    assert checked.service == "px2"
    assert "service" not in build_spec(parse_pod_args([]), "/p", {}, [])


def test_an_invalid_spec_is_a_named_error() -> None:
    spec = build_spec(parse_pod_args(["--service", "pxhostd"]), "/p", {}, [])
    with pytest.raises(InvalidSpec, match="reserved"):
        spec_from_dict(spec)


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["-t", SECRET, "-c", "px"], ["-t", REDACTED, "-c", "px"]),
        (["--token=" + SECRET], ["--token=" + REDACTED]),
        (["-userpwd", "u:" + SECRET], ["-userpwd", REDACTED]),
        (["--kvdb-password", SECRET], ["--kvdb-password", REDACTED]),
        (["-e", "PX_TOKEN=" + SECRET, "-e", "A=b"], ["-e", f"PX_TOKEN={REDACTED}", "-e", "A=b"]),
        (["-c", "px", "-k", "etcd://h:2379"], ["-c", "px", "-k", "etcd://h:2379"]),
    ],
)
def test_redact_args(args: list[str], shown: list[str]) -> None:
    assert redact_args(args) == shown


def test_describe_spec_never_shows_secret_values(caplog: pytest.LogCaptureFixture) -> None:
    opts = parse_pod_args(["-c", "px", "-t", SECRET, "-e", "API_KEY=" + SECRET])
    spec = build_spec(opts, "/p", spec_env(POD_ENV), [])
    text = "\n".join(describe_spec(spec))
    assert SECRET not in text
    assert "REGISTRY_PASS" in text and "PX_TEST" in text and "'-c', 'px'" in text


def test_an_env_name_the_spec_cannot_carry_is_left_out_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        assert spec_env({"bad.name": "x", "GOOD": "y"}) == {"GOOD": "y"}
    assert "bad.name" in caplog.text
