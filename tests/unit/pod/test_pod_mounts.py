"""Required-mount checks and the pod's own mounts turned into spec mounts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pxhostd.errors import PxError
from pxhostd.pod.mounts import (
    LEGACY_REQUIRED_MOUNTS,
    REQUIRED_MOUNTS,
    MissingMounts,
    check_required_mounts,
    covering_mount,
    parse_mountinfo,
    pod_mounts_to_spec_mounts,
    read_mountinfo,
    require_mounts,
)
from pxhostd.spec.validate import parse_mount

UID = "0f6e7a1c-4b7b-4c8e-9a3e-2b1d0c9e8f7a"
KPODS = f"/var/lib/kubelet/pods/{UID}"

#: A privileged DaemonSet pod's mountinfo, shaped like containerd's (trimmed).
POD_MOUNTINFO = f"""\
1200 1100 0:120 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
1201 1200 0:121 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1202 1200 0:122 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
1203 1202 0:123 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620
1204 1200 0:124 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
1205 1200 8:1 {KPODS}/etc-hosts /etc/hosts rw,relatime - ext4 /dev/sda1 rw
1206 1202 8:1 {KPODS}/containers/px/1 /dev/termination-log rw,relatime - ext4 /dev/sda1 rw
1207 1200 8:1 /var/lib/containerd/sandboxes/x/hostname /etc/hostname rw,relatime - ext4 /dev/sda1 rw
1208 1200 0:125 / /var/run/secrets/kubernetes.io/serviceaccount ro,relatime - tmpfs tmpfs rw
1209 1200 8:1 /etc/pwx /etc/pwx rw,relatime shared:5 - ext4 /dev/sda1 rw
1210 1200 8:1 /opt/pwx /opt/pwx rw,relatime shared:5 - ext4 /dev/sda1 rw
1211 1200 8:1 /etc/systemd/system /etc/systemd/system rw,relatime - ext4 /dev/sda1 rw
1212 1200 0:4 /1/ns /host_proc/1/ns rw,relatime - proc proc rw
1213 1200 8:1 /run/pxhostd /run/pxhostd rw,relatime - ext4 /dev/sda1 rw
1214 1200 8:17 /osd /var/lib/osd rw,relatime master:9 - xfs /dev/sdb1 rw
1215 1200 8:1 /usr/src /usr/src ro,relatime - ext4 /dev/sda1 rw
1216 1200 8:1 /var/lib/kubelet /var/lib/kubelet rw,relatime shared:7 - ext4 /dev/sda1 rw
1217 1216 0:130 / /var/lib/kubelet/pods/abc/volumes/kubernetes.io~secret/t rw - tmpfs tmpfs rw
1218 1200 8:1 /srv/odd:name /srv/odd:name rw,relatime - ext4 /dev/sda1 rw
1219 1200 8:1 /srv/with\\040space /srv/with\\040space rw,relatime - ext4 /dev/sda1 rw
1220 1200 8:1 /var/cores /var/cores rw,relatime - ext4 /dev/sda1 rw
1221 1200 8:1 /var/cores-new /var/cores rw,relatime - ext4 /dev/sda1 rw
"""

#: The host's own mountinfo (what /proc/1/mountinfo shows with hostPID).
HOST_MOUNTINFO = """\
21 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
22 21 8:17 / /var/lib rw,relatime shared:9 - xfs /dev/sdb1 rw
23 21 0:130 / /var/lib/kubelet/pods/abc/volumes/kubernetes.io~secret/t rw - tmpfs tmpfs rw
"""


def test_parse_mountinfo_fields_and_escapes() -> None:
    entries = parse_mountinfo(POD_MOUNTINFO)
    assert len(entries) == 22
    root = entries[0]
    assert (root.mount_id, root.parent_id, root.dev) == (1200, 1100, "0:120")
    assert (root.mount_point, root.fstype, root.optional) == ("/", "overlay", ("master:1",))
    osd = next(e for e in entries if e.mount_point == "/var/lib/osd")
    assert (osd.root, osd.source, osd.read_only) == ("/osd", "/dev/sdb1", False)
    usr = next(e for e in entries if e.mount_point == "/usr/src")
    assert usr.read_only
    assert any(e.mount_point == "/srv/with space" for e in entries)


@pytest.mark.parametrize("line", ["garbage", "1 2 3:4 / /x rw", "x 2 3:4 / /x rw - ext4 s rw"])
def test_malformed_mountinfo(line: str) -> None:
    with pytest.raises(ValueError, match="line 1"):
        parse_mountinfo(line + "\n")


def test_real_mountinfo_parses() -> None:
    entries = read_mountinfo()
    assert any(e.mount_point == "/" for e in entries)
    proc = covering_mount("/proc/self", entries)
    assert proc is not None and proc.fstype == "proc"


def test_missing_mounts_are_all_reported(tmp_path: Path) -> None:
    mounted, parent, plain = tmp_path / "mounted", tmp_path / "parent", tmp_path / "plain"
    for d in (mounted, parent / "child", plain):
        d.mkdir(parents=True)
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
        f"2 1 8:1 /x {mounted} rw - ext4 /dev/sda1 rw\n"
        f"3 1 0:4 / {parent} rw - proc proc rw\n"
    )
    required = [str(mounted), str(parent / "child"), str(plain), str(tmp_path / "absent")]
    assert check_required_mounts(required, mountinfo) == [str(plain), str(tmp_path / "absent")]

    with pytest.raises(MissingMounts) as exc:
        require_mounts(required, mountinfo)
    assert isinstance(exc.value, PxError)
    assert exc.value.name == "MissingMounts"
    assert exc.value.missing == [str(plain), str(tmp_path / "absent")]
    message = str(exc.value)
    assert "\n" not in message
    assert f"{plain}, {tmp_path / 'absent'}" in message

    require_mounts([str(mounted)], mountinfo)  # all there: no error


def test_fallback_compares_st_dev_with_root(tmp_path: Path) -> None:
    unreadable = tmp_path / "no-mountinfo"
    same_fs_as_root = os.stat(tmp_path).st_dev == os.stat("/").st_dev
    missing = check_required_mounts(["/proc", str(tmp_path)], unreadable)
    assert missing == ([str(tmp_path)] if same_fs_as_root else [])


def test_required_sets() -> None:
    assert LEGACY_REQUIRED_MOUNTS == (
        "/etc/pwx", "/opt/pwx", "/etc/systemd/system", "/host_proc/1/ns"
    )
    assert REQUIRED_MOUNTS[-1] == "/run/pxhostd"


def test_pod_mounts_become_spec_mounts_without_private_ones() -> None:
    spec = pod_mounts_to_spec_mounts(parse_mountinfo(POD_MOUNTINFO))
    # /srv/odd:name and "/srv/with space" cannot be spec mounts: left out with a warning.
    assert spec == [
        "/usr/src:/usr/src:ro",
        "/var/cores-new:/var/cores",  # the later mount on the same point wins
        "/var/lib/kubelet:/var/lib/kubelet",
        "/osd:/var/lib/osd",  # without the host's mountinfo: root within its filesystem
    ]
    for text in spec:
        parse_mount("check", text)  # every one is a valid spec mount


def test_host_mountinfo_gives_exact_host_paths() -> None:
    spec = pod_mounts_to_spec_mounts(
        parse_mountinfo(POD_MOUNTINFO), host_entries=parse_mountinfo(HOST_MOUNTINFO)
    )
    assert "/var/lib/osd:/var/lib/osd" in spec
    assert "/osd:/var/lib/osd" not in spec


def test_nested_mounts_on_request() -> None:
    entries = parse_mountinfo(POD_MOUNTINFO)
    secret = "/var/lib/kubelet/pods/abc/volumes/kubernetes.io~secret/t"
    assert f"{secret}:{secret}" not in pod_mounts_to_spec_mounts(entries, include_nested=True)
    with_host = pod_mounts_to_spec_mounts(
        entries, include_nested=True, host_entries=parse_mountinfo(HOST_MOUNTINFO)
    )
    assert f"{secret}:{secret}" in with_host


def test_custom_private_list() -> None:
    spec = pod_mounts_to_spec_mounts(parse_mountinfo(POD_MOUNTINFO), private=["/", "/x"])
    assert spec == []
    everything = pod_mounts_to_spec_mounts(parse_mountinfo(POD_MOUNTINFO), private=[])
    assert "/etc/pwx:/etc/pwx" in everything
    assert not any(":/proc" in s or ":/sys" in s for s in everything)
