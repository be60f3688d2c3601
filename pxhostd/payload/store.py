"""The content-addressed object store that releases are hardlinked from.

Layout, inside the releases directory so that hardlinks never cross a filesystem:

    .store/objects/<first 2 hex>/<other 62 hex>      a file, mode 0444
    .store/objects/<first 2 hex>/<other 62 hex>.x    the same content, executable, 0555
    .store/meta/<release-id>.json                    what the no-op needs (PayloadHeader)
    .store/meta/<release-id>.yaml                    the payload.yaml that release came from

An object is written once, verified while it was read, and never changed: it is read-only,
root-owned, and the service unit mounts the whole releases directory read-only. A release
file *is* its object (the same inode), so removing an object's store name never takes a
byte away from a release; an object whose link count is 1 is referenced by no release and
is garbage. That makes collection safe at any instant, crash included.

An object gets its store name as soon as it is written and verified, before the import's
one `syncfs` has made it durable. It is trusted (linked into another release) only while a
second name holds it: a release, which is renamed in only after that `syncfs`, or the
running import's own temp tree. What a crash leaves unsynced is named by the store alone
once start-up has swept the temp trees (link count 1): never linked again, replaced when
it is needed, removed by the next collection (docs/crash-safety.md).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from pxhostd.errors import HostStateError
from pxhostd.hostfs import fsync_dir, sweep_temp_files, temp_name

STORE_DIR = ".store"
_HEX = frozenset("0123456789abcdef")


def object_name(digest: str, executable: bool) -> str:
    """`<aa>/<rest>` or `<aa>/<rest>.x`: the store path of one (content, exec bit)."""
    digest = digest.lower()
    if len(digest) != 64 or not set(digest) <= _HEX:
        raise HostStateError(f"not a sha256 digest: {digest[:70]!r}")
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
        """Hardlink the object to `dst`; False if the store has no trusted object for it
        (absent, named by the store alone, or linked too often), so the caller imports a
        copy. Digests are the manifest's (lowercase hex, checked there). With `objects_fd`
        (`open_objects`) and `dst_dir_fd`, both names are resolved from those descriptors:
        two short path walks instead of two full ones per file."""
        name = f"{digest[:2]}/{digest[2:]}{'.x' if executable else ''}"
        src = name if objects_fd is not None else f"{self.objects}/{name}"
        try:
            if os.stat(src, dir_fd=objects_fd, follow_symlinks=False).st_nlink < 2:
                return False  # maybe a crash's unsynced leftover: never trusted
            os.link(src, dst, src_dir_fd=objects_fd, dst_dir_fd=dst_dir_fd,
                    follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno == errno.EMLINK:
                return False
            raise
        return True

    def add(self, digest: str, executable: bool, src: str) -> None:
        """Give the verified file `src` its store name (a hardlink), replacing an untrusted
        leftover of the same name; durable with the import's `syncfs`."""
        name = f"{digest[:2]}/{digest[2:]}{'.x' if executable else ''}"
        dst = f"{self.objects}/{name}"
        try:
            os.link(src, dst)
        except FileNotFoundError:
            os.makedirs(f"{self.objects}/{digest[:2]}", mode=0o755, exist_ok=True)
            os.link(src, dst)
        except FileExistsError:
            if os.path.samefile(src, dst):
                return
            # A name of its own: two imports of one content may replace at once.
            tmp = temp_name(self.objects / digest[:2], digest[2:])
            os.link(src, tmp)
            os.rename(tmp, dst)  # the leftover is replaced, never linked

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
