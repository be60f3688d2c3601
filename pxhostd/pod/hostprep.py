"""Checks and preparation of the host before anything is installed.

`check_host_namespace` and `host_machine_id` change nothing; they run first, so a pod
pointed at the wrong place (its own mount namespace, an unbooted image, a host without an
identity) refuses before it touches the host. `ensure_shared_root` is what the old
px-init container did: `/` must be a shared mount in the host's mount namespace so mounts
the storage service makes propagate to pods.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from pxhostd.errors import HostStateError
from pxhostd.pod.hostenter import Host

#: systemd's machine-id: 32 lower-case hex digits, not all zero (machine-id(5)).
_MACHINE_ID_RE = re.compile(r"[0-9a-f]{32}")
OWN_MNT_NS = Path("/proc/self/ns/mnt")
OWN_PID_NS = Path("/proc/self/ns/pid")
HOST_PID_NS = Path("/host_proc/1/ns/pid")

_log = logging.getLogger(__name__)


def _ns_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_host_pid(host_ns: Path = HOST_PID_NS, own_ns: Path = OWN_PID_NS) -> None:
    """Refuse unless the pod shares the host's PID namespace (`hostPID: true`).

    /host_proc/1/ns is always the host's (the runtime resolves the hostPath on the host),
    so only comparing it with the pod's own PID namespace tells whether hostPID is set.
    Without it the pod would install pxhostd on the host and then fail in a confusing way,
    so this runs before anything else. A missing /host_proc/1/ns is left to the mount check,
    which names it.
    """
    host, own = _ns_id(host_ns), _ns_id(own_ns)
    if host is None or own is None:
        return
    if host != own:
        raise HostStateError(
            "the pod does not share the host's PID namespace: set `hostPID: true` in the "
            f"DaemonSet's pod spec ({own_ns} differs from {host_ns}); nothing was changed"
        )


def check_host_namespace(host_ns: Path, own_ns: Path = OWN_MNT_NS) -> None:
    """Refuse when `host_ns` is not a namespace file, or is the pod's own mount namespace."""
    try:
        host_st = os.stat(host_ns)
    except OSError as exc:
        raise HostStateError(
            f"cannot read the host mount namespace {host_ns}: {exc.strerror} (mount the "
            "host's /proc/1/ns at /host_proc/1/ns)"
        ) from exc
    own_st = os.stat(own_ns)
    if (host_st.st_dev, host_st.st_ino) == (own_st.st_dev, own_st.st_ino):
        raise HostStateError(
            f"{host_ns} is the pod's own mount namespace, not the host's: the pod needs "
            "hostPID and the host's /proc/1/ns mounted at /host_proc/1/ns"
        )


def parse_machine_id(text: str) -> str:
    """The machine-id from /etc/machine-id's text; HostStateError if missing or invalid."""
    value = text.strip()
    if not value:
        raise HostStateError(
            "the host's /etc/machine-id is empty: the host is not fully set up "
            "(systemd-machine-id-setup); refusing to change it"
        )
    if value == "uninitialized":
        raise HostStateError(
            "the host's /etc/machine-id says 'uninitialized' (first boot not finished); "
            "refusing to change the host"
        )
    if not _MACHINE_ID_RE.fullmatch(value) or value == "0" * 32:
        raise HostStateError(
            f"the host's /etc/machine-id is not a valid machine id ({value[:40]!r}); "
            "refusing to change the host"
        )
    return value


async def host_machine_id(host: Host) -> str:
    """Read and check the host's machine-id through its mount namespace."""
    result = await host.run(["cat", "--", "/etc/machine-id"], check=False, timeout=10)
    if not result.ok:
        raise HostStateError(
            "cannot read the host's /etc/machine-id "
            f"({result.stderr.strip()[:200] or f'exit {result.returncode}'}); "
            "refusing to change the host"
        )
    return parse_machine_id(result.stdout)


def is_shared(propagation: str) -> bool:
    """findmnt's PROPAGATION column (e.g. `shared`, `private`, `private,slave`)."""
    return "shared" in propagation.strip().split(",")


async def root_propagation(host: Host) -> str:
    result = await host.run(["findmnt", "--noheadings", "--output", "PROPAGATION", "/"],
                            timeout=10)
    return result.stdout.strip().splitlines()[0].strip() if result.stdout.strip() else ""


async def ensure_shared_root(host: Host) -> bool:
    """Make `/` shared in the host's mount namespace if it is not; True if it changed."""
    before = await root_propagation(host)
    if is_shared(before):
        _log.debug("host / is already shared (%s)", before)
        return False
    await host.run(["mount", "--make-shared", "/"], timeout=10)
    after = await root_propagation(host)
    if not is_shared(after):
        raise HostStateError(f"`mount --make-shared /` left the host's / {after or 'unknown'}")
    _log.debug("made the host's / a shared mount (was %s)", before or "unknown")
    return True
