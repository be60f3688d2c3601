"""Make sure the host runs a pxhostd at least as new as the pod's.

The image carries the pxhostd .deb it was built from. When the host has no pxhostd, an
older one, or one that cannot say its version, the pod copies that .deb into a directory
both see (/opt/pwx/pod/packages, on the host's /opt/pwx) and has the host's apt-get
install it. Identical version: nothing is done. A newer host daemon is kept (a pod image
rolled back must not downgrade the host).

apt-get runs as a transient unit of the host (`systemd-run --wait`), not as a child of
the pod: a pod killed mid-install (eviction, rollout) cannot kill dpkg halfway; the next
pod waits for that unit and looks again. The host lock is held while files are copied, but
not while apt-get runs: the package's maintainer scripts restart pxhostd, whose start-up
takes the host lock, so holding it across the install would stall that start. Two package
installs are serialised by dpkg's own lock.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pxhostd.errors import HostStateError
from pxhostd.hostfs import atomic_write, remove_file, sha256_file
from pxhostd.pod.hostenter import Host, HostCommandFailed
from pxhostd.pod.locking import DEFAULT_LOCK, host_locked
from pxhostd.versions import BadVersion, compare_versions, parse_version

#: What the image adds for the pod (see container/Containerfile).
IMAGE_DIR = Path("/usr/share/pxhostd-pod")
IMAGE_PACKAGES = IMAGE_DIR / "packages"
#: The pod's area on the host: below the host's /opt/pwx, mounted at the same path.
HOST_POD_DIR = Path("/opt/pwx/pod")
HOST_PACKAGES = HOST_POD_DIR / "packages"
#: The transient unit apt-get runs in on the host.
INSTALL_UNIT = "pxhostd-pod-install.service"
INSTALL_TIMEOUT = 600.0
#: systemctl start waits for READY=1; pxhostd's TimeoutStartSec is 5 min.
START_TIMEOUT = 330.0

_OUTPUT_RE = re.compile(r"pxhostd\s+(\S+)")
#: dpkg's progress lines, one per 5 %.
_APT_NOISE = re.compile(r"\(Reading database \.\.\. [0-9]+%")
_log = logging.getLogger(__name__)

Say = Callable[[str], None]


class Plan(enum.Enum):
    NOTHING = "up to date"
    INSTALL = "install"
    UPGRADE = "upgrade"
    REPAIR = "reinstall"
    KEEP_NEWER = "keep the newer host daemon"


@dataclass(frozen=True)
class HostDaemon:
    """What `pxhostd --version` on the host said."""

    version: str | None = None
    #: Why the version is unknown though pxhostd is there (None: absent or known).
    problem: str | None = None

    @property
    def present(self) -> bool:
        return self.version is not None or self.problem is not None


def parse_version_output(text: str) -> str:
    """`pxhostd 0.1.0` -> `0.1.0`; BadVersion for anything else."""
    match = _OUTPUT_RE.fullmatch(text.strip())
    if not match:
        raise BadVersion(f"unexpected `pxhostd --version` output {text.strip()[:80]!r}")
    version = match.group(1)
    parse_version(version)  # BadVersion if it is not one
    return version


async def host_daemon(host: Host) -> HostDaemon:
    result = await host.run(["pxhostd", "--version"], check=False, timeout=30)
    if result.not_found:
        return HostDaemon()
    if not result.ok:
        why = (result.stderr.strip() or result.stdout.strip())[-200:]
        return HostDaemon(problem=f"`pxhostd --version` failed (exit {result.returncode}): {why}")
    try:
        return HostDaemon(version=parse_version_output(result.stdout))
    except BadVersion as exc:
        return HostDaemon(problem=str(exc))


def decide(host: HostDaemon, image_version: str) -> Plan:
    """What to do about the host daemon, given the image's version. Pure."""
    if host.version is None:
        return Plan.REPAIR if host.problem else Plan.INSTALL
    order = compare_versions(host.version, image_version)
    if order == 0:
        return Plan.NOTHING
    return Plan.UPGRADE if order < 0 else Plan.KEEP_NEWER


def package_name(version: str) -> str:
    """The .deb's file name (Debian leaves the epoch out of it)."""
    return f"pxhostd_{version.split(':', 1)[-1]}_all.deb"


def find_image_package(version: str, package_dir: Path = IMAGE_PACKAGES) -> Path:
    path = package_dir / package_name(version)
    if path.is_file():
        return path
    present = sorted(p.name for p in package_dir.glob("*.deb")) if package_dir.is_dir() else []
    raise HostStateError(
        f"the image has no {path.name} in {package_dir} (found: {', '.join(present) or 'none'});"
        " the image must carry the .deb of the pxhostd it runs"
    )


def copy_package(deb: Path, dest_dir: Path) -> Path:
    """Copy the .deb into the shared directory (atomic, verified); drop older copies."""
    target = dest_dir / deb.name
    atomic_write(target, deb.read_bytes(), 0o644)
    if sha256_file(target) != sha256_file(deb):
        raise HostStateError(f"{target} does not match {deb} after copying")
    for other in dest_dir.glob("pxhostd_*.deb"):
        if other.name != deb.name:
            remove_file(other)
    return target


async def _unit_active(host: Host, unit: str) -> bool:
    result = await host.run(["systemctl", "is-active", unit], check=False, timeout=30)
    return result.stdout.strip() in ("active", "activating", "reloading", "deactivating")


async def wait_unit_gone(host: Host, unit: str, timeout: float, say: Say) -> None:
    if not await _unit_active(host, unit):
        return
    say(f"host: {unit} is running (an earlier pod's install); waiting for it")
    deadline = time.monotonic() + timeout
    while await _unit_active(host, unit):
        if time.monotonic() > deadline:
            raise HostStateError(f"{unit} still runs after {timeout:g} s")
        await asyncio.sleep(1.0)


async def run_package_install(
    host: Host, deb: Path, say: Say, *, reinstall: bool = False,
    timeout: float = INSTALL_TIMEOUT,
) -> None:
    """apt-get install the .deb (a host path) in a transient host unit; mirror its output."""
    await wait_unit_gone(host, INSTALL_UNIT, timeout, say)
    started = int(time.time()) - 1
    argv = [
        "systemd-run", f"--unit={INSTALL_UNIT}", "--collect", "--wait", "--quiet",
        "--service-type=exec", "--setenv=DEBIAN_FRONTEND=noninteractive",
        "--description=pxhostd install from the pxhostd pod",
        "--",
        "apt-get", "install", "--yes", "--no-install-recommends",
        *(["--reinstall"] if reinstall else []),
        "-o", "DPkg::Lock::Timeout=120",
        "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
        str(deb),
    ]
    failure: HostCommandFailed | None = None
    try:
        await host.run(argv, timeout=timeout)
    except HostCommandFailed as exc:
        failure = exc
    log = await host.run(
        ["journalctl", "--no-pager", "--quiet", "--output=cat", f"--since=@{started}",
         f"_SYSTEMD_UNIT={INSTALL_UNIT}"],
        check=False,
        timeout=30,
    )
    lines = [line.rstrip() for line in log.stdout.splitlines()]
    for line in [line for line in lines if line and not _APT_NOISE.fullmatch(line)][-40:]:
        say(f"host apt-get: {line}")
    if failure is not None:
        raise HostStateError(
            f"installing {deb.name} on the host failed: {failure} "
            f"(see `journalctl -u {INSTALL_UNIT}` on the node)"
        ) from failure


async def ensure_daemon_started(host: Host, say: Say) -> bool:
    """Start pxhostd.service on the host if it is not running; True if it was started."""
    result = await host.run(["systemctl", "is-active", "pxhostd.service"], check=False,
                            timeout=30)
    if result.stdout.strip() == "active":
        return False
    say(f"host: pxhostd.service is {result.stdout.strip() or 'unknown'}; starting it")
    await host.run(["systemctl", "start", "pxhostd.service"], timeout=START_TIMEOUT)
    return True


async def ensure_host_daemon(
    host: Host,
    image_version: str,
    say: Say,
    *,
    package_dir: Path = IMAGE_PACKAGES,
    host_packages: Path = HOST_PACKAGES,
    lock_path: Path = DEFAULT_LOCK,
) -> Plan:
    """Install or upgrade the host's pxhostd from the image when needed; start it."""
    found = await host_daemon(host)
    plan = decide(found, image_version)
    have = found.version or ("broken" if found.problem else "none")
    if found.problem:
        say(f"host: pxhostd is there but {found.problem}")
    if plan is Plan.KEEP_NEWER:
        _log.warning("host pxhostd %s is newer than the pod's %s; keeping it",
                     found.version, image_version)
    if plan in (Plan.NOTHING, Plan.KEEP_NEWER):
        say(f"host daemon: pxhostd {have} ({plan.value}; pod {image_version})")
        await ensure_daemon_started(host, say)
        return plan
    deb = find_image_package(image_version, package_dir)
    say(f"host daemon: {plan.value} pxhostd {image_version} (host has {have})")
    async with host_locked(lock_path):
        shared = await asyncio.to_thread(copy_package, deb, host_packages)
    await run_package_install(host, shared, say, reinstall=plan is Plan.REPAIR)
    after = await host_daemon(host)
    if after.version is None or compare_versions(after.version, image_version) < 0:
        raise HostStateError(
            f"after installing {deb.name} the host's pxhostd reports "
            f"{after.version or after.problem or 'nothing'}"
        )
    say(f"host daemon: pxhostd {after.version} installed")
    await ensure_daemon_started(host, say)
    return plan
