"""Proof against a real systemd (user manager): the rendered unit runs the program with
exactly the argv, environment and bind mounts the spec asked for.

The unit parser in unitparse.py mirrors systemd's rules; this test checks those rules with
systemd itself. It fails (never skips) if the manager cannot be started.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cases import NASTY_ARGS, NASTY_ENV, REPO

from pxhostd.paths import Paths
from pxhostd.payload.manifest import manifest_from_dict
from pxhostd.render.names import env_file_name
from pxhostd.render.units import render_units
from pxhostd.spec import spec_from_dict

sys.path.insert(0, str(REPO / "tests" / "usermanager"))
from um_harness import UserManager, running_user_manager

pytestmark = pytest.mark.usermanager

#: Bound on waiting for the unit's program to report (it runs in well under a second).
WAIT_LIMIT = 30.0

DUMP = """#!{python}
import json, os, sys
ro = os.path.join({ro!r}, "marker")
try:
    with open(ro, "a"):
        writable = True
except OSError:
    writable = False
try:
    with open(sys.argv[0], "a"):
        release_writable = True
except OSError:
    release_writable = False
result = {{
    "argv": sys.argv,
    "release_writable": release_writable,
    "env": dict(os.environ),
    "rw_marker": open(os.path.join({rw!r}, "marker")).read(),
    "ro_marker": open(ro).read(),
    "ro_writable": writable,
}}
with open({out!r} + ".tmp", "w") as f:
    json.dump(result, f)
os.rename({out!r} + ".tmp", {out!r})
"""


def _manager_call(manager: UserManager, method: str, *args: str) -> None:
    """Call org.freedesktop.systemd1.Manager on the manager's bus (as pxhostd does)."""
    proc = subprocess.run(
        ["busctl", f"--address={manager.bus_address}", "call", "org.freedesktop.systemd1",
         "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", method, *args],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, f"{method}: {proc.stderr}\n{manager.console_path.read_text()}"


def _wait_for(path: Path, manager: UserManager) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the unit did not run within {WAIT_LIMIT}s:\n{manager.console_path.read_text()}"
            )
        time.sleep(0.05)


def test_rendered_unit_runs_with_exact_argv_env_and_mounts(tmp_path: Path) -> None:
    release = tmp_path / "release"
    out = tmp_path / "out.json"
    src_rw, src_ro = tmp_path / "src-rw", tmp_path / "src-ro"
    dst_rw, dst_ro = tmp_path / "dst-rw", tmp_path / "dst-ro"
    for d in (src_rw, src_ro, dst_rw, dst_ro):
        d.mkdir()
    (src_rw / "marker").write_text("rw-source")
    (src_ro / "marker").write_text("ro-source")
    program = release / "bin" / "dump"
    program.parent.mkdir(parents=True)
    program.write_text(DUMP.format(python=sys.executable, ro=str(dst_ro), rw=str(dst_rw),
                                   out=str(out)))
    program.chmod(0o755)

    spec = spec_from_dict({
        "payload": "/opt/payloads/dump",
        "service": "pxrender-roundtrip",
        "args": NASTY_ARGS,
        "env": NASTY_ENV,
        "mounts": [f"{src_rw}:{dst_rw}", f"{src_ro}:{dst_ro}:ro,norbind"],
    })
    manifest = manifest_from_dict({
        "name": "dump", "version": "1", "exec": ["bin/dump", "--fixed=%p $USER"],
        "files": {"bin/dump": hashlib.sha256(program.read_bytes()).hexdigest()},
    })
    paths = Paths(templates_dir=REPO / "templates", unit_dir=tmp_path / "unit-dir",
                  releases_dir=release)
    rendered = render_units(spec, manifest, str(release), paths)
    text = rendered["pxrender-roundtrip.service"]
    # The environment lives in its own root-only file, read by systemd's own parser.
    env_path = paths.unit_dir / env_file_name("pxrender-roundtrip")
    assert f"EnvironmentFile={env_path}\n" in text
    env_path.parent.mkdir(parents=True)
    env_path.write_text(rendered[env_file_name("pxrender-roundtrip")])
    # The manager has no journal: send output nowhere. Nothing else is changed.
    assert "Type=exec\n" in text
    text = text.replace("Type=exec", "Type=exec\nStandardOutput=null\nStandardError=null")

    with running_user_manager(tmp_path / "um") as manager:
        manager.write_unit("pxrender-roundtrip.service", text)
        _manager_call(manager, "Reload")
        _manager_call(manager, "StartUnit", "ss", "pxrender-roundtrip.service", "replace")
        _wait_for(out, manager)

    result = json.loads(out.read_text())
    assert result["argv"] == [str(program), "--fixed=%p $USER", *NASTY_ARGS]
    assert {k: result["env"].get(k) for k in NASTY_ENV} == NASTY_ENV
    assert result["rw_marker"] == "rw-source"
    assert result["ro_marker"] == "ro-source"
    assert result["ro_writable"] is False
    # ReadOnlyPaths= of the releases directory: the service cannot change its own files.
    assert result["release_writable"] is False
