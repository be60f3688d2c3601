"""Read the payload and scripts of built .deb and .rpm files, and put both on one layout.

The .deb and the .rpm install the same files; a few paths differ by each distribution's
rules and are normalised before comparing (docs/packaging.md lists them):

- units and presets: /lib/systemd/... (Debian 12) and /usr/lib/systemd/... (RPM distros);
- Python code: /usr/lib/python3/dist-packages (Debian) and /usr/lib/python3.X/site-packages;
- each distribution's own documentation: /usr/share/doc/pxhostd (copyright, changelog) in
  the .deb, /usr/share/licenses/pxhostd* in the .rpm;
- Debian's lintian overrides /usr/share/lintian/overrides/pxhostd;
- Debian's python runtime hook /usr/share/python3/runtime.d/pxhostd.rtupdate;
- bytecode (Debian compiles at install time, RPM distros at build time);
- the wheel installer's own record INSTALLER in the dist-info directory.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

SITELIB = re.compile(r"^/usr/lib/python3(?:\.\d+)?/(?:dist|site)-packages/")
DROPPED = (
    re.compile(r"^/usr/share/doc/pxhostd(?:/|$)"),
    re.compile(r"^/usr/share/licenses/pxhostd[^/]*(?:/|$)"),
    re.compile(r"^/usr/share/lintian/overrides/pxhostd$"),
    re.compile(r"^/usr/share/python3/runtime\.d/pxhostd\.rtupdate$"),
    re.compile(r"/__pycache__(?:/|$)|\.pyc$"),
    re.compile(r"\.dist-info/INSTALLER$"),
)


def normalise(path: str) -> str | None:
    """One layout for both packages; None for a path that is one distribution's own."""
    if path.startswith("/lib/"):
        path = "/usr" + path
    path = SITELIB.sub("<sitelib>/", path)
    if any(rule.search(path) for rule in DROPPED):
        return None
    return path


def need_tools(*names: str) -> None:
    """Fail (never skip) when a tool the check needs is missing."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        pytest.fail(
            f"missing tools: {', '.join(missing)} (scripts/setup-host installs them)",
            pytrace=False,
        )


def run(*argv: str | Path, cwd: Path | None = None) -> str:
    """Run a command; its stdout, or a test failure that shows what went wrong."""
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(str(a) for a in argv)} exited {proc.returncode}:\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}",
            pytrace=False,
        )
    return proc.stdout


@dataclass(frozen=True)
class Entry:
    """One non-directory member of a package: its permissions string and link target."""

    perms: str
    link: str = ""


def deb_payload(deb: Path) -> dict[str, Entry]:
    """Files and symlinks of a .deb, from `dpkg-deb -c`, keyed by absolute path."""
    entries: dict[str, Entry] = {}
    for line in run("dpkg-deb", "-c", deb).splitlines():
        perms, _owner, _size, _date, _time, name = line.split(maxsplit=5)
        if perms.startswith("d"):
            continue
        name, _, link = name.partition(" -> ")
        entries[name.removeprefix(".")] = Entry(perms, link)
    return entries


def rpm_payload(rpm: Path) -> dict[str, Entry]:
    """Files and symlinks of an .rpm (the list `rpm -qpl` prints, with permissions)."""
    entries: dict[str, Entry] = {}
    out = run("rpm", "-qp", "--qf", r"[%{FILEMODES:perms}\t%{FILELINKTOS}\t%{FILENAMES}\n]", rpm)
    for line in out.splitlines():
        perms, link, name = line.split("\t")
        if perms.startswith("d"):
            continue
        entries[name] = Entry(perms, link)
    return entries


def normalised(entries: dict[str, Entry]) -> dict[str, Entry]:
    result: dict[str, Entry] = {}
    for path, entry in entries.items():
        common = normalise(path)
        if common is not None:
            result[common] = entry
    return result


def tree_files(root: Path) -> dict[str, Path]:
    """Regular files and symlinks below an unpacked root, keyed by normalised path."""
    found: dict[str, Path] = {}
    for path in root.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            continue
        common = normalise("/" + str(path.relative_to(root)))
        if common is not None:
            found[common] = path
    return found


SERVICE_NAME = re.compile(r"[\w@.:-]+\.service\b")


def services_named(script: str) -> set[str]:
    """Every systemd service a maintainer script names."""
    return set(SERVICE_NAME.findall(script))


REPO = Path(__file__).resolve().parents[2]


def code_version() -> str:
    text = (REPO / "pxhostd" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    assert match, "pxhostd/__init__.py declares no __version__"
    return match.group(1)


def copy_tree(destination: Path) -> Path:
    """The files git knows (tracked, or new and not ignored), as the build scripts see them."""
    files = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO)
    destination.mkdir(parents=True, exist_ok=True)
    for name in filter(None, files.split("\0")):
        source = REPO / name
        if source.is_file() and not source.is_symlink():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            target.chmod(source.stat().st_mode & 0o777)
    return destination
