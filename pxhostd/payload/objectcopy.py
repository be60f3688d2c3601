"""Writing one new store object: copied (or reflinked) and hashed in one pass, durable later.

Durability is batched, as OSTree does it: objects are written without an `fsync` each, and
one `syncfs(2)` on the releases filesystem makes all of them durable before a release that
links them gets its real name (docs/crash-safety.md says why that is safe). Where the C
library has no `syncfs`, every object is `fsync`ed as it is written instead.

Where the source lies on the same filesystem and the filesystem shares extents (btrfs,
XFS), the object is a reflink (`FICLONE`): no data is copied, and the object is hashed by
reading the object itself, so what is verified is what is stored. Elsewhere (ext4) the
source is read once into a reused buffer, hashed and written from that same buffer:
`copy_file_range` or `sendfile` would move the bytes without pxhostd seeing them, and
hashing them would then read every byte a second time.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import threading

from pxhostd.errors import HostStateError, InvalidPayload
from pxhostd.hostfs import write_all

#: linux/fs.h: _IOW(0x94, 9, int).
FICLONE = 0x40049409
_BUFFER = 1 << 20
#: What FICLONE answers when the filesystems or the kind of filesystem cannot share extents.
_NO_REFLINK = frozenset({errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL,
                         errno.ENOSYS, errno.EPERM})


def _load_libc(name: str) -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """A function of the C library already loaded into this process (no library search)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return getattr(libc, name)
    except (OSError, AttributeError, TypeError):
        return None


_SYNCFS = _load_libc("syncfs")
_SYNC_FILE_RANGE = _load_libc("sync_file_range")
if _SYNC_FILE_RANGE is not None:
    _SYNC_FILE_RANGE.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
#: linux/fs.h: start writeback of the range's dirty pages, wait for nothing.
SYNC_FILE_RANGE_WRITE = 2
#: A large object's pages are sent to the disk every this many bytes while it is copied.
WRITEBACK_STEP = 8 << 20


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing `length` bytes at `offset` of `fd` to the disk, and
    return at once: a large object's data is on its way while the rest of it is hashed
    and copied, so the import's final `syncfs` does not wait for all of it. A hint only
    (errors are the final `syncfs`'s to report)."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, length, SYNC_FILE_RANGE_WRITE)


def have_syncfs() -> bool:
    return _SYNCFS is not None


def syncfs(fd: int, shown: str) -> None:
    """Flush everything written on the filesystem of `fd` (one call for a whole import)."""
    if _SYNCFS is None:
        raise HostStateError(f"cannot sync {shown}: the C library has no syncfs")
    if _SYNCFS(fd) != 0:
        raise HostStateError(f"cannot sync {shown}: {os.strerror(ctypes.get_errno())}")


class ObjectWriter:
    """Copies verified files for one import; remembers whether reflinks work here."""

    def __init__(self, *, fsync_each: bool = False) -> None:
        self.fsync_each = fsync_each
        self.reflink = True
        self.reflinked = 0
        self._buf = bytearray(_BUFFER)

    def write(self, src_fd: int, dst: str, rel: str, expected: str, mode: int) -> int:
        """Create `dst` with the content of `src_fd`; InvalidPayload unless its sha256 is
        `expected`. The error names the expected digest only, never what was read."""
        dst_fd = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            if self.reflink and self._clone(src_fd, dst_fd):
                os.lseek(dst_fd, 0, os.SEEK_SET)  # a clone is hashed from itself
                digest, size = _hash_fd(dst_fd, self._buf, rel)
            else:
                digest, size = _hash_fd(src_fd, self._buf, rel, copy_to=dst_fd,
                                        writeback=not self.fsync_each)
            os.fchmod(dst_fd, mode)
            if self.fsync_each:
                os.fsync(dst_fd)
        finally:
            os.close(dst_fd)
        if digest != expected:
            raise InvalidPayload(
                f"payload file {rel}: sha256 mismatch (its content is not the one "
                f"payload.yaml lists, {expected[:12]}...)"
            )
        return size

    def _clone(self, src_fd: int, dst_fd: int) -> bool:
        try:
            fcntl.ioctl(dst_fd, FICLONE, src_fd)
        except OSError as exc:
            if exc.errno in _NO_REFLINK:
                self.reflink = False  # the same for every file of this import
                return False
            raise
        self.reflinked += 1
        return True


def _hash_fd(
    fd: int, buf: bytearray, rel: str, *, copy_to: int | None = None, writeback: bool = False
) -> tuple[str, int]:
    """sha256 and size of what `fd` reads from its offset on, written on to `copy_to` as it
    is hashed (one read of every byte); with `writeback`, each `WRITEBACK_STEP` written is
    sent to the disk at once (`start_writeback`)."""
    h = hashlib.sha256()
    view = memoryview(buf)
    size = 0
    sent = 0
    while True:
        try:
            n = os.readv(fd, [buf])
        except OSError as exc:
            raise InvalidPayload(f"payload file {rel} cannot be read: {exc.strerror}") from exc
        if not n:
            break
        chunk = view[:n]
        h.update(chunk)
        if copy_to is not None:
            write_all(copy_to, chunk)
        size += n
        if writeback and copy_to is not None and size - sent >= WRITEBACK_STEP:
            start_writeback(copy_to, sent, size - sent)
            sent = size
    return h.hexdigest(), size


#: Bytes an import writes between two background flushes.
FLUSH_BYTES = 64 << 20


class BackgroundFlush:
    """Writeback of what an import has written so far, while it still copies.

    The page cache would keep a whole payload dirty until the import's final `syncfs`
    (the kernel starts writing back only at a tenth of memory), so that call would write
    all of it while nothing else happens. Here a thread of its own calls `syncfs` each
    time another `FLUSH_BYTES` were written: the disk writes while the workers copy and
    hash, and the final call has only the rest left. Its errors are not reported here:
    the final `syncfs` reports them.
    """

    def __init__(self, directory: str, every: int = FLUSH_BYTES) -> None:
        self.every = every
        self._fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._pending = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self.flushes = 0
        self._thread = threading.Thread(target=self._run, name="pxhostd-flush", daemon=True)
        self._thread.start()

    def wrote(self, size: int) -> None:
        with self._lock:
            self._pending += size
            if self._pending < self.every:
                return
            self._pending = 0
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                syncfs(self._fd, "the releases filesystem")
                self.flushes += 1
            except HostStateError:
                pass  # the import's own syncfs reports it

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()
        os.close(self._fd)
