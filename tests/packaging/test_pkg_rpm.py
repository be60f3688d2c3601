"""The built .rpm: the same payload as the .deb, the systemd scriptlets, and files that
land where the .deb puts them."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from pkgfiles import deb_payload, normalised, rpm_payload, run, services_named, tree_files


def test_rpm_lists_the_same_payload_as_the_deb(deb_file: Path, rpm_file: Path) -> None:
    deb = normalised(deb_payload(deb_file))
    rpm = normalised(rpm_payload(rpm_file))
    assert sorted(set(deb) - set(rpm)) == []
    assert sorted(set(rpm) - set(deb)) == []
    differing = {p: (deb[p], rpm[p]) for p in deb if deb[p] != rpm[p]}
    assert differing == {}


def scriptlets(rpm_file: Path) -> dict[str, str]:
    """`rpm -qp --scripts`, split into scriptlets by their headers."""
    sections: dict[str, str] = {}
    current = None
    for line in run("rpm", "-qp", "--scripts", rpm_file).splitlines():
        header = re.match(r"^(\w+) scriptlet \(using [^)]+\):$", line)
        if header:
            current = header.group(1)
            sections[current] = ""
        elif current:
            sections[current] += line + "\n"
    return sections


def test_scriptlets_are_the_systemd_ones_for_pxhostd(rpm_file: Path) -> None:
    scripts = scriptlets(rpm_file)
    assert set(scripts) == {"postinstall", "preuninstall", "postuninstall"}
    # Either the distribution's systemd-rpm-macros or the spec's fallbacks (same meaning).
    assert re.search(r"preset pxhostd\.service|install-system-units pxhostd\.service",
                     scripts["postinstall"])
    assert re.search(r"disable --now pxhostd\.service|remove-system-units pxhostd\.service",
                     scripts["preuninstall"])
    assert re.search(r"try-restart pxhostd\.service|mark-restart-system-units pxhostd\.service",
                     scripts["postuninstall"])
    assert "--create pxhostd.conf" in scripts["postinstall"]


def test_scriptlets_touch_no_service_but_pxhostd(rpm_file: Path) -> None:
    for name, text in scriptlets(rpm_file).items():
        assert "portworx" not in text.lower(), name
        assert "pwx" not in text.lower(), name
        assert services_named(text) == {"pxhostd.service"} or "tmpfiles" in text, name
        assert services_named(text) <= {"pxhostd.service"}, name


def test_requires_the_distribution_python_packages(rpm_file: Path) -> None:
    requires = set(run("rpm", "-qp", "--requires", rpm_file).split("\n"))
    assert {
        "python3-dbus-fast", "python3-sdnotify", "python3-jinja2", "python3-pyyaml", "dbus",
        "python3-debian", "python3-systemd",
    } <= {r.split()[0] for r in requires if r}


def test_default_config_is_a_noreplace_config_file(rpm_file: Path) -> None:
    out = run("rpm", "-qp", "--qf", r"[%{FILEFLAGS:fflags}\t%{FILENAMES}\n]", rpm_file)
    rows = [line.split("\t") for line in out.splitlines()]
    flagged = {path: flag for flag, path in rows if "c" in flag}
    assert flagged == {"/etc/pxhostd/pxhostd.conf": "cn"}


def test_noarch_and_the_code_version(rpm_file: Path, deb_file: Path) -> None:
    arch, version = run("rpm", "-qp", "--qf", "%{ARCH} %{VERSION}", rpm_file).split()
    assert arch == "noarch"
    assert version == run("dpkg-deb", "-f", deb_file, "Version").strip()


def content(path: Path) -> bytes:
    if path.is_symlink():
        return b"-> " + str(path.readlink()).encode()
    data = path.read_bytes()
    if path.name == "RECORD":
        # The installer's record: each installer writes its own relative paths (pybuild
        # ../scripts/, RPM ../../../bin/) and the RPM's lists INSTALLER; compare what it
        # records of each file: name, hash and size.
        rows = {
            (line.split(b",")[0].rsplit(b"/", 1)[-1], *line.split(b",")[1:])
            for line in data.splitlines()
            if b".dist-info/INSTALLER," not in line
        }
        return repr(sorted(rows)).encode()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def test_rpm_install_puts_the_files_where_the_deb_does(deb_root: Path, rpm_root: Path) -> None:
    deb = tree_files(deb_root)
    rpm = tree_files(rpm_root)
    deb = {p: f for p, f in deb.items() if not p.startswith("/DEBIAN/")}
    rpm = {p: f for p, f in rpm.items() if not p.startswith("/var/lib/rpm/")}
    assert sorted(set(deb) ^ set(rpm)) == []
    different = sorted(p for p in deb if content(deb[p]) != content(rpm[p]))
    assert different == []
    modes = sorted(p for p in deb if deb[p].lstat().st_mode != rpm[p].lstat().st_mode)
    assert modes == []
