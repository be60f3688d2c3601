"""The spare: a hardlink copy of the current release, kept ready for the next import.

An upgrade usually changes a few files of tens of thousands. Building its tree from
nothing costs one `link` per file, whatever changed; starting from a copy of the current
release costs a `link` or `unlink` per file that differs. So after every operation, with
the service already running (the collection), pxhostd makes `.store/spare-<release>`: the
current release's tree, made durable, then renamed in. The next import renames it to its
own temp name and edits it into the new release (`treebuild`); what a crash leaves is a
temp name that is swept, and at worst the next import builds from nothing.

The spare itself is made the same way, by editing what is at hand: the spare of a release
that is no longer current (after a switch back), or the release the collection prunes
(`Releases.prune` moves it here instead of deleting 20,000 files), edited by the two
listings into the current release's tree; from nothing only after a first install. A spare
of any release but the current one is edited or removed before the store's collection, so
a spare never keeps an object alive that no release links, and the collection's rule (link
count 1) is unchanged by it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from pxhostd.failpoints import MID_SPARE, Failpoints
from pxhostd.hostfs import fsync_dir, make_dirs, remove_emptied_dirs, remove_tree, temp_name
from pxhostd.payload.listing import CopyCursor, ListingError, read_listing
from pxhostd.payload.store import ObjectStore

log = logging.getLogger(__name__)

PREFIX = "spare-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Listings = Callable[[str], Path]


def spare_path(store: ObjectStore, release_id: str) -> Path:
    return store.root / f"{PREFIX}{release_id}"


def spares(store: ObjectStore) -> list[str]:
    """Release ids that have a spare (whole ones: a spare being made has a temp name)."""
    if not store.root.is_dir():
        return []
    return sorted(e.name[len(PREFIX):] for e in store.root.iterdir()
                  if e.name.startswith(PREFIX) and e.is_dir() and not e.is_symlink())


def make_spare(
    store: ObjectStore, release_id: str | None, listing_of: Listings,
    sync: Callable[[], None] | None, failpoints: Failpoints,
) -> None:
    """Leave exactly one spare, the one of `release_id` (None, or `sync` None: leave none).

    A spare of another release is edited into it when both listings are there; anything
    else is removed. A spare that cannot be made (no listing: a release imported before
    listings were kept; an object missing) is logged, never raised: it only saves time.
    """
    others = [rid for rid in spares(store) if rid != release_id]
    if release_id is None or sync is None or spare_path(store, release_id).is_dir():
        for rid in others:
            remove_tree(spare_path(store, rid))
        return
    base: str | None = None
    tmp = temp_name(store.root, PREFIX + release_id)
    for rid in others:
        if base is None and listing_of(rid).is_file():
            with contextlib.suppress(OSError):
                os.rename(spare_path(store, rid), tmp)
                base = rid
                continue
        remove_tree(spare_path(store, rid))
    if base is not None:
        if _make(store, release_id, listing_of, sync, failpoints, tmp, base):
            return
        log.info("the spare copy of release %s could not be edited into release %s's; "
                 "making that one from nothing", base, release_id)
    _make(store, release_id, listing_of, sync, failpoints, tmp, None)


def _make(
    store: ObjectStore, release_id: str, listing_of: Listings, sync: Callable[[], None],
    failpoints: Failpoints, tmp: Path, base: str | None,
) -> bool:
    """Edit the copy of `base` at `tmp` (None: an empty tree) into `release_id`'s, make it
    durable and name it."""
    listing = listing_of(release_id)
    try:
        changed = _edit_tree(store, tmp, read_listing(listing),
                             None if base is None else read_listing(listing_of(base)))
        failpoints.hit(MID_SPARE)  # whole, but neither durable nor named yet
        sync()  # every link durable before the name that says the copy is whole
        os.rename(tmp, spare_path(store, release_id))
        fsync_dir(store.root)
    except (OSError, ListingError) as exc:
        remove_tree(tmp)
        if base is None:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if isinstance(exc, FileNotFoundError) and exc.filename == str(listing):
                reason = "it has no listing"
            log.info("no spare copy of release %s kept: %s", release_id, reason)
        return False
    if base is not None:
        log.info("spare copy of release %s edited from the one of %s: %d links changed",
                 release_id, base, changed)
    return True


def _edit_tree(
    store: ObjectStore, tmp: Path, target: Iterator[tuple[str, str, bool]],
    base: Iterator[tuple[str, str, bool]] | None,
) -> int:
    """Make the tree at `tmp` (the copy `base` lists; None: make it empty) hold exactly
    what `target` lists, every file a link to its store object, directories 0755. Returns
    the links made or removed."""
    objects_fd = store.open_objects()
    if objects_fd is None:
        raise FileNotFoundError(2, "the store has no objects", str(store.objects))
    root = str(tmp)
    if base is None:
        os.mkdir(root, 0o755)
        os.chmod(root, 0o755)
    copy = CopyCursor(root, base)
    made = {""}
    parent: str | None = None
    dfd = -1
    changed = 0
    try:
        for rel, digest, executable in target:
            copy.remove_before(rel)
            held = copy.take(rel)
            if held == (digest, executable):
                continue
            if held is not None:
                os.unlink(f"{root}/{rel}")
                changed += 1
            here, _, name = rel.rpartition("/")
            if here != parent:
                if dfd >= 0:
                    os.close(dfd)
                    dfd = -1
                if here not in made:
                    make_dirs(root, here, made)
                parent = here
                dfd = os.open(f"{root}/{here}" if here else root, _DIR_FLAGS)
            if not store.link_into(digest, executable, name, objects_fd=objects_fd,
                                   dst_dir_fd=dfd):
                raise FileNotFoundError(2, "its store object is missing", rel)
            changed += 1
        copy.remove_rest()
    finally:
        if dfd >= 0:
            os.close(dfd)
        os.close(objects_fd)
    remove_emptied_dirs(root, copy.emptied)
    return changed + copy.removed


def take_for_spare(store: ObjectStore, release_dir: Path, release_id: str) -> bool:
    """Move a release being pruned to `.store/spare-<id>` instead of deleting it, when no
    spare is there: the collection then edits it into the current release's spare, a few
    links instead of deleting 20,000 files and linking 20,000 again. False: not moved (the
    caller removes it)."""
    if spares(store):
        return False
    try:
        os.rename(release_dir, spare_path(store, release_id))
    except OSError:
        return False
    fsync_dir(release_dir.parent)
    fsync_dir(store.root)
    return True

