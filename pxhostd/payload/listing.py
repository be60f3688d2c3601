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
