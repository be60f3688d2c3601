"""The spare: a hardlink copy of the current release, kept ready for the next import.

An upgrade usually changes a few files of tens of thousands. Building its tree from
nothing costs one `link` per file, whatever changed; starting from a copy of the current
release costs a `link` or `unlink` per file that differs. So after every operation, with
the service already running (the collection), pxhostd makes `.store/spare-<release>`: the
current release's tree, linked from the store by the release's listing, made durable, then
renamed in. The next import renames it to its own temp name and edits it into the new
release (`treebuild`); what a crash leaves is a temp name that is swept, and at worst the
next import builds from nothing. A spare holds only links to objects the current release
links too, so it never keeps an object alive that no release needs, and the store's
collection (link count 1) is unchanged by it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from pxhostd.failpoints import MID_SPARE, Failpoints
from pxhostd.hostfs import TEMP_PREFIX, fsync_dir, remove_tree, temp_name
from pxhostd.payload.listing import ListingError, read_listing
from pxhostd.payload.store import ObjectStore

log = logging.getLogger(__name__)

PREFIX = "spare-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def spare_path(store: ObjectStore, release_id: str) -> Path:
    return store.root / f"{PREFIX}{release_id}"


def remove_others(store: ObjectStore, keep: str | None) -> list[str]:
    """Remove every spare but the one of release `keep`: a spare of a release that is no
    longer current would hold its objects alive. Returns the release ids of those removed."""
    removed: list[str] = []
    if not store.root.is_dir():
        return removed
    for entry in sorted(store.root.iterdir()):
        if not entry.name.startswith(PREFIX) or entry.name.startswith(TEMP_PREFIX):
            continue
        rid = entry.name[len(PREFIX):]
        if rid != keep and remove_tree(entry):
            removed.append(rid)
    return removed


def make_spare(
    store: ObjectStore, release_id: str, listing: Path, sync: Callable[[], None],
    failpoints: Failpoints,
) -> bool:
    """Make the spare of `release_id` from its listing, unless it is there; False if it
    cannot be made (no listing: a release imported before listings were kept; an object
    missing). Never raises for that: a spare only saves time."""
    final = spare_path(store, release_id)
    if final.is_dir():
        return True
    tmp = temp_name(store.root, PREFIX + release_id)
    try:
        _link_tree(store, tmp, listing)
        failpoints.hit(MID_SPARE)  # whole, but neither durable nor named yet
        sync()  # every link durable before the name that says the copy is whole
        os.rename(tmp, final)
        fsync_dir(store.root)
    except (OSError, ListingError) as exc:
        remove_tree(tmp)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, FileNotFoundError) and exc.filename == str(listing):
            reason = "it has no listing"
        log.info("no spare copy of release %s kept: %s", release_id, reason)
        return False
    return True


def _link_tree(store: ObjectStore, tmp: Path, listing: Path) -> None:
    """Every listed file, a link to its store object; directories 0755."""
    entries = read_listing(listing)
    objects_fd = store.open_objects()
    if objects_fd is None:
        raise FileNotFoundError(2, "the store has no objects", str(store.objects))
    base = str(tmp)
    os.mkdir(base, 0o755)
    os.chmod(base, 0o755)
    made = {""}
    parent: str | None = None
    dfd = -1
    try:
        for rel, digest, executable in entries:
            here, _, name = rel.rpartition("/")
            if here != parent:
                if dfd >= 0:
                    os.close(dfd)
                    dfd = -1
                if here not in made:
                    have = ""
                    for part in here.split("/"):
                        have = f"{have}/{part}" if have else part
                        if have not in made:
                            with contextlib.suppress(FileExistsError):
                                os.mkdir(f"{base}/{have}", 0o755)
                                os.chmod(f"{base}/{have}", 0o755)
                            made.add(have)
                parent = here
                dfd = os.open(f"{base}/{here}" if here else base, _DIR_FLAGS)
            if not store.link_into(digest, executable, name, objects_fd=objects_fd,
                                   dst_dir_fd=dfd):
                raise FileNotFoundError(2, "its store object is missing", rel)
    finally:
        if dfd >= 0:
            os.close(dfd)
        os.close(objects_fd)
