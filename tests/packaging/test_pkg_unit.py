"""pxhostd's own unit as packaged: systemd 252 accepts every line, and the settings the
daemon's contract depends on are there."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

from pkgfiles import need_tools

UNIT = "lib/systemd/system/pxhostd.service"


def test_systemd_analyze_verify_finds_nothing_wrong(deb_root: Path) -> None:
    need_tools("systemd-analyze")
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(deb_root / UNIT)],
        capture_output=True, text=True, check=False,
    )
    # The one complaint expected here: this machine has no /usr/bin/pxhostd installed.
    complaints = [
        line for line in (proc.stdout + proc.stderr).splitlines()
        if line.strip() and "/usr/bin/pxhostd is not executable" not in line
    ]
    assert complaints == []


def unit(deb_root: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(deb_root / UNIT)
    return parser


def test_notify_service_with_watchdog_restart_and_reload(deb_root: Path) -> None:
    service = unit(deb_root)["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["ExecStart"] == "/usr/bin/pxhostd"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["WatchdogSec"]
    assert service["Restart"] == "on-failure"
    assert "BusName" not in service
    assert unit(deb_root)["Install"]["WantedBy"] == "multi-user.target"


def test_no_sandboxing_hides_the_paths_pxhostd_writes(deb_root: Path) -> None:
    service = unit(deb_root)["Service"]
    for option in ("ProtectSystem", "ProtectHome", "PrivateTmp", "ReadOnlyPaths",
                   "InaccessiblePaths", "TemporaryFileSystem", "PrivateDevices",
                   "PrivateNetwork", "DynamicUser", "User"):
        assert option not in service, option
