"""Versioned payload releases, built as hardlink trees into the object store.

Layout: `<releases_dir>/<release_id>/...` plus `<releases_dir>/current -> <release_id>`
(a relative link) and the object store `<releases_dir>/.store/` (see `store`). A release is
imported once: every listed file is opened by descriptor from the payload directory
(`safeopen`), and only a file whose (sha256, exec bit) the store does not hold yet is read,
hashed and written, in one pass; every other file is a hardlink to the object already
there. An upgrade starts from the spare copy of the current release (`spare`) and touches
only the files that differ. A release appears under its real name only complete and
durable: it is built in a TEMP_PREFIX directory, synced, then renamed in. A release that
is on disk is trusted as it is (read-only, root-owned, written only here): switching back
to it reads nothing. `pxhostctl verify` re-checks every installed file against its digest
and exec bit (its listing).
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import logging
import os
import stat
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pxhostd.errors import HostStateError, InvalidPayload
from pxhostd.failpoints import (
    DISABLED,
    MID_PRUNE,
    MID_RELEASE_REMOVE,
    Failpoints,
)
from pxhostd.hostfs import (
    TEMP_PREFIX,
    atomic_symlink,
    atomic_write,
    fsync_dir,
    remove_file,
    remove_tree,
    sweep_temp_files,
    temp_name,
)
from pxhostd.payload.filelist import FileList
from pxhostd.payload.listing import SUFFIX as LISTING_SUFFIX
from pxhostd.payload.listing import ListingError, fsync_file, read_listing
from pxhostd.payload.manifest import (
    MAX_MANIFEST_BYTES,
    PayloadHeader,
    parse_manifest_yaml,
)
from pxhostd.payload.objectcopy import have_syncfs, syncfs
from pxhostd.payload.safeopen import PayloadDir
from pxhostd.payload.spare import make_spare, spare_path, spares, take_for_spare
from pxhostd.payload.store import STORE_DIR, CollectResult, ObjectStore, Staging
from pxhostd.payload.treebuild import TreeBuilder

log = logging.getLogger(__name__)

CURRENT = "current"
_CHUNK = 1 << 20


def make_release_id(version: str, payload_digest: str) -> str:
    """Directory name of a release: readable version plus enough digest to be unique."""
    return f"{version}-{payload_digest[:12]}"


@dataclass(frozen=True)
class ReleaseMeta:
    """What is kept beside a release for the no-op and the switch back: its header and the
    sha256 of the payload.yaml it was imported from (its files are in its listing)."""

    header: PayloadHeader
    manifest_sha256: str


@dataclass(frozen=True)
class StageResult:
    release_id: str
    path: Path
    #: False when the release was already on disk (nothing read, nothing written).
    changed: bool
    #: Listed files, and how many of them were read, hashed and written (new objects).
    files: int = 0
    imported: int = 0
    #: Bytes read and written for the new objects.
    imported_bytes: int = 0


def _check_release_id(rid: str) -> None:
    if (
        not rid
        or rid in (CURRENT, ".", "..")
        or rid.startswith((".", TEMP_PREFIX))
        or "/" in rid
        or "\0" in rid
    ):
        raise HostStateError(f"not a valid release id: {rid!r}")


Files = Mapping[str, str] | Iterable[tuple[str, str]]


def _pairs(files: Files) -> Iterable[tuple[str, str]]:
    """The (path, sha256) pairs in path order; a FileList already is (and stays compact)."""
    if isinstance(files, FileList):
        return files
    return sorted(files.items() if isinstance(files, Mapping) else files)


class Releases:
    """The releases directory: import, switch, prune, collect, verify, remove."""

    #: `Releases.release_id(version, payload_digest)`, the directory name of a release.
    release_id = staticmethod(make_release_id)

    def __init__(self, releases_dir: Path, failpoints: Failpoints = DISABLED) -> None:
        self.releases_dir = releases_dir
        self.current_link = releases_dir / CURRENT
        self.failpoints = failpoints
        self.store = ObjectStore(releases_dir)

    def path(self, release_id: str) -> Path:
        _check_release_id(release_id)
        return self.releases_dir / release_id

    def exists(self, release_id: str) -> bool:
        p = self.path(release_id)
        return p.is_dir() and not p.is_symlink()

    # -- metadata ---------------------------------------------------------------------

    def _meta_path(self, release_id: str, suffix: str) -> Path:
        _check_release_id(release_id)
        return self.store.meta / f"{release_id}{suffix}"

    def header(self, release_id: str) -> PayloadHeader | None:
        """The release's PayloadHeader (small JSON); None if it has none (or it is bad)."""
        try:
            doc = json.loads(self._meta_path(release_id, ".json").read_bytes())
            return PayloadHeader.from_json(doc.get("header"))
        except (OSError, ValueError, AttributeError, InvalidPayload):
            return None

    def manifest_sha256(self, release_id: str) -> str | None:
        """sha256 of the payload.yaml the release was imported from (from its metadata)."""
        try:
            doc = json.loads(self._meta_path(release_id, ".json").read_bytes())
        except (OSError, ValueError):
            return None
        value = doc.get("manifest_sha256") if isinstance(doc, dict) else None
        return value if isinstance(value, str) else None

    def find(self, manifest_digest: str) -> str | None:
        """A release on disk imported from a payload.yaml with this sha256 (no parsing)."""
        for rid in self.list():
            if self.manifest_sha256(rid) == manifest_digest:
                return rid
        return None

    def _write_meta(self, release_id: str, meta: ReleaseMeta) -> None:
        """What the no-op and the switch back read: the header and payload.yaml's sha256.
        (The file list is the listing; releases imported before listings were kept have a
        `.yaml` copy of their payload.yaml instead, which `check` still reads.)"""
        doc = {"header": meta.header.to_json(), "manifest_sha256": meta.manifest_sha256}
        atomic_write(self._meta_path(release_id, ".json"),
                     json.dumps(doc, sort_keys=True) + "\n", 0o644)

    # -- importing ------------------------------------------------------------------------

    def stage(
        self,
        payload_dir: Path,
        release_id: str,
        files: Files,
        meta: ReleaseMeta | None = None,
    ) -> StageResult:
        """Import release `release_id` from `payload_dir`: (path, sha256) pairs, sorted.

        A release already on disk is returned as it is (`changed=False`), nothing read.
        """
        rid = release_id
        final = self.path(rid)
        if self.exists(rid):
            return StageResult(rid, final, changed=False)
        self._ensure_dir()
        self.sweep()  # what an earlier import left (a crash): its tree and staged objects
        self.store.ensure()
        tmp = temp_name(self.releases_dir, rid)
        listing = temp_name(self.store.meta, rid + LISTING_SUFFIX)
        staging = Staging(self.releases_dir)
        published = False
        try:
            counts = self._build(tmp, payload_dir, files, staging, listing)
            os.rename(listing, self.listing_path(rid))  # made durable by the syncfs below
            if meta is not None:
                self._write_meta(rid, meta)
            self._sync()  # every new object and the tree durable before any name below
            if staging.used:
                published = True
                self.store.publish(staging)
                staging.remove_emptied()
            if os.path.lexists(final):
                remove_file(final)  # not a directory: a stray file or link in the way
            os.rename(tmp, final)
            fsync_dir(self.releases_dir)
        except OSError as exc:
            self._discard(tmp, staging, published, listing)
            raise HostStateError(f"cannot stage release {rid}: {exc.strerror}") from exc
        except BaseException:
            self._discard(tmp, staging, published, listing)
            raise
        return StageResult(rid, final, True, *counts)

    def listing_path(self, release_id: str) -> Path:
        """The release's listing (`listing`): what its spare copy is made from."""
        return self._meta_path(release_id, LISTING_SUFFIX)

    def _discard(self, tmp: Path, staging: Staging, published: bool, listing: Path) -> None:
        """A failed import leaves nothing: its tree, its listing and its staged objects;
        once they were published (a failure in the last steps, rare), the ones no release
        links (link count 1 once the tree is gone: the whole store is scanned)."""
        remove_tree(tmp)
        remove_file(listing)
        staging.remove()
        if published:
            with contextlib.suppress(HostStateError):
                self.store.collect()

    def _sync(self) -> None:
        if not have_syncfs():
            return  # every object was fsynced as it was written
        fd = os.open(self.releases_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            syncfs(fd, str(self.releases_dir))
        finally:
            os.close(fd)

    def _ensure_dir(self) -> None:
        if self.releases_dir.is_dir():
            return
        try:
            self.releases_dir.mkdir(parents=True, exist_ok=True)
            fsync_dir(self.releases_dir.parent)
        except OSError as exc:
            raise HostStateError(f"cannot create {self.releases_dir}: {exc.strerror}") from exc

    def _build(
        self, tmp: Path, payload_dir: Path, files: Files, staging: Staging, listing: Path
    ) -> tuple[int, int, int]:
        """Build the tree at `tmp`: edited from the spare copy of the current release when
        there is one (only the files that differ are touched), else from nothing."""
        base = self.current()
        if base is not None and spare_path(self.store, base).is_dir():
            try:
                os.rename(spare_path(self.store, base), tmp)
            except OSError as exc:
                log.warning("cannot take the spare copy of release %s: %s", base,
                            exc.strerror)
            else:
                try:
                    return self._run_builder(tmp, payload_dir, files, staging, listing,
                                             base=base)
                except (OSError, ListingError) as exc:
                    reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                    log.warning("cannot edit the spare copy of release %s into the new "
                                "release (%s): building it from nothing", base, reason)
                    remove_tree(tmp)
        return self._run_builder(tmp, payload_dir, files, staging, listing, base=None)

    def _run_builder(
        self, tmp: Path, payload_dir: Path, files: Files, staging: Staging, listing: Path,
        *, base: str | None,
    ) -> tuple[int, int, int]:
        """One pass over the (sorted) file list, spread over a few threads (`treebuild`):
        each file kept from the copy, a link to a store object, or read, hashed, written
        and staged. Nothing per file is kept in memory."""
        with open(listing, "w", encoding="utf-8", newline="\n") as out:
            builder = TreeBuilder(
                tmp, payload_dir, self.store, staging, fsync_each=not have_syncfs(),
                failpoints=self.failpoints, listing=out,
                base=None if base is None else read_listing(self.listing_path(base)))
            counts = builder.build(_pairs(files))
            if not have_syncfs():
                fsync_file(out)
        if counts.reflinked:
            log.info("%d objects reflinked from the payload", counts.reflinked)
        if base is not None:
            log.info("built from the spare copy of release %s: %d of %d files kept as they "
                     "were", base, counts.kept, counts.files)
        return counts.files, counts.imported, counts.imported_bytes

    # -- verification ---------------------------------------------------------------------

    def verify(self, release_id: str, files: Files | None = None) -> bool:
        """True if the release holds exactly the listed files with the listed sha256."""
        return not self.check(release_id, files)

    def check(
        self, release_id: str, files: Files | None = None, *, at: Path | None = None,
        label: str | None = None,
    ) -> builtins.list[str]:
        """Every problem with an installed release (empty: it is intact), like `ostree fsck`.

        `files` defaults to the release's listing, which also gives each file's exec bit;
        `at` checks another tree against it (a spare copy), named `label` in the problems.
        Each file is read by descriptor, without following links; an inode shared by
        several paths is hashed once.
        """
        release = self.path(release_id) if at is None else at
        shown = label or release_id
        executable: dict[str, bool] | None = None
        if files is None:
            try:
                listed = builtins.list(read_listing(self.listing_path(release_id)))
            except FileNotFoundError:
                listed = None  # imported before listings were kept: its payload.yaml copy
            except (OSError, ListingError) as exc:
                return [f"{shown}: cannot read its listing: {exc}"]
            if listed is not None:
                files = [(rel, digest) for rel, digest, _x in listed]
                executable = {rel: x for rel, _digest, x in listed}
            else:
                try:
                    text = self._meta_path(release_id, ".yaml").read_bytes()
                except OSError:
                    return [f"{shown}: it has neither a listing nor a payload.yaml copy; "
                            "cannot verify"]
                files = parse_manifest_yaml(text[: MAX_MANIFEST_BYTES + 1]).files
        wanted = dict(_pairs(files))
        problems: builtins.list[str] = []
        if release.is_symlink() or not release.is_dir():
            return [f"{shown}: not a directory"]
        found: set[str] = set()
        for root, dirnames, filenames in os.walk(release):
            for name in dirnames + filenames:
                p = Path(root) / name
                if p.is_symlink() or not (p.is_dir() or p.is_file()):
                    problems.append(f"{shown}: {p.relative_to(release)} is not a plain "
                                    "file or directory")
            found.update((Path(root) / n).relative_to(release).as_posix() for n in filenames)
        for rel in sorted(found - set(wanted)):
            problems.append(f"{shown}: {rel} is not listed in payload.yaml")
        hashed: dict[tuple[int, int], str] = {}
        with PayloadDir(release) as tree:
            for rel in sorted(wanted):
                if rel not in found:
                    problems.append(f"{shown}: {rel} is missing")
                    continue
                try:
                    fd, st = tree.open(rel)
                except InvalidPayload as exc:
                    problems.append(f"{shown}: {exc}")
                    continue
                try:
                    key = (st.st_dev, st.st_ino)
                    if key not in hashed:
                        h = hashlib.sha256()
                        while chunk := os.read(fd, _CHUNK):
                            h.update(chunk)
                        hashed[key] = h.hexdigest()
                finally:
                    os.close(fd)
                if hashed[key] != wanted[rel].lower():
                    problems.append(f"{shown}: {rel} does not match its sha256 "
                                    f"({wanted[rel][:12]}...)")
                mode_x = bool(st.st_mode & stat.S_IXUSR)
                if executable is not None and mode_x != executable[rel]:
                    problems.append(f"{shown}: {rel} has mode "
                                    f"{stat.S_IMODE(st.st_mode):04o}, not the listed "
                                    f"{0o555 if executable[rel] else 0o444:04o}")
                if st.st_mode & 0o222:
                    problems.append(f"{shown}: {rel} is writable (mode "
                                    f"{stat.S_IMODE(st.st_mode):04o})")
        return problems

    def check_spares(self) -> builtins.list[str]:
        """Every problem with a spare copy (`spare`), which the next import would carry into
        a release; a damaged one is removed (the next collection makes it again)."""
        problems: builtins.list[str] = []
        for rid in spares(self.store):
            path = spare_path(self.store, rid)
            found = self.check(rid, at=path, label=f"the spare copy of {rid}")
            if found:
                remove_tree(path)
                problems += [*found, f"the spare copy of {rid}: removed"]
        return problems

    # -- the current link ----------------------------------------------------------------

    def current(self) -> str | None:
        """The release id `current` points at; None if there is no link."""
        try:
            target = os.readlink(self.current_link)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise HostStateError(
                f"{self.current_link} is not a symlink: {exc.strerror}"
            ) from exc
        try:
            _check_release_id(target)
        except HostStateError as exc:
            raise HostStateError(
                f"{self.current_link} points at {target!r}, not at a release id"
            ) from exc
        return target

    def switch(self, release_id: str) -> str | None:
        """Point `current` at the release atomically; return the release it pointed at."""
        if not self.exists(release_id):
            raise HostStateError(f"cannot switch to release {release_id}: it is not staged")
        previous = self.current()
        atomic_symlink(release_id, self.current_link)
        return previous

    def unlink_current(self) -> str | None:
        """Remove the `current` link durably (uninstall); return what it pointed at."""
        previous = self.current()
        remove_file(self.current_link)
        return previous

    # -- listing and removal ---------------------------------------------------------------

    def list(self) -> builtins.list[str]:
        """Staged release ids, sorted by name (temp leftovers and `current` excluded)."""
        if not self.releases_dir.is_dir():
            return []
        return sorted(
            e.name
            for e in self.releases_dir.iterdir()
            if e.name != CURRENT
            and not e.name.startswith(".")
            and e.is_dir()
            and not e.is_symlink()
        )

    def remove(self, release_id: str) -> bool:
        """Remove one release durably; refuses the current one. False if it was absent.

        Its objects stay in the store until `collect` (after the operation)."""
        if release_id == self.current():
            raise HostStateError(f"refusing to remove release {release_id}: it is current")
        return remove_tree(self.path(release_id))

    def collect(self) -> CollectResult:
        """Drop metadata of removed releases and every object no release links; then
        keep a spare copy of the current release for the next import (`spare`)."""
        self.sweep()
        # The spare first: it may be made from a copy of another release, whose objects
        # it holds until it is edited, and it needs that release's listing. A spare is
        # named only once durable, so without syncfs none is kept.
        make_spare(self.store, self.current(), self.listing_path,
                   self._sync if have_syncfs() else None, self.failpoints)
        self.store.forget_meta(set(self.list()))
        return self.store.collect()

    def prune(self, keep: Collection[str]) -> builtins.list[str]:
        """Remove every release not in `keep`, never the current one; return removed ids.
        (One of them may be moved aside as the copy the next spare is edited from.)"""
        current = self.current()
        removed: builtins.list[str] = []
        for rid in self.list():
            if rid in keep or rid == current:
                continue
            # The first one becomes the copy the collection edits into the current
            # release's spare (`spare`), when there is none and it has a listing.
            taken = (have_syncfs() and self.listing_path(rid).is_file()
                     and take_for_spare(self.store, self.path(rid), rid))
            if taken or remove_tree(self.path(rid)):
                removed.append(rid)
                self.failpoints.hit(MID_PRUNE)
        return removed

    def remove_all(self) -> builtins.list[str]:
        """Uninstall: drop `current`, every release and leftovers, then the directory."""
        if not self.releases_dir.is_dir():
            return []
        self.unlink_current()
        removed: builtins.list[str] = []
        for rid in self.list():
            if remove_tree(self.path(rid)):
                removed.append(rid)
                self.failpoints.hit(MID_RELEASE_REMOVE)
        self.sweep()
        remove_tree(self.releases_dir / STORE_DIR)
        with contextlib.suppress(OSError):
            self.releases_dir.rmdir()
            fsync_dir(self.releases_dir.parent)
        return removed

    def sweep(self) -> builtins.list[Path]:
        """Remove temp leftovers of interrupted staging, removal or link switches, and
        of a listing being written or a spare copy being made."""
        return [*sweep_temp_files(self.releases_dir), *sweep_temp_files(self.store.root),
                *sweep_temp_files(self.store.meta)]
