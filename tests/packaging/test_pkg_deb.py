"""The built .deb: lintian, payload, conffiles, dependencies, maintainer scripts."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pkgfiles import REPO, code_version, deb_payload, need_tools, run, services_named

UNIT = "/lib/systemd/system/pxhostd.service"
POLICY = "/usr/share/dbus-1/system.d/com.portworx.pxhostd1.conf"
TMPFILES = "/usr/lib/tmpfiles.d/pxhostd.conf"
CONFIG = "/etc/pxhostd/pxhostd.conf"
SITE = "/usr/lib/python3/dist-packages"

#: Installed path -> source in the tree, byte for byte.
INSTALLED_FROM = {
    UNIT: "units/pxhostd.service",
    "/lib/systemd/system-preset/80-pxhostd.preset": "units/pxhostd.preset",
    POLICY: "units/com.portworx.pxhostd1.conf",
    TMPFILES: "units/pxhostd.tmpfiles",
    CONFIG: "units/pxhostd.conf",
}


def test_lintian_reports_no_errors(deb_file: Path) -> None:
    need_tools("lintian")
    # --fail-on error: warnings are printed for people, errors fail the build.
    run("lintian", "--fail-on", "error", "--info", deb_file)


def test_every_lintian_override_has_a_reason() -> None:
    lines = (REPO / "debian" / "pxhostd.lintian-overrides").read_text().splitlines()
    for number, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            previous = lines[number - 1] if number else ""
            assert previous.startswith("#"), f"override without a comment above it: {line}"


def test_payload_has_commands_unit_policy_tmpfiles_config_and_man_pages(
    deb_file: Path,
) -> None:
    payload = deb_payload(deb_file)
    for command in ("pxhostd", "pxhostctl", "pxhostd-pod", "pxhostd-specgen"):
        assert payload[f"/usr/bin/{command}"].perms == "-rwxr-xr-x", command
    for path in (
        UNIT, POLICY, TMPFILES, CONFIG,
        "/usr/share/man/man8/pxhostd.8.gz",
        "/usr/share/man/man1/pxhostctl.1.gz",
        "/usr/share/man/man1/pxhostd-specgen.1.gz",
        "/usr/share/man/man8/pxhostd-pod.8.gz",
        "/usr/share/man/man5/pxhostd.spec.5.gz",
        "/usr/share/bash-completion/completions/pxhostctl",
        f"{SITE}/pxhostd/__init__.py",
        f"{SITE}/pxhostd/daemon/main.py",
        f"{SITE}/pxhostd/cli/main.py",
    ):
        assert path in payload, path
    assert any(re.fullmatch(rf"{SITE}/pxhostd-[^/]+\.dist-info/entry_points\.txt", p)
               for p in payload)


def test_payload_has_the_manifest_generators_page_templates(deb_file: Path) -> None:
    payload = deb_payload(deb_file)
    pages = REPO / "pxhostd" / "manifest" / "templates"
    shipped = sorted(p.name for p in pages.iterdir() if p.is_file())
    assert "form.html.j2" in shipped and "result.html.j2" in shipped
    for name in shipped:
        assert f"{SITE}/pxhostd/manifest/templates/{name}" in payload, name


def test_payload_has_every_template_and_demo_payload_file(deb_file: Path) -> None:
    payload = deb_payload(deb_file)
    templates = [p for p in (REPO / "templates").rglob("*") if p.is_file()]
    assert templates, "templates/ holds no unit templates"
    expected = {
        "/usr/share/pxhostd/templates/" + str(p.relative_to(REPO / "templates"))
        for p in templates
    }
    demo = REPO / "container" / "demo-payload"
    if demo.is_dir():
        expected |= {
            "/usr/share/pxhostd/demo-payload/" + str(p.relative_to(demo))
            for p in demo.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
    assert expected <= set(payload), sorted(expected - set(payload))
    assert not [p for p in payload if p.startswith("/usr/share/pxhostd/") and "__pycache__" in p]


def test_no_template_ties_the_storage_service_to_pxhostd(deb_root: Path) -> None:
    # Stopping or removing pxhostd must never stop the service it manages.
    tie = re.compile(r"^\s*(BindsTo|PartOf|Requires|Requisite|Upholds)=.*pxhostd", re.M)
    templates = list((deb_root / "usr/share/pxhostd/templates").iterdir())
    assert templates
    assert [t.name for t in templates if tie.search(t.read_text())] == []


def test_system_integration_files_are_installed_as_written(deb_root: Path) -> None:
    for installed, source in INSTALLED_FROM.items():
        assert (deb_root / installed.lstrip("/")).read_bytes() == (REPO / source).read_bytes(), (
            installed
        )


def test_only_the_default_config_is_a_conffile(deb_root: Path) -> None:
    assert (deb_root / "DEBIAN" / "conffiles").read_text().split() == [CONFIG]


def test_depends_on_distribution_packages_only(deb_file: Path) -> None:
    depends = run("dpkg-deb", "-f", deb_file, "Depends").strip()
    names = {re.split(r"[\s(:]", dep.strip())[0] for dep in depends.split(",")}
    assert names == {
        "dbus", "python3", "python3-dbus-fast", "python3-debian", "python3-jinja2",
        "python3-sdnotify", "python3-systemd", "python3-yaml",
    }, depends


def test_version_is_the_code_version(deb_file: Path, deb_root: Path) -> None:
    version = run("dpkg-deb", "-f", deb_file, "Version").strip()
    init = (deb_root / SITE.lstrip("/") / "pxhostd" / "__init__.py").read_text()
    assert f'__version__ = "{version}"' in init
    if "PXHOSTD_DEB" not in os.environ:
        assert version == code_version()


def maintainer_scripts(deb_root: Path) -> dict[str, str]:
    return {
        name: (deb_root / "DEBIAN" / name).read_text()
        for name in ("preinst", "postinst", "prerm", "postrm")
        if (deb_root / "DEBIAN" / name).exists()
    }


def test_maintainer_scripts_touch_no_service_but_pxhostd(deb_root: Path) -> None:
    scripts = maintainer_scripts(deb_root)
    assert set(scripts) >= {"postinst", "prerm", "postrm"}
    for name, text in scripts.items():
        assert "portworx" not in text.lower(), name
        assert "pwx" not in text.lower(), name
        assert services_named(text) <= {"pxhostd.service"}, (name, services_named(text))


def test_postinst_enables_and_starts_and_restarts_on_upgrade(deb_root: Path) -> None:
    postinst = maintainer_scripts(deb_root)["postinst"]
    assert "deb-systemd-helper enable 'pxhostd.service'" in postinst
    # $2 (the old version) is set on upgrade: restart; empty on first install: start.
    assert re.search(r'if \[ -n "\$2" \]; then\s+_dh_action=restart\s+else\s+_dh_action=start',
                     postinst)
    assert "deb-systemd-invoke $_dh_action 'pxhostd.service'" in postinst
    assert "systemd-tmpfiles" in postinst and "--create pxhostd.conf" in postinst


def test_prerm_stops_pxhostd_on_remove_only(deb_root: Path) -> None:
    prerm = maintainer_scripts(deb_root)["prerm"]
    stops = [line for line in prerm.splitlines() if "stop" in line and "pxhostd" in line]
    assert stops == ["\tdeb-systemd-invoke stop 'pxhostd.service' >/dev/null || true"]
    guard = prerm[: prerm.index(stops[0])].rsplit("if ", 1)[1]
    assert '"$1" = remove' in guard


def test_postrm_purge_removes_only_pxhostd_config_and_state(deb_root: Path) -> None:
    postrm = maintainer_scripts(deb_root)["postrm"]
    removed = []
    for line in postrm.splitlines():
        words = line.split()
        if words[:1] == ["rm"]:
            removed += [w for w in words[1:] if not w.startswith("-")]
    assert sorted(removed) == ["/etc/pxhostd", "/run/pxhostd", "/var/lib/pxhostd"]
    assert 'if [ "$1" = "purge" ]; then\n    rm -rf' in postrm
