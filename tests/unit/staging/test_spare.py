"""The spare copy of the current release, and imports edited from it, on real files.

Whatever the spare's state, an import must end with exactly the tree a build from nothing
gives (same files, contents, modes, directories); only the work differs.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest
from payloadkit import write_payload

from pxhostd.errors import InvalidPayload
from pxhostd.hostfs import TEMP_PREFIX
from pxhostd.payload.listing import read_listing
from pxhostd.payload.spare import spare_path
from pxhostd.payload.staging import Releases

Tree = dict[str, tuple[str, int]]


def snapshot(tree: Path) -> Tree:
    """Every directory and file below `tree`: (content sha256 or 'dir', permission bits)."""
    out: Tree = {}
    for here, dirs, files in os.walk(tree):
        for name in dirs + files:
            p = Path(here) / name
            rel = p.relative_to(tree).as_posix()
            st = p.lstat()
            kind = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            out[rel] = (kind, st.st_mode & 0o7777)
    return out


V1: dict[str, tuple[bytes, int]] = {
    "bin/px": (b"#!/bin/sh\necho 1\n", 0o755),
    "bin/tool": (b"tool\n", 0o644),
    "etc/a.conf": (b"a=1\n", 0o644),
    "lib/old/gone/only.so": (b"removed in v2\n", 0o644),
    "lib/keep/one.so": (b"one\n", 0o644),
    "lib/keep/two.so": (b"two\n", 0o644),
    "share/x": (b"a file that becomes a directory\n", 0o644),
}
V2: dict[str, tuple[bytes, int]] = {
    "bin/px": (b"#!/bin/sh\necho 2\n", 0o755),  # new content
    "bin/tool": (b"tool\n", 0o755),  # same content, now executable
    "etc/a.conf": (b"a=1\n", 0o644),
    "etc/b.conf": (b"a=1\n", 0o644),  # a new path for known content
    "lib/keep/one.so": (b"one\n", 0o644),
    "lib/keep/two.so": (b"two\n", 0o644),
    "lib/new/deep/three.so": (b"three\n", 0o644),
    "share/x/inside": (b"now a directory\n", 0o644),
}


def install(releases: Releases, payload: Path, rid: str, files: dict[str, str]) -> None:
    releases.stage(payload, rid, files)
    releases.switch(rid)
    releases.collect()


def on_r1(tmp_path: Path, releases: Releases) -> tuple[dict[str, str], dict[str, str]]:
    """V1 installed as r1 (with its spare made), V2 written beside it: their file lists."""
    f1 = write_payload(tmp_path / "p1", V1)
    install(releases, tmp_path / "p1", "r1", f1)
    return f1, write_payload(tmp_path / "p2", V2)


def fresh_build(tmp_path: Path, payload: Path, files: dict[str, str]) -> Tree:
    other = Releases(tmp_path / "fresh" / "releases")
    return snapshot(other.stage(payload, "r", files).path)


@pytest.fixture
def releases(tmp_path: Path) -> Releases:
    return Releases(tmp_path / "releases")


def test_collect_keeps_a_spare_copy_of_the_current_release_sharing_its_inodes(
    tmp_path: Path, releases: Releases
) -> None:
    f1 = write_payload(tmp_path / "p1", V1)
    install(releases, tmp_path / "p1", "r1", f1)
    spare = spare_path(releases.store, "r1")
    assert snapshot(spare) == snapshot(releases.path("r1"))
    for rel in f1:
        assert (spare / rel).stat().st_ino == (releases.path("r1") / rel).stat().st_ino
    listed = list(read_listing(releases.listing_path("r1")))
    assert listed == sorted((rel, f1[rel], V1[rel][1] == 0o755) for rel in f1)
    assert releases.check("r1", f1) == []


def test_an_upgrade_edits_the_spare_into_exactly_the_tree_a_fresh_build_gives(
    tmp_path: Path, releases: Releases, caplog: pytest.LogCaptureFixture
) -> None:
    f1, f2 = on_r1(tmp_path, releases)
    r1_before = snapshot(releases.path("r1"))
    with caplog.at_level(logging.INFO, logger="pxhostd.payload.staging"):
        result = releases.stage(tmp_path / "p2", "r2", f2)
    assert "built from the spare copy of release r1: 3 of 8 files kept" in caplog.text
    # New objects: bin/px, three.so, share/x/inside, and bin/tool's content executable.
    assert result.imported == 4
    assert snapshot(result.path) == fresh_build(tmp_path, tmp_path / "p2", f2)
    assert not (result.path / "lib/old").exists()  # emptied directories go
    assert releases.check("r2", f2) == []
    assert snapshot(releases.path("r1")) == r1_before  # the release the spare copied
    assert releases.check("r1", f1) == []
    assert not spare_path(releases.store, "r1").exists()  # taken by the import
    releases.switch("r2")
    releases.collect()
    assert snapshot(spare_path(releases.store, "r2")) == snapshot(result.path)


def test_a_damaged_spare_is_dropped_and_the_release_built_from_nothing(
    tmp_path: Path, releases: Releases, caplog: pytest.LogCaptureFixture
) -> None:
    _, f2 = on_r1(tmp_path, releases)
    (spare_path(releases.store, "r1") / "lib/old/gone/only.so").unlink()
    with caplog.at_level(logging.WARNING):
        result = releases.stage(tmp_path / "p2", "r2", f2)
    assert "cannot edit the spare copy of release r1" in caplog.text
    assert snapshot(result.path) == fresh_build(tmp_path, tmp_path / "p2", f2)
    assert [e.name for e in releases.releases_dir.iterdir()
            if e.name.startswith(TEMP_PREFIX)] == []


def test_a_damaged_listing_is_refused_and_the_release_built_from_nothing(
    tmp_path: Path, releases: Releases, caplog: pytest.LogCaptureFixture
) -> None:
    _, f2 = on_r1(tmp_path, releases)
    listing = releases.listing_path("r1")
    listing.write_text(listing.read_text()[:100])  # cut mid-entry
    with caplog.at_level(logging.WARNING):
        result = releases.stage(tmp_path / "p2", "r2", f2)
    assert "a damaged entry" in caplog.text
    assert snapshot(result.path) == fresh_build(tmp_path, tmp_path / "p2", f2)


def test_a_directory_that_becomes_a_file_falls_back_to_a_fresh_build(
    tmp_path: Path, releases: Releases
) -> None:
    f1 = write_payload(tmp_path / "p1", V1)
    install(releases, tmp_path / "p1", "r1", f1)
    v3 = {rel: spec for rel, spec in V1.items() if not rel.startswith("lib/keep/")}
    v3["lib/keep"] = (b"a file where a directory was\n", 0o644)
    f3 = write_payload(tmp_path / "p3", v3)
    result = releases.stage(tmp_path / "p3", "r3", f3)
    assert snapshot(result.path) == fresh_build(tmp_path, tmp_path / "p3", f3)


def test_a_bad_payload_fails_as_it_would_and_leaves_nothing(
    tmp_path: Path, releases: Releases
) -> None:
    f1, f2 = on_r1(tmp_path, releases)
    (tmp_path / "p2" / "lib/new/deep/three.so").write_bytes(b"tampered\n")
    with pytest.raises(InvalidPayload, match=r"lib/new/deep/three\.so.*sha256 mismatch"):
        releases.stage(tmp_path / "p2", "r2", f2)
    assert releases.list() == ["r1"]
    assert [e.name for e in releases.releases_dir.iterdir()
            if e.name.startswith(TEMP_PREFIX)] == []
    assert not releases.listing_path("r2").exists()
    assert releases.check("r1", f1) == []
    releases.collect()  # the spare the failed import took is made again
    assert snapshot(spare_path(releases.store, "r1")) == snapshot(releases.path("r1"))


def test_a_spare_of_a_release_no_longer_current_goes_before_the_objects(
    tmp_path: Path, releases: Releases
) -> None:
    _, f2 = on_r1(tmp_path, releases)
    releases.stage(tmp_path / "p2", "r2", f2)
    releases.switch("r2")
    releases.prune({"r2"})
    releases.collect()
    assert sorted(e.name for e in releases.store.root.iterdir()
                  if e.name.startswith("spare-")) == ["spare-r2"]
    # No object outlives the releases (and spares) that link it.
    for obj in releases.store.objects.rglob("*"):
        assert obj.is_dir() or obj.stat().st_nlink > 1, obj


def test_what_an_interrupted_spare_left_is_swept_and_never_used(
    tmp_path: Path, releases: Releases
) -> None:
    f1 = write_payload(tmp_path / "p1", V1)
    releases.stage(tmp_path / "p1", "r1", f1)
    releases.switch("r1")
    half = releases.store.root / f"{TEMP_PREFIX}spare-r1.1234"
    (half / "bin").mkdir(parents=True)
    assert not spare_path(releases.store, "r1").exists()  # only a whole copy has the name
    f2 = write_payload(tmp_path / "p2", V2)
    result = releases.stage(tmp_path / "p2", "r2", f2)  # its sweep removes the leftover
    assert not half.exists()
    assert snapshot(result.path) == fresh_build(tmp_path, tmp_path / "p2", f2)


def test_a_release_without_a_listing_gets_no_spare_and_upgrades_as_before(
    tmp_path: Path, releases: Releases, caplog: pytest.LogCaptureFixture
) -> None:
    f1 = write_payload(tmp_path / "p1", V1)
    releases.stage(tmp_path / "p1", "r1", f1)
    releases.switch("r1")
    releases.listing_path("r1").unlink()  # imported by a pxhostd that kept none
    with caplog.at_level(logging.INFO):
        releases.collect()
    assert "no spare copy of release r1 kept: it has no listing" in caplog.text
    assert not spare_path(releases.store, "r1").exists()
    f2 = write_payload(tmp_path / "p2", V2)
    result = releases.stage(tmp_path / "p2", "r2", f2)
    assert snapshot(result.path) == fresh_build(tmp_path, tmp_path / "p2", f2)


def test_without_syncfs_no_spare_is_kept(
    tmp_path: Path, releases: Releases, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spare is named only once all of it is durable; with an fsync per object and no
    syncfs, nothing makes its links durable, so it is not made."""
    monkeypatch.setattr("pxhostd.payload.staging.have_syncfs", lambda: False)
    f1, f2 = on_r1(tmp_path, releases)
    assert releases.check("r1", f1) == []
    assert not spare_path(releases.store, "r1").exists()
    result = releases.stage(tmp_path / "p2", "r2", f2)
    assert snapshot(result.path) == fresh_build(tmp_path, tmp_path / "p2", f2)


def no_unreferenced_objects(releases: Releases) -> None:
    for obj in releases.store.objects.rglob("*"):
        assert obj.is_dir() or obj.stat().st_nlink > 1, obj


def test_the_pruned_release_is_edited_into_the_next_spare_not_deleted_and_linked_again(
    tmp_path: Path, releases: Releases, caplog: pytest.LogCaptureFixture
) -> None:
    _, f2 = on_r1(tmp_path, releases)
    releases.stage(tmp_path / "p2", "r2", f2)  # takes r1's spare
    releases.switch("r2")
    r1_tree = snapshot(releases.path("r1"))
    with caplog.at_level(logging.INFO):
        assert releases.prune({"r2"}) == ["r1"]
        assert releases.list() == ["r2"]
        assert snapshot(spare_path(releases.store, "r1")) == r1_tree  # moved, whole
        releases.collect()
    # V1 -> V2: bin/px and bin/tool unlinked and linked again (2 + 2), etc/b.conf linked
    # (1), lib/new/deep/three.so linked (1), lib/old/gone/only.so unlinked (1), share/x
    # unlinked and share/x/inside linked (2): 9 of 8 + 7 files.
    assert "spare copy of release r2 edited from the one of r1: 9 links changed" in caplog.text
    assert [e.name for e in releases.store.root.iterdir() if e.name.startswith("spare-")] == [
        "spare-r2"]
    assert snapshot(spare_path(releases.store, "r2")) == snapshot(releases.path("r2"))
    no_unreferenced_objects(releases)  # r1's own objects went in the same collection
    only_r1 = hashlib.sha256(V1["lib/old/gone/only.so"][0]).hexdigest()
    assert not releases.store.path(only_r1, False).exists()
    assert releases.check("r2", f2) == []


def on_r2_with_r1_kept(tmp_path: Path, releases: Releases) -> None:
    """V1 (without its file that V2 makes a directory) as r1, then V2 as r2, r1 kept."""
    f1 = write_payload(tmp_path / "p1", {k: v for k, v in V1.items() if k != "share/x"})
    install(releases, tmp_path / "p1", "r1", f1)
    f2 = write_payload(tmp_path / "p2", V2)
    releases.stage(tmp_path / "p2", "r2", f2)


def test_after_a_switch_back_the_other_spare_is_edited_into_the_current_ones(
    tmp_path: Path, releases: Releases, caplog: pytest.LogCaptureFixture
) -> None:
    on_r2_with_r1_kept(tmp_path, releases)
    releases.switch("r2")
    releases.collect()  # r1 kept: spare-r2 made from nothing
    assert snapshot(spare_path(releases.store, "r2")) == snapshot(releases.path("r2"))
    releases.switch("r1")  # the switch back: nothing imported
    with caplog.at_level(logging.INFO):
        releases.collect()
    assert "spare copy of release r1 edited from the one of r2" in caplog.text
    assert snapshot(spare_path(releases.store, "r1")) == snapshot(releases.path("r1"))
    assert not spare_path(releases.store, "r2").exists()
    no_unreferenced_objects(releases)


def test_a_damaged_copy_to_edit_is_dropped_and_the_spare_made_from_nothing(
    tmp_path: Path, releases: Releases, caplog: pytest.LogCaptureFixture
) -> None:
    on_r2_with_r1_kept(tmp_path, releases)
    releases.switch("r2")
    releases.collect()
    (spare_path(releases.store, "r2") / "bin/px").unlink()  # the edit replaces it
    releases.switch("r1")
    with caplog.at_level(logging.INFO):
        releases.collect()
    assert "could not be edited into release r1's; making that one from nothing" in caplog.text
    assert snapshot(spare_path(releases.store, "r1")) == snapshot(releases.path("r1"))
    assert [e.name for e in releases.store.root.iterdir()
            if e.name.startswith((TEMP_PREFIX, "spare-"))] == ["spare-r1"]


def test_verify_finds_a_damaged_spare_and_drops_it(tmp_path: Path, releases: Releases) -> None:
    """A spare is trusted as a release is (root's, read-only to the service), and the next
    import carries it into a release: verify checks it too."""
    on_r1(tmp_path, releases)
    assert releases.check_spares() == []
    (spare_path(releases.store, "r1") / "lib/keep/one.so").unlink()
    assert releases.check_spares() == ["the spare copy of r1: lib/keep/one.so is missing",
                                       "the spare copy of r1: removed"]
    assert not spare_path(releases.store, "r1").exists()
    releases.collect()  # made again
    assert snapshot(spare_path(releases.store, "r1")) == snapshot(releases.path("r1"))
