"""The listing kept beside each release: every file's path, sha256 and exec bit, in path order.

It is what lets the next import start from a copy of the release (`spare`) and touch only
the files that differ, without parsing the release's payload.yaml again (a 20,000-entry
manifest takes longer to parse than the listing takes to read) and without an `lstat` of
every file in the copy. One line per file, `<sha256><x or -><path>\\n`: a manifest path
holds no control character, so a newline always ends an entry. Written while the release
is built and read as a stream, so neither side holds the whole list.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

SUFFIX = ".files"
_DIGEST = 64


class ListingError(Exception):
    """A listing that is not one this module wrote (truncated or damaged)."""


def write_entry(out: TextIO, rel: str, digest: str, executable: bool) -> None:
    out.write(f"{digest}{'x' if executable else '-'}{rel}\n")


def read_listing(path: Path) -> Iterator[tuple[str, str, bool]]:
    """(path, sha256, exec bit) of every file, in path order; ListingError on a bad line.

    Raises OSError (FileNotFoundError for a release that has none) at the first `next`.
    """
    with open(path, encoding="utf-8", newline="\n") as f:
        previous = ""
        for line in f:
            if len(line) < _DIGEST + 3 or line[-1] != "\n" or line[_DIGEST] not in "x-":
                raise ListingError(f"{path}: a damaged entry: {line[:80]!r}")
            rel = line[_DIGEST + 1:-1]
            if rel <= previous:
                raise ListingError(f"{path}: entries out of order at {rel[:80]!r}")
            previous = rel
            yield rel, line[:_DIGEST], line[_DIGEST] == "x"


def fsync_file(out: TextIO) -> None:
    out.flush()
    os.fsync(out.fileno())


#: Sorts after every listed path (U+10FFFF is a noncharacter, which no path holds).
_END = "\U0010ffff"


class CopyCursor:
    """The listing of a tree that is being edited into another, read alongside the new
    tree's file list (both in path order). A file only the old tree has is unlinked as
    the new list passes it; `take` says what the old tree holds at a path the new list
    has. Without entries it is an empty tree: nothing to remove, nothing to take.

    FileNotFoundError from an unlink means the tree is not what its listing says; the
    callers then build from nothing.
    """

    def __init__(self, root: str, entries: Iterator[tuple[str, str, bool]] | None) -> None:
        self.root = root
        self._entries = iter(()) if entries is None else entries
        #: Files unlinked so far.
        self.removed = 0
        #: Directories a file was unlinked from (`remove_emptied_dirs` afterwards).
        self.emptied: set[str] = set()
        self.rel = _END
        self._object: tuple[str, bool] = ("", False)
        self._next()

    def _next(self) -> None:
        entry = next(self._entries, None)
        if entry is None:
            self.rel = _END
        else:
            self.rel, digest, executable = entry
            self._object = (digest, executable)

    def remove_before(self, rel: str) -> None:
        """Unlink every old file that sorts before `rel` (the new list has none of them)."""
        while self.rel < rel:
            self._unlink()

    def take(self, rel: str) -> tuple[str, bool] | None:
        """The old (sha256, exec bit) at `rel`, moving past it; None: the old tree has no
        file there (call `remove_before(rel)` first)."""
        if self.rel != rel:
            return None
        held = self._object
        entry = next(self._entries, None)  # `_next`, inline: once per file of an upgrade
        if entry is None:
            self.rel = _END
        else:
            self.rel, digest, executable = entry
            self._object = (digest, executable)
        return held

    def remove_rest(self) -> None:
        """Unlink every old file the new list did not reach."""
        while self.rel != _END:
            self._unlink()

    def _unlink(self) -> None:
        os.unlink(f"{self.root}/{self.rel}")
        self.emptied.add(self.rel.rpartition("/")[0])
        self.removed += 1
        self._next()
