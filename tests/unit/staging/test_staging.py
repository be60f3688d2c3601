"""Release staging on real files: verification, idempotence, replacement, switch, prune."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from payloadkit import write_payload

from pxhostd.errors import HostStateError, InvalidPayload
from pxhostd.hostfs import TEMP_PREFIX, remove_tree
from pxhostd.payload.staging import Releases, make_release_id


def make_payload(root: Path, version: str) -> tuple[Path, dict[str, str]]:
    """A small payload: an executable entry point, a data file, a nested file."""
    contents = {
        "bin/px": (f"#!/bin/sh\necho {version}\n".encode(), 0o755),
        "etc/defaults.json": (f'{{"version": "{version}"}}\n'.encode(), 0o644),
        "share/doc/a/b/README": (b"nested\n", 0o644),
    }
    payload = root / f"payload-{version}"
    return payload, write_payload(payload, contents)


def temp_leftovers(directory: Path) -> list[str]:
    return [e.name for e in directory.iterdir() if e.name.startswith(TEMP_PREFIX)]


@pytest.fixture
def releases(tmp_path: Path) -> Releases:
    return Releases(tmp_path / "opt" / "pwx" / "releases")


def test_release_id_is_version_and_short_digest() -> None:
    digest = "ab" * 32
    assert make_release_id("1.2.3", digest) == "1.2.3-abababababab"
    assert Releases.release_id("1.2.3", digest) == "1.2.3-abababababab"


def test_stage_copies_verifies_and_keeps_exec_bit(tmp_path: Path, releases: Releases) -> None:
    payload, files = make_payload(tmp_path, "1.0")
    result = releases.stage(payload, "1.0-aaa", files)
    assert result.changed
    assert result.path == releases.releases_dir / "1.0-aaa"
    assert (result.path / "bin/px").read_bytes() == (payload / "bin/px").read_bytes()
    assert os.stat(result.path / "bin/px").st_mode & stat.S_IXUSR
    assert not os.stat(result.path / "etc/defaults.json").st_mode & stat.S_IXUSR
    assert (result.path / "share/doc/a/b/README").read_bytes() == b"nested\n"
    assert releases.verify("1.0-aaa", files)
    assert releases.list() == ["1.0-aaa"]
    assert temp_leftovers(releases.releases_dir) == []


def test_stage_only_copies_listed_files(tmp_path: Path, releases: Releases) -> None:
    payload, files = make_payload(tmp_path, "1.0")
    (payload / "unlisted").write_text("not in the manifest")
    result = releases.stage(payload, "r1", files)
    assert not (result.path / "unlisted").exists()


def test_stage_mismatch_names_the_file_and_leaves_nothing(
    tmp_path: Path, releases: Releases
) -> None:
    payload, files = make_payload(tmp_path, "1.0")
    (payload / "etc/defaults.json").write_text("tampered\n")
    with pytest.raises(InvalidPayload, match=r"etc/defaults\.json.*sha256 mismatch"):
        releases.stage(payload, "r1", files)
    assert releases.list() == []
    assert temp_leftovers(releases.releases_dir) == []


def test_stage_missing_file_names_the_file(tmp_path: Path, releases: Releases) -> None:
    payload, files = make_payload(tmp_path, "1.0")
    (payload / "share/doc/a/b/README").unlink()
    with pytest.raises(InvalidPayload, match=r"share/doc/a/b/README.*missing"):
        releases.stage(payload, "r1", files)
    assert releases.list() == []
    assert temp_leftovers(releases.releases_dir) == []


@pytest.mark.parametrize("bad", ["../escape", "/etc/passwd", "a//b", "a/./b", ""])
def test_stage_refuses_unsafe_relative_paths(
    tmp_path: Path, releases: Releases, bad: str
) -> None:
    payload, files = make_payload(tmp_path, "1.0")
    with pytest.raises(InvalidPayload, match="not a plain relative path"):
        releases.stage(payload, "r1", {**files, bad: "0" * 64})
    assert not releases.releases_dir.exists() or releases.list() == []


@pytest.mark.parametrize("bad", ["current", ".hidden", "a/b", "..", TEMP_PREFIX + "x", ""])
def test_bad_release_ids_are_refused(tmp_path: Path, releases: Releases, bad: str) -> None:
    payload, files = make_payload(tmp_path, "1.0")
    with pytest.raises(HostStateError, match="not a valid release id"):
        releases.stage(payload, bad, files)


def test_stage_is_idempotent_and_writes_nothing_the_second_time(
    tmp_path: Path, releases: Releases
) -> None:
    payload, files = make_payload(tmp_path, "1.0")
    first = releases.stage(payload, "r1", files)
    inode = os.stat(first.path).st_ino
    mtimes = {rel: os.stat(first.path / rel).st_mtime_ns for rel in files}
    second = releases.stage(payload, "r1", files)
    assert not second.changed
    assert os.stat(second.path).st_ino == inode
    assert {rel: os.stat(first.path / rel).st_mtime_ns for rel in files} == mtimes


def test_stage_unchanged_even_when_the_payload_dir_is_gone(
    tmp_path: Path, releases: Releases
) -> None:
    payload, files = make_payload(tmp_path, "1.0")
    releases.stage(payload, "r1", files)
    remove_tree(payload)
    assert not releases.stage(payload, "r1", files).changed


@pytest.mark.parametrize("damage", ["content", "extra-file", "missing-file", "writable"])
def test_check_finds_every_kind_of_damage(
    tmp_path: Path, releases: Releases, damage: str
) -> None:
    payload, files = make_payload(tmp_path, "1.0")
    staged = releases.stage(payload, "r1", files).path
    assert releases.check("r1", files) == []
    target = staged / "etc/defaults.json"
    if damage == "content":
        target.chmod(0o644)
        target.write_text("tampered\n")
        target.chmod(0o444)
    elif damage == "extra-file":
        (staged / "bin/intruder").write_text("x")
    elif damage == "missing-file":
        target.unlink()
    else:
        target.chmod(0o666)
    problems = releases.check("r1", files)
    assert len(problems) == 1, problems
    assert not releases.verify("r1", files)


def test_check_by_the_listing_also_finds_a_changed_exec_bit(
    tmp_path: Path, releases: Releases
) -> None:
    payload, files = make_payload(tmp_path, "1.0")
    staged = releases.stage(payload, "r1", files).path
    assert releases.check("r1") == []  # no file list given: the release's own listing
    (staged / "etc/defaults.json").chmod(0o555)
    assert releases.check("r1") == [
        "r1: etc/defaults.json has mode 0555, not the listed 0444"]


def test_check_of_a_release_without_a_listing_reads_its_payload_yaml_copy(
    tmp_path: Path, releases: Releases
) -> None:
    """What a release imported before listings were kept has beside it instead."""
    payload, files = make_payload(tmp_path, "1.0")
    staged = releases.stage(payload, "r1", files).path
    releases.listing_path("r1").unlink()
    listed = "".join(f"  {rel}: {digest}\n" for rel, digest in sorted(files.items()))
    (releases.store.meta / "r1.yaml").write_text(
        f"name: px\nversion: '1.0'\nexec: [bin/px]\nfiles:\n{listed}")
    assert releases.check("r1") == []
    (staged / "etc/defaults.json").unlink()
    assert releases.check("r1") == ["r1: etc/defaults.json is missing"]
    (releases.store.meta / "r1.yaml").unlink()
    assert releases.check("r1") == [
        "r1: it has neither a listing nor a payload.yaml copy; cannot verify"]


def test_stage_of_a_release_on_disk_reads_nothing(tmp_path: Path, releases: Releases) -> None:
    """Switching back to a release still on disk never re-hashes it."""
    payload, files = make_payload(tmp_path, "1.0")
    releases.stage(payload, "r1", files)
    for rel in files:
        (payload / rel).unlink()  # reading any of them now would fail
    again = releases.stage(payload, "r1", files)
    assert not again.changed
    assert again.imported == 0


def test_a_file_in_the_way_of_a_release_is_replaced(tmp_path: Path, releases: Releases) -> None:
    payload, files = make_payload(tmp_path, "1.0")
    releases.releases_dir.mkdir(parents=True)
    (releases.releases_dir / "r1").write_text("junk")
    assert releases.stage(payload, "r1", files).changed
    assert releases.verify("r1", files)


def test_verify_rejects_symlinks_inside_a_release(tmp_path: Path, releases: Releases) -> None:
    payload, files = make_payload(tmp_path, "1.0")
    staged = releases.stage(payload, "r1", files).path
    (staged / "etc/defaults.json").unlink()
    (staged / "etc/defaults.json").symlink_to(payload / "etc/defaults.json")
    assert not releases.verify("r1", files)


def test_switch_returns_previous_and_link_is_relative(tmp_path: Path, releases: Releases) -> None:
    p1, f1 = make_payload(tmp_path, "1.0")
    p2, f2 = make_payload(tmp_path, "2.0")
    releases.stage(p1, "r1", f1)
    releases.stage(p2, "r2", f2)
    assert releases.current() is None
    assert releases.switch("r1") is None
    assert releases.switch("r2") == "r1"
    assert os.readlink(releases.current_link) == "r2"
    assert (releases.current_link / "bin/px").read_text() == "#!/bin/sh\necho 2.0\n"
    assert releases.switch("r2") == "r2"
    assert releases.list() == ["r1", "r2"]
    assert temp_leftovers(releases.releases_dir) == []


def test_switch_to_a_missing_release_fails_and_changes_nothing(
    tmp_path: Path, releases: Releases
) -> None:
    p1, f1 = make_payload(tmp_path, "1.0")
    releases.stage(p1, "r1", f1)
    releases.switch("r1")
    with pytest.raises(HostStateError, match="not staged"):
        releases.switch("r9")
    assert releases.current() == "r1"


def test_current_that_is_not_a_release_id_is_an_error(releases: Releases) -> None:
    releases.releases_dir.mkdir(parents=True)
    releases.current_link.symlink_to("/etc")
    with pytest.raises(HostStateError, match="not at a release id"):
        releases.current()


def test_prune_keeps_listed_and_current(tmp_path: Path, releases: Releases) -> None:
    for v in ("1.0", "2.0", "3.0", "4.0"):
        p, f = make_payload(tmp_path, v)
        releases.stage(p, f"r{v}", f)
    releases.switch("r4.0")
    removed = releases.prune(keep={"r2.0"})
    assert removed == ["r1.0", "r3.0"]
    assert releases.list() == ["r2.0", "r4.0"]
    assert releases.prune(keep=set()) == ["r2.0"]
    assert releases.list() == ["r4.0"]
    assert temp_leftovers(releases.releases_dir) == []


def test_remove_refuses_current(tmp_path: Path, releases: Releases) -> None:
    p, f = make_payload(tmp_path, "1.0")
    releases.stage(p, "r1", f)
    releases.switch("r1")
    with pytest.raises(HostStateError, match="current"):
        releases.remove("r1")
    assert releases.list() == ["r1"]


def test_remove_all_leaves_nothing(tmp_path: Path, releases: Releases) -> None:
    for v in ("1.0", "2.0"):
        p, f = make_payload(tmp_path, v)
        releases.stage(p, f"r{v}", f)
    releases.switch("r2.0")
    (releases.releases_dir / f"{TEMP_PREFIX}leftover").mkdir()
    assert releases.remove_all() == ["r1.0", "r2.0"]
    assert not releases.releases_dir.exists()
    assert releases.current() is None
    assert releases.list() == []
    assert releases.remove_all() == []


def test_sweep_removes_what_an_interrupted_removal_leaves(
    tmp_path: Path, releases: Releases
) -> None:
    p, f = make_payload(tmp_path, "1.0")
    releases.stage(p, "r1", f)
    # What remove_tree's first step leaves if the process dies during the rmtree.
    os.rename(releases.path("r1"), releases.releases_dir / f"{TEMP_PREFIX}r1.1.dead")
    assert releases.list() == []
    assert len(releases.sweep()) == 1
    assert [e.name for e in releases.releases_dir.iterdir()] == [".store"]


def test_releases_share_objects_and_an_upgrade_imports_only_what_changed(
    tmp_path: Path, releases: Releases
) -> None:
    payload, files = make_payload(tmp_path, "1.0")
    first = releases.stage(payload, "r1", files)
    assert (first.files, first.imported) == (3, 3)
    (payload / "etc/defaults.json").write_text("changed\n")
    files2 = {**files, "etc/defaults.json": hashlib.sha256(b"changed\n").hexdigest()}
    second = releases.stage(payload, "r2", files2)
    assert (second.files, second.imported, second.imported_bytes) == (3, 1, 8)
    r1, r2 = releases.path("r1"), releases.path("r2")
    assert os.stat(r1 / "bin/px").st_ino == os.stat(r2 / "bin/px").st_ino
    assert os.stat(r1 / "bin/px").st_nlink == 3  # two releases and the store
    assert os.stat(r1 / "etc/defaults.json").st_ino != os.stat(r2 / "etc/defaults.json").st_ino
    for rel in files:
        mode = stat.S_IMODE(os.stat(r2 / rel).st_mode)
        assert mode in (0o444, 0o555), (rel, oct(mode))
    assert releases.check("r1", files) == [] and releases.check("r2", files2) == []


def test_collect_removes_only_what_no_release_links(tmp_path: Path, releases: Releases) -> None:
    payload, files = make_payload(tmp_path, "1.0")
    releases.stage(payload, "r1", files)
    (payload / "etc/defaults.json").write_text("changed\n")
    files2 = {**files, "etc/defaults.json": hashlib.sha256(b"changed\n").hexdigest()}
    releases.stage(payload, "r2", files2)
    releases.switch("r2")
    assert releases.collect().objects == 0
    releases.prune(keep=set())
    result = releases.collect()
    assert (result.objects, result.bytes) == (1, len(b'{"version": "1.0"}\n'))
    assert releases.check("r2", files2) == []
    assert releases.collect().objects == 0


def test_a_failed_import_leaves_no_object_and_no_release(
    tmp_path: Path, releases: Releases
) -> None:
    payload, files = make_payload(tmp_path, "1.0")
    (payload / "share/doc/a/b/README").write_text("tampered\n")
    with pytest.raises(InvalidPayload) as info:
        releases.stage(payload, "r1", files)
    assert hashlib.sha256(b"tampered\n").hexdigest()[:12] not in str(info.value)
    assert releases.list() == []
    assert temp_leftovers(releases.releases_dir) == []
    assert [p for p in releases.store.objects.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("swap", ["symlink", "fifo"])
def test_a_file_swapped_between_stat_and_open_is_refused(
    tmp_path: Path, releases: Releases, monkeypatch: pytest.MonkeyPatch, swap: str
) -> None:
    """The race the descriptor-based import closes: lstat says file, open finds a link."""
    from pxhostd.payload import treebuild

    payload, files = make_payload(tmp_path, "1.0")
    secret = tmp_path / "secret"
    secret.write_bytes(b"root only\n")
    real_stat = treebuild._lstat

    def stat_then_swap(name: str, *, dir_fd: int, follow_symlinks: bool) -> os.stat_result:
        st = real_stat(name, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
        if name == "defaults.json":
            target = payload / "etc/defaults.json"
            target.unlink()
            if swap == "symlink":
                target.symlink_to(secret)
            else:
                os.mkfifo(target)
        return st

    monkeypatch.setattr(treebuild, "_lstat", stat_then_swap)
    with pytest.raises(InvalidPayload, match=r"etc/defaults\.json") as info:
        releases.stage(payload, "r1", files)
    assert hashlib.sha256(b"root only\n").hexdigest()[:12] not in str(info.value)
    assert releases.list() == []
    assert temp_leftovers(releases.releases_dir) == []


def store_names(releases: Releases) -> set[str]:
    objects = releases.store.objects
    return {p.relative_to(objects).as_posix() for p in objects.rglob("*") if p.is_file()}


def test_an_import_names_its_objects_in_the_store_only_after_its_syncfs(
    tmp_path: Path, releases: Releases, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store name is only ever given to durable content, so every name can be linked
    as it is: new objects wait in the import's staging directory until the syncfs."""
    from pxhostd.payload import staging as staging_module

    payload, files = make_payload(tmp_path, "1.0")
    releases.stage(payload, "r1", files)
    (payload / "etc/defaults.json").write_bytes(b"new\n")
    files["etc/defaults.json"] = hashlib.sha256(b"new\n").hexdigest()
    new_name = releases.store.path(files["etc/defaults.json"], False).relative_to(
        releases.store.objects).as_posix()
    seen: dict[str, object] = {}
    real_syncfs = staging_module.syncfs

    def syncfs(fd: int, shown: str) -> None:
        seen["store"] = store_names(releases)
        seen["staged"] = [p.relative_to(d).as_posix()
                          for d in releases.releases_dir.glob(f"{TEMP_PREFIX}objects*")
                          for p in d.rglob("*") if p.is_file()]
        real_syncfs(fd, shown)

    monkeypatch.setattr(staging_module, "syncfs", syncfs)
    result = releases.stage(payload, "r2", files)
    assert result.imported == 1
    assert new_name not in seen["store"]
    assert seen["staged"] == [new_name]
    assert new_name in store_names(releases)
    assert os.stat(releases.store.objects / new_name).st_ino == os.stat(
        result.path / "etc/defaults.json").st_ino
    assert temp_leftovers(releases.releases_dir) == []
    assert releases.verify("r2", files)


def test_what_an_interrupted_import_staged_never_reaches_the_store(
    tmp_path: Path, releases: Releases
) -> None:
    """A crash before the syncfs leaves a temp tree and a staging directory whose data may
    be lost: the next import sweeps both and imports its own verified copies."""
    payload, files = make_payload(tmp_path, "1.0")
    digest = files["bin/px"]
    releases.releases_dir.mkdir(parents=True)
    crashed = releases.releases_dir / f"{TEMP_PREFIX}1.0-x.1.dead"
    staged = releases.releases_dir / f"{TEMP_PREFIX}objects.1.dead" / digest[:2]
    (crashed / "bin").mkdir(parents=True)
    staged.mkdir(parents=True)
    (crashed / "bin/px").write_bytes(b"lost")  # its data lost in the power cut
    os.link(crashed / "bin/px", staged / f"{digest[2:]}.x")
    result = releases.stage(payload, "r1", files)
    assert result.imported == 3
    assert temp_leftovers(releases.releases_dir) == []
    assert (result.path / "bin/px").read_bytes() == (payload / "bin/px").read_bytes()
    assert releases.verify("r1", files)


def test_a_failed_import_of_shared_objects_keeps_the_ones_releases_link(
    tmp_path: Path, releases: Releases
) -> None:
    payload, files = make_payload(tmp_path, "1.0")
    releases.stage(payload, "r1", files)
    before = sorted(p.name for p in releases.store.objects.rglob("*") if p.is_file())
    bad = dict(files, **{"share/doc/a/b/README": "f" * 64})
    with pytest.raises(InvalidPayload):
        releases.stage(payload, "r2", bad)
    after = sorted(p.name for p in releases.store.objects.rglob("*") if p.is_file())
    assert after == before
    assert releases.verify("r1", files)


def test_a_first_import_links_its_own_duplicates_once_per_exec_bit(
    tmp_path: Path, releases: Releases
) -> None:
    payload = tmp_path / "dup"
    files: dict[str, str] = {}
    for rel, mode in (("a/one", 0o644), ("a/two", 0o644), ("b/c/three", 0o644),
                      ("b/run", 0o755)):
        p = payload / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"same\n")
        p.chmod(mode)
        files[rel] = hashlib.sha256(b"same\n").hexdigest()
    result = releases.stage(payload, "1.0-dup", files)
    assert (result.files, result.imported) == (4, 2)  # one object per (content, exec bit)
    inodes = {rel: os.stat(result.path / rel).st_ino for rel in files}
    assert inodes["a/one"] == inodes["a/two"] == inodes["b/c/three"] != inodes["b/run"]
    assert os.stat(result.path / "a/one").st_nlink == 4  # three paths and the store name
    assert os.stat(result.path / "b/run").st_mode & stat.S_IXUSR
    assert releases.verify("1.0-dup", files)
