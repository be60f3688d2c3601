"""`pxhostd-pod --host-access=bus`: the pod for orchestrators that cannot give it the host.

Docker Swarm tasks cannot be privileged and have no host PID namespace, so the default
mode (nsenter into the host's mount namespace, install the host daemon from the image)
cannot work there. This mode needs only three host paths: the system bus socket, /opt/pwx
and /run/pxhostd. Root in a container (no user-namespace remap) is uid 0 to dbus-daemon,
so pxhostd's root-only methods accept it. It never runs a host command and never installs
pxhostd: the host gets pxhostd from its .deb or .rpm, and a host without it, or with one
older than this pod, is a clear error naming the package and the version needed.

Everything else is the same as in the default mode: the image's payload placed under
/opt/pwx, the spec built from the pod's arguments and environment (plus Docker secrets),
submitted over the bus, the legacy health endpoint, SIGTERM handling, --uninstall.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path

from pxhostd.bus.client import Connect, PxClient
from pxhostd.errors import DaemonUnavailable, HostStateError
from pxhostd.pod import submit
from pxhostd.pod.dockersecrets import merge_secrets, read_docker_secrets
from pxhostd.spec.rules import show
from pxhostd.versions import BadVersion, compare_versions

#: What the pod needs from the host in this mode: the system bus socket (a bind of the
#: socket itself, or of /run/dbus), the payload area and the status file / host lock.
BUS_REQUIRED_MOUNTS = ("/run/dbus/system_bus_socket", "/opt/pwx", "/run/pxhostd")
#: How long to wait for pxhostd on the bus: long enough for a package upgrade restarting
#: it, short enough that a host without pxhostd fails with the advice soon.
BUS_DAEMON_WAIT = 30.0


class HostAccess(enum.Enum):
    NSENTER = "nsenter"
    BUS = "bus"


def parse_host_access(text: str) -> HostAccess:
    for mode in HostAccess:
        if text == mode.value:
            return mode
    raise ValueError(f"--host-access: expected nsenter or bus, got {show(text)}")


def package_advice(needed: str) -> str:
    """How to get pxhostd onto the host: the package and the version, .deb and .rpm."""
    return (
        f"install the pxhostd package, version {needed} or newer, on every node first "
        f"(Debian/Ubuntu: apt-get install ./pxhostd_{needed}_all.deb; RPM: dnf install "
        f"./pxhostd-{needed}-1.noarch.rpm); in --host-access=bus mode the pod does not "
        "install it (see docs/swarm.md)"
    )


def check_daemon_version(host_version: str, needed: str) -> None:
    """Refuse a host pxhostd older than `needed` (dpkg's order), or one that says nonsense."""
    try:
        older = compare_versions(host_version, needed) < 0
    except BadVersion:
        raise HostStateError(
            f"the host's pxhostd reports version {show(host_version)}, which is not a version; "
            + package_advice(needed)
        ) from None
    if older:
        raise HostStateError(
            f"the host's pxhostd {host_version} is older than {needed}, which this pod needs: "
            + package_advice(needed)
        )


async def connect_host_daemon(
    connect: Connect, say: submit.Say, needed: str, wait: float
) -> PxClient:
    """A client of the host's pxhostd, once it answers and is new enough."""
    try:
        client = await submit.wait_for_daemon(connect, say, wait)
    except DaemonUnavailable as exc:
        raise HostStateError(f"no pxhostd on this host's system bus ({exc}); "
                             + package_advice(needed)) from exc
    try:
        version = str(await client.get_property("Version"))
        check_daemon_version(version, needed)
    except BaseException:
        client.close()
        raise
    say(f"host: pxhostd {version} on the system bus")
    return client


def pod_environment(environ: Mapping[str, str], secrets_dir: Path) -> dict[str, str]:
    """The environment the spec is built from: the container's plus its Docker secrets."""
    return merge_secrets(environ, read_docker_secrets(secrets_dir))
