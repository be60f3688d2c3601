"""The pod's mounts: are the required host paths really mounted, and which of the pod's own
mounts should the storage service get?

Both questions are answered from /proc/self/mountinfo, which names every mount point with
the filesystem root it shows. The old monitor compared `st_dev` with `/`; that misses a bind
mount from the same filesystem as the container's root, so `st_dev` is only the fallback
when mountinfo cannot be read.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pxhostd.errors import HostStateError, InvalidSpec, PxError
from pxhostd.spec.validate import parse_mount

MOUNTINFO = Path("/proc/self/mountinfo")

#: What the old monitor required (minus the Docker socket, which nothing uses any more).
LEGACY_REQUIRED_MOUNTS = ("/etc/pwx", "/opt/pwx", "/etc/systemd/system", "/host_proc/1/ns")
#: What the pxhostd pod requires: the legacy set, plus the daemon's run directory, where the
#: readiness probe reads the status file.
REQUIRED_MOUNTS = (*LEGACY_REQUIRED_MOUNTS, "/run/pxhostd")

#: Mount points that belong to the pod itself, never to the storage service: the container
#: runtime's own mounts, Kubernetes' per-pod files, and the host hand-off paths. A mount at
#: or below one of these is private.
PRIVATE_MOUNTS = (
    "/proc",
    "/sys",
    "/dev",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/var/run/secrets",
    "/run/secrets",
    "/host_proc",
    "/run/pxhostd",
    "/etc/pwx",
    "/opt/pwx",
    "/etc/systemd/system",
)

#: Filesystems that have no host path a bind mount could name.
_PSEUDO_FS = frozenset(
    {"proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2", "tmpfs", "devtmpfs", "overlay",
     "securityfs", "debugfs", "tracefs", "pstore", "bpf", "hugetlbfs", "configfs", "fusectl",
     "binfmt_misc", "autofs", "nsfs", "shm", "rpc_pipefs", "efivarfs", "selinuxfs"}
)

_log = logging.getLogger(__name__)
_OCTAL = re.compile(r"\\([0-7]{3})")


class MissingMounts(PxError):
    """Required host paths are not mounted into the pod; `missing` lists every one."""

    name = "MissingMounts"

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        super().__init__(
            f"required mounts missing: {', '.join(self.missing)} "
            "(each must be a hostPath volume mounted at the same path; see the DaemonSet "
            "manifest)"
        )


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/<pid>/mountinfo (see proc(5))."""

    mount_id: int
    parent_id: int
    dev: str  # "major:minor"
    root: str  # path of the mounted directory within its filesystem
    mount_point: str
    options: tuple[str, ...]  # per-mount options (ro/rw, nosuid, ...)
    optional: tuple[str, ...]  # propagation: shared:N, master:N, ...
    fstype: str
    source: str
    super_options: tuple[str, ...]

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo octal."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse mountinfo text; ValueError on a line that is not mountinfo."""
    entries: list[MountEntry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
            mount_id, parent_id = int(fields[0]), int(fields[1])
            fstype, source, super_opts = fields[sep + 1], fields[sep + 2], fields[sep + 3]
        except (ValueError, IndexError):
            raise ValueError(f"mountinfo line {number} is malformed") from None
        entries.append(
            MountEntry(
                mount_id=mount_id,
                parent_id=parent_id,
                dev=fields[2],
                root=_unescape(fields[3]),
                mount_point=_unescape(fields[4]),
                options=tuple(fields[5].split(",")),
                optional=tuple(fields[6:sep]),
                fstype=fstype,
                source=_unescape(source),
                super_options=tuple(super_opts.split(",")),
            )
        )
    return entries


def read_mountinfo(path: Path = MOUNTINFO) -> list[MountEntry]:
    return parse_mountinfo(path.read_text(encoding="utf-8", errors="surrogateescape"))


def _is_below(path: str, top: str) -> bool:
    return path == top or top == "/" or path.startswith(top.rstrip("/") + "/")


def covering_mount(path: str, entries: Sequence[MountEntry]) -> MountEntry | None:
    """The mount that `path` lies on: the last-mounted one with the longest matching point."""
    best: MountEntry | None = None
    for entry in entries:  # mountinfo lists mounts in mount order; later ones stack on top
        if _is_below(path, entry.mount_point) and (
            best is None or len(entry.mount_point) >= len(best.mount_point)
        ):
            best = entry
    return best


def check_required_mounts(
    required: Sequence[str] = REQUIRED_MOUNTS, mountinfo_path: Path = MOUNTINFO
) -> list[str]:
    """Every path of `required` that is not really mounted into the pod (empty: all fine).

    A path counts as mounted when it exists and lies on a mount other than the container's
    root filesystem (it is a mount point, or below one, e.g. /host_proc/1/ns below a
    hostPath of /proc at /host_proc). Without a readable mountinfo, fall back to the old
    test: its `st_dev` differs from that of `/`.
    """
    try:
        entries: list[MountEntry] | None = read_mountinfo(mountinfo_path)
    except (OSError, ValueError) as exc:
        _log.warning("cannot read %s (%s); comparing st_dev with / instead", mountinfo_path, exc)
        entries = None
    missing: list[str] = []
    for raw in required:
        path = posixpath.normpath(raw)
        if not os.path.exists(path):
            missing.append(raw)
        elif entries is not None:
            mount = covering_mount(path, entries)
            if mount is None or mount.mount_point == "/":
                missing.append(raw)
        elif os.stat(path).st_dev == os.stat("/").st_dev:
            missing.append(raw)
    return missing


def require_mounts(
    required: Sequence[str] = REQUIRED_MOUNTS, mountinfo_path: Path = MOUNTINFO
) -> None:
    """Raise MissingMounts naming every missing mount at once."""
    missing = check_required_mounts(required, mountinfo_path)
    if missing:
        raise MissingMounts(missing)


def _host_path(entry: MountEntry, host: Sequence[MountEntry] | None) -> str | None:
    """Where the pod mount's directory lives on the host, or None if that cannot be known."""
    if host is None:
        # Assume the source filesystem is mounted at / on the host (true for hostPath
        # volumes on the root filesystem); a pseudo filesystem has no path to bind from.
        return None if entry.fstype in _PSEUDO_FS else entry.root
    best: MountEntry | None = None
    for h in host:
        if h.dev == entry.dev and _is_below(entry.root, h.root) and (
            best is None or len(h.root) > len(best.root)
        ):
            best = h
    if best is None:
        return None
    rest = posixpath.relpath(entry.root, best.root)
    return best.mount_point if rest == "." else posixpath.join(best.mount_point, rest)


def pod_mounts_to_spec_mounts(
    entries: Iterable[MountEntry],
    private: Collection[str] = PRIVATE_MOUNTS,
    *,
    host_entries: Sequence[MountEntry] | None = None,
    include_nested: bool = False,
) -> list[str]:
    """The pod's own bind mounts as spec mounts (`src:dst` or `src:dst:ro`).

    Leaves out the container's root, private mounts (at or below `private`), mounts whose
    host path cannot be named, and, unless `include_nested`, mounts below another kept
    mount (spec mounts are recursive binds, so those come along). `host_entries` is the
    host's mountinfo (e.g. /proc/1/mountinfo with hostPID); with it the host path is found
    exactly, without it the mount's root within its filesystem is taken as the host path.
    Paths the spec cannot carry (`:`, `%`, ...) are skipped with a warning.
    """
    latest: dict[str, MountEntry] = {}
    for entry in entries:  # a later mount on the same point hides the earlier one
        latest[entry.mount_point] = entry
    kept: list[str] = []
    result: list[str] = []
    for point in sorted(latest):  # parents sort before their children
        entry = latest[point]
        if point == "/" or any(_is_below(point, p) for p in private):
            continue
        if not include_nested and any(_is_below(point, k) for k in kept):
            continue
        src = _host_path(entry, host_entries)
        if src is None:
            _log.debug("mount %s: no host path to bind from (%s)", point, entry.fstype)
            continue
        text = f"{src}:{point}" + (":ro" if entry.read_only else "")
        try:
            parse_mount("pod mount", text)
        except InvalidSpec as exc:
            _log.warning("pod mount %s left out of the spec: %s", point, exc)
            continue
        kept.append(point)
        result.append(text)
    return result


def declared_mounts(
    entries: Iterable[MountEntry],
    points: Sequence[str],
    *,
    host_entries: Sequence[MountEntry] | None = None,
) -> list[str]:
    """Spec mounts for exactly `points` (each must be a mount point of the pod).

    MissingMounts names every point that is not mounted; a point whose host path cannot be
    named (a pseudo filesystem, a runtime's tmpfs) is a named error too, since the service
    could never get what the DaemonSet says it should.
    """
    latest: dict[str, MountEntry] = {}
    for entry in entries:
        latest[entry.mount_point] = entry
    missing = [p for p in points if posixpath.normpath(p) not in latest]
    if missing:
        raise MissingMounts(missing)
    result: list[str] = []
    for raw in points:
        point = posixpath.normpath(raw)
        entry = latest[point]
        src = _host_path(entry, host_entries)
        if src is None:
            raise HostStateError(
                f"service mount {point} is not a host directory ({entry.fstype} "
                f"{entry.source}); it must be a hostPath volume"
            )
        text = f"{src}:{point}" + (":ro" if entry.read_only else "")
        parse_mount("service mount", text)  # InvalidSpec names what the spec cannot carry
        result.append(text)
    return result
