"""Building one release tree: every listed file a link to its trusted store object, or read,
verified and written as a new object by a few worker threads.

The calling thread walks the sorted file list directory by directory: it makes the
directory, `lstat`s each payload file and links every file whose object the store already
trusts, in order, as one pass. That pass is many short system calls, and it stays on one
thread on purpose: measured on 20,004 files, the same pass spread over two threads took
1.5x as long, each call's GIL hand-off costing more than the call. Files whose content is
new are collected per directory (up to `BATCH` at a time) and handed to a worker, with its
own descriptors of both directories and its own copy buffer: reading, sha256 and writing
run without the GIL, so on a fresh install the workers copy and hash side by side (one per
CPU, at most `MAX_WORKERS`). At most two batches per worker are in flight, so nothing per
file outlives them.

The tree may instead start as a copy of the current release (its spare, with that
release's listing as `base`): the walk then reads the listing alongside the file list,
leaves every file that has the same path, sha256 and exec bit as it is, unlinks the others
before linking or importing them anew, and unlinks what the new release does not list
(directories left empty go too). The payload is checked file by file either way. Each
file's listing entry is written as it is met (`listing`).

An error ends the build: no batch starts after it, every batch in flight is waited for,
and the error of the earliest failing file is raised, the one a single pass would have
named (the calling thread's own checks run in file order, and a worker's error is
reported before any later one). With one CPU, everything runs in the calling thread.

New objects are named in the import's `Staging` directory, not in the store: the store
only names durable content, and the import's objects become durable with its `syncfs`
(`Releases.stage` publishes them after it). A payload that holds one new content twice
imports it once: a later copy is linked from the staging directory, and a copy met while
its content is still being written by a worker is linked once every batch has finished.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pxhostd.errors import HostStateError, InvalidPayload
from pxhostd.failpoints import MID_STAGE, Failpoints
from pxhostd.hostfs import make_dirs, remove_emptied_dirs
from pxhostd.payload.filelist import FileList
from pxhostd.payload.listing import CopyCursor, write_entry
from pxhostd.payload.objectcopy import BackgroundFlush, ObjectWriter, have_syncfs
from pxhostd.payload.safeopen import PayloadDir, open_at, stat_at
from pxhostd.payload.store import ObjectStore, Staging, object_mode
from pxhostd.spec.rules import is_normalised

#: Files of one directory handed to a worker at once.
BATCH = 256
MAX_WORKERS = 4
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: The file type and the group and other write bits: S_IFREG alone is what a payload
#: file must show.
_KIND_AND_WRITE = stat.S_IFMT(0o177777) | 0o022
#: The walk's lstat (with dir_fd and follow_symlinks=False); a name of its own, for tests
#: that change the payload right after it.
_lstat = os.stat


def default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


def check_rel_path(rel: str) -> None:
    """Defence in depth: the manifest validator already refuses these."""
    if not rel or "\0" in rel or not is_normalised(rel):
        raise InvalidPayload(f"payload file path {rel!r} is not a plain relative path")


@dataclass(frozen=True)
class BuildCounts:
    #: Listed files, how many were read, hashed and written (new objects), their bytes.
    files: int
    imported: int
    imported_bytes: int
    reflinked: int
    #: Files the copy the tree was edited from already held as listed.
    kept: int = 0


@dataclass
class _Batch:
    """New objects of one directory, for a worker."""

    #: The payload directory's descriptor, the worker's own (it closes it).
    payload_fd: int
    #: (position in the list, name in its directory, path relative to the release, sha256,
    #: exec bit, the file's lstat); positions order the errors as a single pass meets them.
    entries: list[tuple[int, str, str, str, bool, os.stat_result]]


class _Skipped(Exception):
    """A batch not started because an earlier one had already failed."""


class _Failure(Exception):
    """An error and the position of the file it is about."""

    def __init__(self, position: int, error: BaseException) -> None:
        super().__init__(str(error))
        self.position = position
        self.error = error


class TreeBuilder:
    """Fills the (new) directory `tree` from `payload_dir` for one import."""

    def __init__(
        self,
        tree: Path,
        payload_dir: Path,
        store: ObjectStore,
        staging: Staging,
        *,
        fsync_each: bool,
        failpoints: Failpoints,
        base: Iterator[tuple[str, str, bool]] | None = None,
        listing: TextIO | None = None,
    ) -> None:
        self.tree = tree
        self.base = str(tree)
        self.payload_dir = payload_dir
        self.store = store
        self.staging = staging
        self.fsync_each = fsync_each
        self.failpoints = failpoints
        self.workers = default_workers()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._writers: list[ObjectWriter] = []
        self._objects_fd: int | None = None
        self._failed = threading.Event()
        self._owners: frozenset[int] = frozenset()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[tuple[Future[tuple[int, int]], _Batch]] = deque()
        #: (sha256, exec bit) of the new objects handed out and not yet written.
        self._claimed: set[tuple[str, bool]] = set()
        #: (path, sha256, exec bit): their content was being written when they were met.
        self._deferred: list[tuple[str, str, bool]] = []
        self._imported = 0
        self._size = 0
        self._error: _Failure | None = None
        self._flush: BackgroundFlush | None = None
        #: `base`: (path, sha256, exec bit) of the files `tree` already holds (a spare copy
        #: of the current release); None: `tree` is made empty.
        self._fresh = base is None
        self._copy = CopyCursor(self.base, base)
        #: Where every file's listing entry is written, in path order (`listing`).
        self._listing = listing
        self._kept = 0

    # -- the calling thread -----------------------------------------------------------------

    def build(self, pairs: Iterable[tuple[str, str]]) -> BuildCounts:
        """Link or import every (path, sha256) pair, in path order."""
        if self._fresh:
            os.mkdir(self.tree, 0o755)
            os.chmod(self.tree, 0o755)
        self._objects_fd = self.store.open_objects()
        try:
            with PayloadDir(self.payload_dir) as src:
                self._owners = src.owners
                if self.workers > 1:
                    self._pool = ThreadPoolExecutor(self.workers,
                                                    thread_name_prefix="pxhostd-import")
                try:
                    files = self._walk(pairs, src)
                except BaseException:
                    self._failed.set()
                    self._wait_all()
                    raise
                self._drain()
                self._link_deferred()
                remove_emptied_dirs(self.base, self._copy.emptied)  # as a fresh build has
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            if self._flush is not None:
                self._flush.close()
                self._flush = None
            if self._objects_fd is not None:
                os.close(self._objects_fd)
                self._objects_fd = None
        return BuildCounts(files, self._imported, self._size,
                           sum(w.reflinked for w in self._writers), self._kept)

    def _walk(self, pairs: Iterable[tuple[str, str]], src: PayloadDir) -> int:
        """The link pass, in file order; new content goes to `_hand_out`. Files seen."""
        made: set[str] = {""}
        parent: str | None = None
        pfd = dfd = -1
        new: list[tuple[int, str, str, str, bool, os.stat_result]] = []
        position = -1

        def hand_out_new() -> None:
            """The new content collected in the current directory goes to a worker."""
            nonlocal new
            if new:
                self._hand_out(_Batch(os.dup(pfd), new))
                new = []

        store, staging = self.store, self.staging
        root, owners = self.payload_dir, self._owners
        copy, listing = self._copy, self._listing
        # A FileList whose paths were all checked as plain when it was built (the common
        # case) needs no check per file.
        plain = isinstance(pairs, FileList) and pairs.plain
        lstat = _lstat
        try:
            for position, (rel, digest) in enumerate(pairs):
                try:
                    if not plain:
                        check_rel_path(rel)  # digests are lowercase hex (the manifest's rule)
                    if copy.rel < rel:  # in the copy, not in the new release
                        copy.remove_before(rel)
                    here, _, name = rel.rpartition("/")
                    if here != parent:
                        hand_out_new()
                        for fd in (pfd, dfd):
                            if fd >= 0:
                                os.close(fd)
                        pfd = dfd = -1
                        if here not in made:
                            make_dirs(self.base, here, made)
                        parent = here
                        pfd = src.dir_fd(here)
                        dfd = os.open(f"{self.base}/{here}" if here else self.base, _DIR_FLAGS)
                    # `stat_at`'s checks, inline for the common case (a root-owned regular
                    # file no one else may write); `stat_at` itself names what is wrong.
                    try:
                        st = lstat(name, dir_fd=pfd, follow_symlinks=False)
                    except OSError:
                        st = stat_at(pfd, name, rel, root, owners)
                    if st.st_mode & _KIND_AND_WRITE != stat.S_IFREG or st.st_uid not in owners:
                        st = stat_at(pfd, name, rel, root, owners)
                except InvalidPayload as exc:
                    raise _Failure(position, exc) from None
                executable = bool(st.st_mode & stat.S_IXUSR)
                if listing is not None:
                    write_entry(listing, rel, digest, executable)
                held = copy.take(rel) if copy.rel == rel else None
                if held is not None:  # the copy has this path: keep it if it is this object
                    if held == (digest, executable):
                        self._kept += 1
                        if position == 0:
                            self.failpoints.hit(MID_STAGE)
                        continue
                    os.unlink(name, dir_fd=dfd)
                objects_fd = self._objects_fd
                if (objects_fd is None or not store.link_into(
                        digest, executable, name, objects_fd=objects_fd, dst_dir_fd=dfd)) and (
                        not staging.used
                        or not staging.link_into(digest, executable, name, dfd)):
                    key = (digest, executable)
                    if key in self._claimed:
                        self._deferred.append((rel, digest, executable))
                        continue
                    self._claimed.add(key)
                    new.append((position, name, rel, digest, executable, st))
                    if len(new) >= BATCH:
                        hand_out_new()
                elif position == 0:
                    self.failpoints.hit(MID_STAGE)
                if self._error is not None:
                    break  # a worker failed: nothing after it matters
            if self._error is None:
                hand_out_new()
                copy.remove_rest()
        except _Failure as failure:
            self._record(failure)
        finally:
            for fd in (pfd, dfd):
                if fd >= 0:
                    os.close(fd)
        return position + 1

    def _link_deferred(self) -> None:
        """Link the files met while their content was being written (all of it is now)."""
        for rel, digest, executable in self._deferred:
            if not self.staging.link_into(digest, executable, f"{self.base}/{rel}"):
                raise HostStateError(f"the object of {rel} vanished from the import's "
                                     "staging directory while it was being imported")
        self._deferred.clear()

    def _hand_out(self, batch: _Batch) -> None:
        if self._flush is None and not self.fsync_each and have_syncfs():
            self._flush = BackgroundFlush(self.base)
        if self._pool is None:
            try:
                self._settle(self._run_batch(batch), batch)
            except _Failure as failure:
                self._record(failure)
            return
        self._pending.append((self._pool.submit(self._run_batch, batch), batch))
        while self._pending and (len(self._pending) >= 2 * self.workers
                                 or self._pending[0][0].done()):
            self._settle_oldest()

    def _settle(self, counts: tuple[int, int], batch: _Batch) -> None:
        self._imported += counts[0]
        self._size += counts[1]
        for _position, _name, _rel, digest, executable, _st in batch.entries:
            self._claimed.discard((digest, executable))

    def _record(self, failure: _Failure) -> None:
        self._failed.set()
        if self._error is None or failure.position < self._error.position:
            self._error = failure

    def _settle_oldest(self) -> None:
        fut, batch = self._pending.popleft()
        exc = fut.exception()
        if exc is None:
            self._settle(fut.result(), batch)
        elif isinstance(exc, _Failure):
            self._record(exc)
        elif not isinstance(exc, _Skipped):
            self._record(_Failure(-1, exc))  # not about one file (the disk, say): first

    def _wait_all(self) -> None:
        while self._pending:
            self._settle_oldest()

    def _drain(self) -> None:
        """Wait for every batch in flight; raise the earliest error (in file order)."""
        self._wait_all()
        if self._error is not None:
            error = self._error.error
            self._error = None
            raise error

    # -- the workers -------------------------------------------------------------------------

    def _writer(self) -> ObjectWriter:
        writer: ObjectWriter | None = getattr(self._local, "writer", None)
        if writer is None:
            writer = ObjectWriter(fsync_each=self.fsync_each)
            self._local.writer = writer
            with self._lock:
                self._writers.append(writer)
        return writer

    def _run_batch(self, batch: _Batch) -> tuple[int, int]:
        """Read, verify and write the batch's files as new objects: (count, bytes)."""
        pfd = batch.payload_fd
        try:
            if self._failed.is_set():
                raise _Skipped()
            staging, root, owners = self.staging, self.payload_dir, self._owners
            writer = self._writer()
            size = 0
            for position, name, rel, digest, executable, st in batch.entries:
                dst = f"{self.base}/{rel}"
                try:
                    fd, _st = open_at(pfd, name, rel, st, root, owners)
                    try:
                        written = writer.write(fd, dst, rel, digest, object_mode(executable))
                    finally:
                        os.close(fd)
                except InvalidPayload as exc:
                    raise _Failure(position, exc) from None
                size += written
                if self._flush is not None:
                    self._flush.wrote(written)
                staging.add(digest, executable, dst)
                if position == 0:
                    self.failpoints.hit(MID_STAGE)
            return len(batch.entries), size
        except BaseException:
            self._failed.set()
            raise
        finally:
            os.close(pfd)
