"""Crash-safe writes to host state, and the host-wide lock.

Every write that pxhostd makes to the host goes through here: a temp file in the same
directory, fsync, rename over the target, fsync the directory. A crash at any point leaves
either the old or the new content, never a torn file. Temp files carry a fixed prefix so
recovery can sweep leftovers (`sweep_temp_files`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import hashlib
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from pxhostd.errors import Busy, HostStateError

TEMP_PREFIX = ".pxhostd-tmp-"


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename or unlink inside it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write until every byte is out (a write may be short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> bool:
    """Write `data` to `path` atomically; return False (and touch nothing) if unchanged."""
    if isinstance(data, str):
        data = data.encode()
    try:
        if path.is_file() and path.read_bytes() == data:
            return False
    except OSError as exc:
        raise HostStateError(f"cannot read {path}: {exc.strerror}") from exc
    directory = path.parent
    tmp = directory / f"{TEMP_PREFIX}{path.name}.{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            write_all(fd, data)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        fsync_dir(directory)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise HostStateError(f"cannot write {path}: {exc.strerror}") from exc
    return True


def atomic_symlink(target: str, link: Path) -> bool:
    """Point `link` at `target` atomically (symlink to temp name, rename); False if already so."""
    with contextlib.suppress(OSError):
        if os.readlink(link) == target:
            return False
    tmp = link.parent / f"{TEMP_PREFIX}{link.name}.{os.getpid()}"
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(target, tmp)
        os.rename(tmp, link)
        fsync_dir(link.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise HostStateError(f"cannot switch link {link}: {exc.strerror}") from exc
    return True


def remove_file(path: Path) -> bool:
    """Unlink durably; False if it was not there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise HostStateError(f"cannot remove {path}: {exc.strerror}") from exc
    fsync_dir(path.parent)
    return True


def temp_name(directory: Path, stem: str) -> Path:
    """A fresh TEMP_PREFIX name in `directory`: what a crash leaves there is swept later."""
    return directory / f"{TEMP_PREFIX}{stem}.{os.getpid()}.{secrets.token_hex(4)}"


def remove_tree(path: Path) -> bool:
    """Remove a directory tree durably; False if it was not there.

    The tree is first renamed to a temp name (one atomic step, made durable), so a crash
    during the slow recursive delete leaves only a temp directory that `sweep_temp_files`
    removes, never a half-deleted tree under its real name.
    """
    if not os.path.lexists(path):
        return False
    if path.is_symlink() or not path.is_dir():
        return remove_file(path)
    doomed = temp_name(path.parent, path.name)
    try:
        os.rename(path, doomed)
        fsync_dir(path.parent)
        shutil.rmtree(doomed)
        fsync_dir(path.parent)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise HostStateError(f"cannot remove {path}: {exc.strerror}") from exc
    return True


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def make_dirs(root: str, rel_dir: str, made: set[str]) -> None:
    """mkdir every directory of `rel_dir` below `root` that is not in `made` (and add it),
    mode 0755 whatever the umask; one already there is left as it is (a file there fails
    the caller's next open of it)."""
    have = ""
    for part in rel_dir.split("/"):
        have = f"{have}/{part}" if have else part
        if have not in made:
            try:
                os.mkdir(f"{root}/{have}", 0o755)
            except FileExistsError:
                pass
            else:
                os.chmod(f"{root}/{have}", 0o755)
            made.add(have)


def remove_emptied_dirs(root: str, rel_dirs: set[str]) -> None:
    """rmdir each of `rel_dirs` below `root` that files were removed from, deepest first,
    and its parents, while they are empty; the first one not empty ends its chain."""
    for here in sorted(rel_dirs, key=lambda d: d.count("/"), reverse=True):
        while here:
            try:
                os.rmdir(f"{root}/{here}")
            except OSError:
                break  # not empty (or gone with a deeper one): the rest is needed
            here = here.rpartition("/")[0]


def exchange_paths(a: Path, b: Path) -> None:
    """Swap two existing paths in one atomic step (renameat2 RENAME_EXCHANGE), then fsync.

    Replacing a non-empty directory cannot be done with rename(2); an exchange never leaves
    a moment where neither version is in place. Both paths must be in the same filesystem.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = libc.renameat2
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    renameat2.restype = ctypes.c_int
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        raise HostStateError(f"cannot exchange {a} and {b}: {os.strerror(err)}")
    fsync_dir(a.parent)
    if b.parent != a.parent:
        fsync_dir(b.parent)


def sweep_temp_files(directory: Path) -> list[Path]:
    """Remove temp files a crash left behind in `directory`; return what was removed."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        if entry.name.startswith(TEMP_PREFIX):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
            removed.append(entry)
    if removed:
        fsync_dir(directory)
    return removed


@contextlib.contextmanager
def host_lock(path: Path, *, wait: bool = True) -> Iterator[None]:
    """Hold the host-wide advisory lock (flock) that serialises every change to the host.

    The pod entrypoint takes the same lock (it enters the host mount namespace first), so a
    host change from the pod and one from the daemon never interleave.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise Busy(f"another process holds the host lock {path}") from exc
            raise
        yield
    finally:
        os.close(fd)


#: How often an event loop looks at a host lock someone else holds (seconds).
HOST_LOCK_POLL = 0.2


@contextlib.asynccontextmanager
async def host_lock_polled(path: Path, wait: float, hint: str = "") -> AsyncIterator[None]:
    """The host lock from an event loop (the daemon's and the pod's one way to take it).

    Polled without blocking, so the loop (status reads, signals, the health endpoint) stays
    live while another process holds it; Busy after `wait` seconds, HostStateError (with
    `hint` appended) when the lock file cannot be opened at all.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    held = contextlib.ExitStack()
    while True:
        try:
            held.enter_context(host_lock(path, wait=False))
            break
        except Busy:
            if loop.time() >= deadline:
                raise Busy(f"the host lock {path} stayed taken for {wait:g} s") from None
        except OSError as exc:
            raise HostStateError(f"cannot take the host lock {path}: {exc.strerror}{hint}") from exc
        await asyncio.sleep(HOST_LOCK_POLL)
    with held:
        yield
