"""The release tree builder on real files, with its worker threads: the same tree as one
thread builds, duplicates imported once, errors in file order, nothing left after one."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest

from pxhostd.errors import InvalidPayload
from pxhostd.hostfs import TEMP_PREFIX
from pxhostd.payload import treebuild
from pxhostd.payload.objectcopy import ObjectWriter
from pxhostd.payload.staging import Releases
from pxhostd.payload.store import ObjectStore

#: Enough files for several batches in several directories.
DIRS = ("a", "b/c", "b/d", "e")
PER_DIR = 2 * treebuild.BATCH + 40


def write_payload(root: Path, *, same_content: bool = False) -> dict[str, str]:
    """Files in DIRS (every seventh one executable) plus one at the top."""
    files: dict[str, str] = {}
    entries = [f"{d}/f{i:04d}" for d in DIRS for i in range(PER_DIR)] + ["top"]
    for n, rel in enumerate(entries):
        data = b"same\n" if same_content else f"{rel}\n".encode() * (1 + n % 5)
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        p.chmod(0o755 if n % 7 == 0 else 0o644)
        files[rel] = hashlib.sha256(data).hexdigest()
    return files


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> int:
    """Three workers, whatever this machine's CPUs."""
    monkeypatch.setattr(treebuild, "default_workers", lambda: 3)
    return 3


def tree_of(root: Path) -> dict[str, tuple[bytes, int]]:
    out: dict[str, tuple[bytes, int]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
    return out


def test_workers_build_the_tree_one_thread_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = tmp_path / "payload"
    files = write_payload(payload)
    built = {}
    for count in (1, 3):
        monkeypatch.setattr(treebuild, "default_workers", lambda n=count: n)
        releases = Releases(tmp_path / f"releases-{count}")
        result = releases.stage(payload, "r1", files)
        assert (result.files, result.imported) == (len(files), len(files))
        built[count] = tree_of(result.path)
        for rel in ("a/f0000", "b/d/f0003", "top"):
            st = os.stat(result.path / rel)
            obj = releases.store.path(files[rel], bool(st.st_mode & stat.S_IXUSR))
            assert os.stat(obj).st_ino == st.st_ino  # the release file is its object
        assert releases.verify("r1", files)
    assert built[1] == built[3]
    assert built[3]["a/f0000"][1] == 0o555 and built[3]["a/f0001"][1] == 0o444
    assert {rel: data for rel, (data, _) in built[3].items()} == {
        rel: (payload / rel).read_bytes() for rel in files}


def test_new_content_is_written_on_workers_and_linked_on_the_calling_thread(
    tmp_path: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = tmp_path / "payload"
    files = write_payload(payload)
    releases = Releases(tmp_path / "releases")
    releases.stage(payload, "r1", files)
    (payload / "a" / "f0100").write_bytes(b"new in r2\n")
    files["a/f0100"] = hashlib.sha256(b"new in r2\n").hexdigest()
    writes: list[str] = []
    links: list[str] = []
    real_write, real_link = ObjectWriter.write, ObjectStore.link_into

    def write(self: ObjectWriter, *args: object, **kw: object) -> int:
        writes.append(threading.current_thread().name)
        return real_write(self, *args, **kw)  # type: ignore[arg-type]

    def link_into(self: ObjectStore, *args: object, **kw: object) -> bool:
        links.append(threading.current_thread().name)
        return real_link(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ObjectWriter, "write", write)
    monkeypatch.setattr(ObjectStore, "link_into", link_into)
    result = releases.stage(payload, "r2", files)
    assert (result.files, result.imported) == (len(files), 1)
    assert writes and all(name.startswith("pxhostd-import") for name in writes)
    assert len(links) == len(files)
    assert set(links) == {threading.current_thread().name}
    assert releases.verify("r2", files)


def test_one_content_in_many_batches_is_imported_once_per_exec_bit(
    tmp_path: Path, workers: int
) -> None:
    payload = tmp_path / "payload"
    files = write_payload(payload, same_content=True)
    releases = Releases(tmp_path / "releases")
    result = releases.stage(payload, "r1", files)
    assert (result.files, result.imported) == (len(files), 2)
    inodes = {os.stat(result.path / rel).st_ino for rel in files}
    assert len(inodes) == 2
    objects = [p for p in releases.store.objects.rglob("*") if p.is_file()]
    assert len(objects) == 2
    assert sorted(os.stat(p).st_nlink for p in objects) == sorted(
        [1 + sum(1 for n in range(len(files)) if n % 7 == 0),
         1 + sum(1 for n in range(len(files)) if n % 7)])


def test_the_first_bad_file_in_file_order_is_named_and_nothing_is_left(
    tmp_path: Path, workers: int
) -> None:
    payload = tmp_path / "payload"
    files = write_payload(payload)
    # A worker's error (content) before the calling thread's own (a missing file) ...
    (payload / "b/c/f0300").write_bytes(b"tampered\n")
    (payload / "e/f0010").unlink()
    releases = Releases(tmp_path / "releases")
    with pytest.raises(InvalidPayload, match=r"b/c/f0300: sha256 mismatch"):
        releases.stage(payload, "r1", files)
    assert releases.list() == []
    assert [e.name for e in releases.releases_dir.iterdir()
            if e.name.startswith(TEMP_PREFIX)] == []
    assert [p for p in releases.store.objects.rglob("*") if p.is_file()] == []
    # ... and the calling thread's error before a worker's.
    (payload / "a/f0001").unlink()
    with pytest.raises(InvalidPayload, match=r"'a/f0001' listed in payload.yaml is missing"):
        releases.stage(payload, "r1", files)
    assert releases.list() == []
    assert [p for p in releases.store.objects.rglob("*") if p.is_file()] == []


def test_a_bad_directory_after_a_bad_file_names_the_file(tmp_path: Path, workers: int) -> None:
    payload = tmp_path / "payload"
    files = write_payload(payload)
    (payload / "a/f0200").write_bytes(b"tampered\n")
    os.rename(payload / "e", tmp_path / "e-elsewhere")
    (payload / "e").symlink_to(tmp_path / "e-elsewhere")
    releases = Releases(tmp_path / "releases")
    with pytest.raises(InvalidPayload, match=r"a/f0200: sha256 mismatch"):
        releases.stage(payload, "r1", files)
    (payload / "a/f0200").write_bytes(b"a/f0200\n" * (1 + 200 % 5))
    with pytest.raises(InvalidPayload, match=r"'e' is a symbolic link"):
        releases.stage(payload, "r1", files)


@pytest.mark.parametrize("rel", ["", "/a", "a/", "a//b", ".", "..", "./a", "a/.", "a/..",
                                 "a/./b", "a/../b", "a\0b"])
def test_a_path_that_is_not_plain_is_refused(rel: str) -> None:
    with pytest.raises(InvalidPayload, match="not a plain relative path"):
        treebuild.check_rel_path(rel)


@pytest.mark.parametrize("rel", ["a", "a/b", ".a", "a/.b", "..a", "a/..b/c", "a."])
def test_a_plain_path_passes(rel: str) -> None:
    treebuild.check_rel_path(rel)


def test_an_object_linked_too_often_is_imported_again_and_replaces_the_store_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EMLINK (the filesystem's link limit) makes the import take a copy; publishing it
    replaces the store name, and the release that linked the old copy keeps it."""
    payload = tmp_path / "payload"
    files = write_payload(payload)
    releases = Releases(tmp_path / "releases")
    releases.stage(payload, "r1", files)
    names = {p.name for p in releases.store.objects.rglob("*") if p.is_file()}
    old_inode = os.stat(releases.path("r1") / "top").st_ino
    monkeypatch.setattr(ObjectStore, "link_into", lambda self, *a, **kw: False)
    result = releases.stage(payload, "r2", files)
    assert result.imported == len(files)
    assert {p.name for p in releases.store.objects.rglob("*") if p.is_file()} == names
    obj = releases.store.path(files["top"], False)
    assert os.stat(obj).st_ino == os.stat(result.path / "top").st_ino != old_inode
    assert os.stat(releases.path("r1") / "top").st_ino == old_inode
    assert [e.name for e in releases.releases_dir.iterdir()
            if e.name.startswith(TEMP_PREFIX)] == []
    assert releases.verify("r1", files) and releases.verify("r2", files)
