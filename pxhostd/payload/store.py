"""The content-addressed object store that releases are hardlinked from.

Layout, inside the releases directory so that hardlinks never cross a filesystem:

    .store/objects/<first 2 hex>/<other 62 hex>      a file, mode 0444
    .store/objects/<first 2 hex>/<other 62 hex>.x    the same content, executable, 0555
    .store/meta/<release-id>.json                    what the no-op needs (PayloadHeader)
    .store/meta/<release-id>.yaml                    its payload.yaml (releases imported
                                                     before listings were kept)
    .store/meta/<release-id>.files                   its listing (`listing`)
    .store/spare-<release-id>/                       a copy of the current release (`spare`)

An object is written once, verified while it was read, and never changed: it is read-only,
root-owned, and the service unit mounts the whole releases directory read-only. A release
file *is* its object (the same inode), so removing an object's store name never takes a
byte away from a release; an object whose link count is 1 is referenced by no release and
is garbage. That makes collection safe at any instant, crash included.

A name under `objects/` is only ever given to content that is already durable: an import
names its new objects in a staging directory of its own (`Staging`, a temp name in the
releases directory) and moves them into `objects/` only after the `syncfs` that made them
durable (as OSTree stages a transaction's objects). So every store name can be linked as
it is, with no check; what a crash leaves is a staging directory, swept at the next start
or import, never a store name (docs/crash-safety.md).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from pxhostd.errors import HostStateError
from pxhostd.hostfs import fsync_dir, remove_tree, sweep_temp_files, temp_name

STORE_DIR = ".store"
_HEX = frozenset("0123456789abcdef")


def object_name(digest: str, executable: bool) -> str:
    """`<aa>/<rest>` or `<aa>/<rest>.x`: the store path of one (content, exec bit)."""
    digest = digest.lower()
    if len(digest) != 64 or not set(digest) <= _HEX:
        raise HostStateError(f"not a sha256 digest: {digest[:70]!r}")
    return _name(digest, executable)


def _name(digest: str, executable: bool) -> str:
    """`object_name` of a digest already checked (the manifest's), for the per-file path."""
    return f"{digest[:2]}/{digest[2:]}{'.x' if executable else ''}"


def object_mode(executable: bool) -> int:
    return 0o555 if executable else 0o444


@dataclass(frozen=True)
class CollectResult:
    objects: int
    bytes: int


class ObjectStore:
    def __init__(self, releases_dir: Path) -> None:
        self.root = releases_dir / STORE_DIR
        self.objects = self.root / "objects"
        self.meta = self.root / "meta"

    def ensure(self) -> None:
        for d in (self.root, self.objects, self.meta):
            if not d.is_dir():
                d.mkdir(mode=0o755, exist_ok=True)
                fsync_dir(d.parent)

    def path(self, digest: str, executable: bool) -> Path:
        return self.objects / object_name(digest, executable)

    def open_objects(self) -> int | None:
        """A descriptor of the objects directory (the caller closes it); None if absent."""
        try:
            return os.open(self.objects, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None

    def link_into(
        self,
        digest: str,
        executable: bool,
        dst: str,
        *,
        objects_fd: int | None = None,
        dst_dir_fd: int | None = None,
    ) -> bool:
        """Hardlink the object to `dst`; False if the store has none (or it is linked too
        often), so the caller imports a copy. Digests are the manifest's (lowercase hex,
        checked there). With `objects_fd` (`open_objects`) and `dst_dir_fd`, both names are
        resolved from those descriptors: two short path walks instead of two full ones."""
        name = _name(digest, executable)
        src = name if objects_fd is not None else f"{self.objects}/{name}"
        return _link(src, dst, objects_fd, dst_dir_fd)

    def publish(self, staging: Staging) -> None:
        """Move every object `staging` holds into `objects/` (their data is durable by now).
        A name already there is replaced: both are verified copies."""
        for fan in staging.fans():
            os.makedirs(self.objects / fan, mode=0o755, exist_ok=True)
            for name in os.listdir(staging.root / fan):
                os.rename(staging.root / fan / name, self.objects / fan / name)

    def collect(self) -> CollectResult:
        """Remove every object no release links (link count 1); durable per directory."""
        count = size = 0
        if not self.objects.is_dir():
            return CollectResult(0, 0)
        try:
            for sub in sorted(self.objects.iterdir()):
                removed_here = False
                for entry in os.scandir(sub):
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode) and st.st_nlink <= 1:
                        os.unlink(entry.path)
                        count += 1
                        size += st.st_size
                        removed_here = True
                if removed_here:
                    fsync_dir(sub)
                with contextlib.suppress(OSError):
                    sub.rmdir()  # an empty fan-out directory
        except OSError as exc:
            raise HostStateError(f"cannot collect {self.objects}: {exc.strerror}") from exc
        return CollectResult(count, size)

    def forget_meta(self, keep: set[str]) -> None:
        """Remove the metadata of releases that are no longer on disk."""
        if not self.meta.is_dir():
            return
        sweep_temp_files(self.meta)
        for entry in self.meta.iterdir():
            rid = entry.name.rpartition(".")[0]
            if rid not in keep:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
        fsync_dir(self.meta)


def _link(src: str, dst: str, src_dir_fd: int | None, dst_dir_fd: int | None) -> bool:
    try:
        os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.EMLINK:
            return False
        raise
    return True


class Staging:
    """One import's new objects, named here until its `syncfs` (then `publish`ed).

    A TEMP_PREFIX directory in the releases directory, made on the first new object: a
    crash leaves it to `sweep_temp_files`, and a failed import removes it with its tree.
    """

    def __init__(self, releases_dir: Path) -> None:
        self.root = temp_name(releases_dir, "objects")
        self.fd: int | None = None
        self._fans: set[str] = set()
        self._lock = threading.Lock()  # import workers add side by side

    def add(self, digest: str, executable: bool, src: str) -> None:
        """Name the verified file `src` (in the import's tree) as a staged object."""
        fan = digest[:2]
        with self._lock:
            if self.fd is None:
                os.mkdir(self.root, 0o755)
                self.fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fd = self.fd
            if fan not in self._fans:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(fan, 0o755, dir_fd=fd)
                self._fans.add(fan)
        with contextlib.suppress(FileExistsError):  # the same content imported twice
            os.link(src, _name(digest, executable), dst_dir_fd=fd)

    @property
    def used(self) -> bool:
        return self.fd is not None

    def link_into(
        self, digest: str, executable: bool, dst: str, dst_dir_fd: int | None = None
    ) -> bool:
        """Hardlink a staged object to `dst` (a duplicate met after its import)."""
        if self.fd is None:
            return False
        return _link(_name(digest, executable), dst, self.fd, dst_dir_fd)

    def fans(self) -> list[str]:
        return sorted(self._fans)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def remove(self) -> None:
        """Remove the directory and whatever it still holds (a failed import)."""
        self.close()
        remove_tree(self.root)

    def remove_emptied(self) -> None:
        """Remove the directory `publish` emptied; no sync needed (an empty leftover is
        swept like any other)."""
        self.close()
        try:
            for fan in self.fans():
                os.rmdir(self.root / fan)
            os.rmdir(self.root)
        except OSError:
            remove_tree(self.root)
