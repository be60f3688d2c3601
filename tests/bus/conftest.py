"""A real, private dbus-daemon for tests of pxhostd's own D-Bus surface."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@pytest.fixture(scope="session")
def dbus_address() -> Iterator[str]:
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        pytest.fail("dbus-daemon is missing: run `make setup` (Debian package dbus)")
    # World-searchable, so that a non-root client (tests of hostile callers) can connect.
    workdir = Path(tempfile.mkdtemp(prefix="pxbus-"))
    workdir.chmod(0o755)
    socket = workdir / "bus.sock"
    config = workdir / "bus.conf"
    config.write_text(CONFIG.format(socket=socket))
    proc = subprocess.Popen(
        [daemon, f"--config-file={config}", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    if not address:
        proc.kill()
        pytest.fail("dbus-daemon did not start")
    try:
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def state_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    os.environ.pop("NOTIFY_SOCKET", None)
    return root
