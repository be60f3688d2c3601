"""One new object: copied (or reflinked) and hashed in one pass; a wrong digest is refused."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pxhostd.errors import InvalidPayload
from pxhostd.payload import objectcopy
from pxhostd.payload.objectcopy import ObjectWriter


def write_from(src: Path, dst: Path, writer: ObjectWriter, expected: str) -> int:
    fd = os.open(src, os.O_RDONLY)
    try:
        return writer.write(fd, str(dst), "f", expected, 0o444)
    finally:
        os.close(fd)


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, (1 << 20) + 7, 3 << 20])
def test_copy_is_exact_hashed_and_read_only(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    src = tmp_path / "src"
    src.write_bytes(data)
    writer = ObjectWriter()
    assert write_from(src, tmp_path / "dst", writer, hashlib.sha256(data).hexdigest()) == size
    assert (tmp_path / "dst").read_bytes() == data
    assert os.stat(tmp_path / "dst").st_mode & 0o777 == 0o444


def test_a_wrong_digest_names_only_the_expected_one(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"tampered\n")
    with pytest.raises(InvalidPayload, match="sha256 mismatch") as info:
        write_from(src, tmp_path / "dst", ObjectWriter(), "a" * 64)
    assert hashlib.sha256(b"tampered\n").hexdigest()[:12] not in str(info.value)


def test_without_reflinks_the_writer_copies_and_stops_trying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def no_clone(fd: int, request: int, arg: int) -> None:
        calls.append(request)
        raise OSError(95, "Operation not supported")  # EOPNOTSUPP, as ext4 answers

    monkeypatch.setattr(objectcopy.fcntl, "ioctl", no_clone)
    writer = ObjectWriter()
    for n in range(3):
        src = tmp_path / f"src{n}"
        src.write_bytes(b"x" * n)
        write_from(src, tmp_path / f"dst{n}", writer, hashlib.sha256(b"x" * n).hexdigest())
    assert calls == [objectcopy.FICLONE] and not writer.reflink and writer.reflinked == 0


def test_a_reflinked_object_is_hashed_from_the_object_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is verified is what is stored: a clone is hashed by reading the clone."""

    def fake_clone(dst_fd: int, request: int, src_fd: int) -> None:
        os.write(dst_fd, b"what the clone holds")  # not what the source holds

    monkeypatch.setattr(objectcopy.fcntl, "ioctl", fake_clone)
    src = tmp_path / "src"
    src.write_bytes(b"source")
    writer = ObjectWriter()
    with pytest.raises(InvalidPayload, match="sha256 mismatch"):
        write_from(src, tmp_path / "dst", writer, hashlib.sha256(b"source").hexdigest())
    ok = tmp_path / "dst2"
    write_from(src, ok, writer, hashlib.sha256(b"what the clone holds").hexdigest())
    assert writer.reflinked == 2


def test_syncfs_is_there_and_flushes(tmp_path: Path) -> None:
    assert objectcopy.have_syncfs()
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        objectcopy.syncfs(fd, str(tmp_path))
    finally:
        os.close(fd)


def test_background_flush_syncs_each_time_enough_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writeback starts while an import still copies: one syncfs per `every` bytes, on its
    own thread; the thread is gone after close."""
    import threading

    calls: list[str] = []
    done = threading.Event()

    def syncfs(fd: int, shown: str) -> None:
        os.fstat(fd)  # a real descriptor of the directory
        calls.append(threading.current_thread().name)
        done.set()

    monkeypatch.setattr(objectcopy, "syncfs", syncfs)
    flush = objectcopy.BackgroundFlush(str(tmp_path), every=100)
    flush.wrote(60)
    assert not done.wait(0.2)  # below `every`: nothing yet
    flush.wrote(60)
    assert done.wait(10)
    flush.close()
    assert calls == ["pxhostd-flush"]
    assert not any(t.name == "pxhostd-flush" for t in threading.enumerate())
    assert flush.flushes == 1


def test_a_large_object_is_sent_to_the_disk_step_by_step_while_it_is_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(2 * objectcopy.WRITEBACK_STEP + 12345)
    src = tmp_path / "src"
    src.write_bytes(data)
    calls: list[tuple[int, int]] = []
    real = objectcopy.start_writeback

    def spy(fd: int, offset: int, length: int) -> None:
        calls.append((offset, length))
        real(fd, offset, length)  # the real system call, on the object being written

    monkeypatch.setattr(objectcopy, "start_writeback", spy)
    writer = ObjectWriter()
    writer.reflink = False
    write_from(src, tmp_path / "dst", writer, hashlib.sha256(data).hexdigest())
    step = objectcopy.WRITEBACK_STEP
    assert calls == [(0, step), (step, step)]  # the tail is the final syncfs's
    assert (tmp_path / "dst").read_bytes() == data
    # With an fsync per object (no syncfs), nothing is sent early.
    calls.clear()
    digest = hashlib.sha256(data).hexdigest()
    write_from(src, tmp_path / "dst2", ObjectWriter(fsync_each=True), digest)
    assert calls == []


def test_sync_file_range_is_there_and_accepts_a_range(tmp_path: Path) -> None:
    """The C library's sync_file_range, called as `start_writeback` calls it."""
    assert objectcopy._SYNC_FILE_RANGE is not None
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"x" * 65536)
        assert objectcopy._SYNC_FILE_RANGE(fd, 0, 65536, objectcopy.SYNC_FILE_RANGE_WRITE) == 0
        assert objectcopy._SYNC_FILE_RANGE(-1, 0, 1, objectcopy.SYNC_FILE_RANGE_WRITE) == -1
    finally:
        os.close(fd)
