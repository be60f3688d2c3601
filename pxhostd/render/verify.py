"""Check a candidate unit with `systemd-analyze verify` before it replaces the live one.

Two things make the raw tool unfit as-is, and are handled here:

- It exits 0 on settings it *ignores* (an unknown key, an unparsable value, bad quoting in
  `Environment=`): those only show as `<file>:<line>: ... ignoring` warnings. Any diagnostic
  that points at the candidate file therefore counts as a failure.
- It fails when an ExecStart= program does not exist. Our units run the program through the
  `current` release link, which on a first install does not exist yet and during an upgrade
  still points at the old release. Callers name the release root they stand behind
  (`exec_root`); "not executable: No such file or directory" for a program under it is
  accepted, because the staged payload was already checked (listed in the manifest,
  sha256-verified, executable) by `verify_payload_files`. Any other missing program fails.

Without the tool (minimal hosts, containers) this is a no-op: rendering plus our own
validation already guarantee the syntax; the tool is a second opinion, not the only one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from pxhostd.errors import InvalidSpec

TOOL = "systemd-analyze"
VERIFY_TIMEOUT = 30.0

_MISSING_EXEC = re.compile(
    r"^(?P<unit>\S+): Command (?P<path>/\S*) is not executable: No such file or directory$"
)
_UNIT_NAME = re.compile(r"[A-Za-z0-9_.:@-]+\.(service|socket|timer|target|mount|path)")


def _accepted(line: str, name: str, exec_root: str | None) -> bool:
    match = _MISSING_EXEC.match(line)
    if match is None or match["unit"] != name or exec_root is None:
        return False
    root = exec_root.rstrip("/") + "/"
    return match["path"].startswith(root)


def _problems(output: str, name: str, candidate: Path, exec_root: str | None) -> list[str]:
    """Diagnostics that are not accepted, with the temp path shown as the unit name."""
    lines = [ln.strip().replace(str(candidate), name) for ln in output.splitlines()]
    return [ln for ln in lines if ln and not _accepted(ln, name, exec_root)]


def verify_unit_text(name: str, text: str, exec_root: str | None = None) -> None:
    """Raise InvalidSpec with the tool's message if systemd would reject or ignore a line.

    `exec_root`: the release root the unit's programs live under (for example the `current`
    link path); missing programs below it are accepted, see the module docstring.
    """
    if not _UNIT_NAME.fullmatch(name) or len(name) > 255:
        raise InvalidSpec(f"verify: {name!r} is not a unit file name")
    tool = shutil.which(TOOL)
    if tool is None:
        return
    with tempfile.TemporaryDirectory(prefix="pxhostd-verify-") as tmp:
        candidate = Path(tmp) / name
        candidate.write_text(text, encoding="utf-8")
        try:
            proc = subprocess.run(
                [tool, "verify", "--man=no", "--recursive-errors=no", str(candidate)],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=VERIFY_TIMEOUT,
                check=False,
                cwd=tmp,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InvalidSpec(f"verify: {TOOL} could not check {name}: {exc}") from None
        output = proc.stdout + proc.stderr
        problems = _problems(output, name, candidate, exec_root)
        if proc.returncode != 0 and problems:
            raise InvalidSpec(f"verify: {name} rejected by {TOOL}: " + "; ".join(problems))
        if proc.returncode != 0 and not output.strip():
            raise InvalidSpec(f"verify: {TOOL} failed on {name} (exit {proc.returncode})")
        about_file = [ln for ln in problems if ln.startswith(name + ":")]
        if about_file:
            raise InvalidSpec(f"verify: {name}: {TOOL} reports: " + "; ".join(about_file))
