"""Both packages create every host path the Swarm stack binds, and ship the optional
`pxhostd-admin` bus policy as inert data (off by default).

Swarm refuses a task whose bind source is missing ("bind source path does not exist"), so
a node with only the package installed must have them all. The paths the generator writes
are checked against what the packaged tmpfiles.d entry creates, read from the built .deb
and .rpm. A real stack on a node with only the .deb: tests/e2e/test_swarm.py.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from pkgfiles import deb_payload, rpm_payload, run

from pxhostd.manifest.model.swarm import BIND_PATHS

ADMIN_POLICY = "/usr/share/pxhostd/dbus/pxhostd-admin-group.conf"
#: Made by the dbus package, which pxhostd depends on.
FROM_DBUS = "/run/dbus/system_bus_socket"


def tmpfiles_dirs(text: str) -> set[str]:
    dirs = set()
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] in ("d", "D") and not line.lstrip().startswith("#"):
            dirs.add(fields[1])
    return dirs


def deb_file_text(deb: Path, path: str) -> str:
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True,
                          check=True).stdout
    return subprocess.run(["tar", "-xOf", "-", "." + path], input=data, capture_output=True,
                          check=True).stdout.decode()


def rpm_digest(rpm: Path, path: str) -> str:
    out = run("rpm", "-qp", "--qf", r"[%{FILEDIGESTS} %{FILENAMES}\n]", rpm)
    found = [line.split()[0] for line in out.splitlines() if line.split()[-1] == path]
    assert len(found) == 1, f"{path} not in the .rpm"
    return found[0]


def test_deb_creates_every_bind_source(deb_file: Path) -> None:
    created = tmpfiles_dirs(deb_file_text(deb_file, "/usr/lib/tmpfiles.d/pxhostd.conf"))
    for path in BIND_PATHS:
        assert path == FROM_DBUS or path in created, f"{path} is not created by the .deb"
    assert "systemd-tmpfiles" in run("dpkg-deb", "-I", deb_file, "postinst")
    assert "dbus" in run("dpkg-deb", "-f", deb_file, "Depends")


def test_rpm_creates_every_bind_source(rpm_file: Path, deb_file: Path) -> None:
    # The same tmpfiles.d entry, byte for byte, as the .deb's (checked above).
    text = deb_file_text(deb_file, "/usr/lib/tmpfiles.d/pxhostd.conf")
    assert rpm_digest(rpm_file, "/usr/lib/tmpfiles.d/pxhostd.conf") == \
        hashlib.sha256(text.encode()).hexdigest()
    assert "systemd-tmpfiles --create" in run("rpm", "-qp", "--scripts", rpm_file)


def test_admin_group_policy_is_shipped_but_not_active(deb_file: Path, rpm_file: Path) -> None:
    for files in (deb_payload(deb_file), rpm_payload(rpm_file)):
        assert ADMIN_POLICY in files
        active = [p for p in files if "dbus-1/system.d/" in p]
        assert active == ["/usr/share/dbus-1/system.d/com.portworx.pxhostd1.conf"]
    text = deb_file_text(deb_file, ADMIN_POLICY)
    assert '<policy group="pxhostd-admin">' in text
    assert '<allow send_destination="com.portworx.pxhostd1"/>' in text
    assert "own=" not in text.split("<busconfig>", 1)[1]  # never the name itself
