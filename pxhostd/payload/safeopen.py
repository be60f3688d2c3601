"""Reading a payload directory that someone else may be changing under us.

Every file is reached from the payload root's directory fd, one path component at a time,
with `O_NOFOLLOW` (`O_DIRECTORY` for directories, `O_NONBLOCK` for files), and checked with
`fstat` on the descriptor that is then read: a component swapped for a symlink, a FIFO, a
device or a socket is an `InvalidPayload` at once, and what is hashed is what is copied.
Like rpm-ostree and fwupd, pxhostd also refuses a payload that anyone but root could change
(a file or directory not owned by root, or writable by group or others).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path
from types import TracebackType

from pxhostd.errors import InvalidPayload

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _within(rel_dir: str, top: str) -> bool:
    return top == "" or rel_dir == top or rel_dir.startswith(top + "/")


def trusted_owners() -> frozenset[int]:
    """Who may own payload files: root (and the daemon's own user, which is root)."""
    return frozenset({0, os.geteuid()})


def check_trusted(st: os.stat_result, shown: str, owners: frozenset[int]) -> None:
    """Refuse a payload entry that anyone but root could change."""
    if st.st_uid not in owners:
        raise InvalidPayload(
            f"payload: {shown} is owned by uid {st.st_uid}, not by root; only root may be "
            f"able to change a payload (fix: chown -R root:root on the payload directory)"
        )
    if st.st_mode & 0o022:
        raise InvalidPayload(
            f"payload: {shown} is writable by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); only root may be able to change a payload "
            f"(fix: chmod -R go-w on the payload directory)"
        )


class PayloadDir:
    """A payload directory opened once; everything below it is reached by descriptor.

    Files should be visited in sorted path order: the directories on the way are kept open
    as a stack, so each is opened (and checked) once and at most one path's worth of
    descriptors is held.
    """

    def __init__(self, root: Path, owners: frozenset[int] | None = None) -> None:
        self.root = root
        self.owners = trusted_owners() if owners is None else owners
        try:
            fd = os.open(root, _DIR_FLAGS)
        except FileNotFoundError:
            raise InvalidPayload(f"payload: {root} does not exist (is not a directory)") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InvalidPayload(
                    f"payload: {root} is not a directory (symbolic links are not followed)"
                ) from None
            raise InvalidPayload(f"payload: cannot open {root}: {exc.strerror}") from None
        try:
            check_trusted(os.fstat(fd), f"the directory {root}", self.owners)
        except BaseException:
            os.close(fd)
            raise
        self._root_fd = fd
        #: (relative directory, fd) from the root down; [0] is the root.
        self._stack: list[tuple[str, int]] = [("", fd)]

    def __enter__(self) -> PayloadDir:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        while self._stack:
            os.close(self._stack.pop()[1])

    def _dir_fd(self, rel_dir: str) -> int:
        """The fd of directory `rel_dir` ("" = root), opening what lies between."""
        while not _within(rel_dir, self._stack[-1][0]):
            os.close(self._stack.pop()[1])  # the root ("") is within everything: never popped
        have = self._stack[-1][0]
        rest = rel_dir[len(have):].lstrip("/")
        for part in rest.split("/") if rest else ():
            path = f"{have}/{part}" if have else part
            parent = self._stack[-1][1]
            try:
                fd = os.open(part, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                raise InvalidPayload(f"payload: directory {path!r} is missing") from None
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    st = os.stat(part, dir_fd=parent, follow_symlinks=False)
                    raise InvalidPayload(
                        f"payload: {path!r} is {_kind(st.st_mode)}, expected a directory"
                    ) from None
                raise InvalidPayload(f"payload: cannot open {path!r}: {exc.strerror}") from None
            self._stack.append((path, fd))
            check_trusted(os.fstat(fd), f"directory {path!r}", self.owners)
            have = path
        return self._stack[-1][1]

    def _split(self, rel: str) -> tuple[int, str]:
        parent, _, name = rel.rpartition("/")
        top = self._stack[-1]
        if parent == top[0]:
            return top[1], name  # the directory of the file before (sorted order)
        return self._dir_fd(parent), name

    def stat(self, rel: str) -> os.stat_result:
        """lstat of a listed file: it must be a regular file root controls (nothing read)."""
        dfd, name = self._split(rel)
        return stat_at(dfd, name, rel, self.root, self.owners)

    def open(self, rel: str, before: os.stat_result | None = None) -> tuple[int, os.stat_result]:
        """Open a listed file for reading: (fd, fstat of that fd). The caller closes fd.

        `before` is this object's `stat(rel)` if the caller already has it: the file opened
        must still be that inode."""
        if before is None:
            before = self.stat(rel)
        dfd, name = self._split(rel)
        return open_at(dfd, name, rel, before, self.root, self.owners)

    def dir_fd(self, rel_dir: str) -> int:
        """A descriptor of directory `rel_dir` of the payload, checked on the way like every
        other; the caller owns (and closes) it, so another thread may use it with
        `stat_at` / `open_at` while this object moves on."""
        return os.dup(self._dir_fd(rel_dir))

    def read(self, rel: str, max_bytes: int) -> bytes:
        """A small listed file's whole content (the manifest), read through one fd."""
        fd, st = self.open(rel)
        try:
            if st.st_size > max_bytes:
                raise InvalidPayload(
                    f"payload: {rel} is too large ({st.st_size} bytes, at most {max_bytes})"
                )
            chunks: list[bytes] = []
            size = 0
            while size <= max_bytes:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except OSError as exc:
            raise InvalidPayload(f"payload: cannot read {rel}: {exc.strerror}") from None
        finally:
            os.close(fd)
        if size > max_bytes:
            raise InvalidPayload(f"payload: {rel} is too large (more than {max_bytes} bytes)")
        return b"".join(chunks)


def _missing(rel: str, root: Path) -> InvalidPayload:
    if rel == "payload.yaml":
        return InvalidPayload(f"payload.yaml: {root / rel} does not exist")
    return InvalidPayload(f"payload: file {rel!r} listed in payload.yaml is missing")


def stat_at(
    dfd: int, name: str, rel: str, root: Path, owners: frozenset[int]
) -> os.stat_result:
    """lstat of listed file `rel` (`name` in directory `dfd` of payload `root`): a regular
    file root controls (nothing read)."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        raise _missing(rel, root) from None
    except OSError as exc:
        raise InvalidPayload(f"payload: cannot read {rel!r}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidPayload(
            f"payload: {rel!r} is {_kind(st.st_mode)}; a payload lists regular files only"
        )
    if st.st_uid not in owners or st.st_mode & 0o022:
        check_trusted(st, repr(rel), owners)  # raises, naming the file
    return st


def open_at(
    dfd: int, name: str, rel: str, before: os.stat_result, root: Path, owners: frozenset[int]
) -> tuple[int, os.stat_result]:
    """Open listed file `rel` for reading: (fd, its fstat); it must still be the inode
    `before` (its `stat_at`). The caller closes fd."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dfd)
    except FileNotFoundError:
        raise _missing(rel, root) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidPayload(
                f"payload: {rel!r} is a symbolic link; a payload lists regular files only"
            ) from None
        raise InvalidPayload(f"payload: cannot read {rel!r}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidPayload(
                f"payload: {rel!r} is {_kind(st.st_mode)}; a payload lists regular files only"
            )
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            raise InvalidPayload(f"payload: {rel!r} was replaced while it was being read")
        check_trusted(st, repr(rel), owners)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


class HashingReader:
    """A listed file read in pieces (libyaml's parser pulls them), hashed as it goes and
    capped at `max_bytes`: a 10 MB manifest is parsed without ever being one bytes object."""

    def __init__(self, fd: int, rel: str, max_bytes: int) -> None:
        self.fd = fd
        self.rel = rel
        self.max_bytes = max_bytes
        self.size = 0
        self._hash = hashlib.sha256()

    def read(self, size: int = 1 << 16) -> bytes:
        try:
            chunk = os.read(self.fd, max(1, min(size, 1 << 20)))
        except OSError as exc:
            raise InvalidPayload(f"payload: cannot read {self.rel}: {exc.strerror}") from None
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise InvalidPayload(
                f"payload: {self.rel} is too large (more than {self.max_bytes} bytes)")
        self._hash.update(chunk)
        return chunk

    def drain(self) -> None:
        while self.read():
            pass

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        os.close(self.fd)
