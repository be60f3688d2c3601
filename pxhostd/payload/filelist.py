"""A payload's file list in compact form: sorted paths and their digests as raw bytes.

A 100,000-entry manifest as a dict of strings, then a tuple of pairs, cost about 50 MB;
here it is the path strings and one 32-byte digest each (about 12 MB), built straight from
the parser's entries (yamlio's streamed mapping), never as a dict. It iterates as
(path, sha256 hex) pairs in path order, which is the order the import reads files in.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from collections.abc import Iterable, Iterator, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any, overload

from pxhostd.errors import InvalidPayload

_DIGEST = 32
_HEX_DIGITS = b"0123456789abcdef"
#: Entries per piece of the canonical JSON.
_PIECE = 4096


class FileList(Sequence[tuple[str, str]]):
    """(relative path, sha256 hex) pairs, sorted by path, each path once."""

    __slots__ = ("_digests", "_paths")

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        builder = FileListBuilder()
        for path, digest in pairs:
            builder.add(path, digest)
        self._paths, self._digests = builder.parts()

    @classmethod
    def _from_parts(cls, paths: list[str], digests: bytes) -> FileList:
        self = cls.__new__(cls)
        self._paths, self._digests = paths, digests
        return self

    def __len__(self) -> int:
        return len(self._paths)

    @overload
    def __getitem__(self, index: int) -> tuple[str, str]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[str, str]]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        return self._paths[index], self._digest_hex(index)

    def _digest_hex(self, i: int) -> str:
        return self._digests[i * _DIGEST:(i + 1) * _DIGEST].hex()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for start in range(0, len(self._paths), _PIECE):  # hex of a piece at a time
            paths = self._paths[start:start + _PIECE]
            hexes = self._digests[start * _DIGEST:(start + len(paths)) * _DIGEST].hex()
            yield from zip(paths, [hexes[i:i + 64] for i in range(0, len(hexes), 64)],
                           strict=True)

    def __contains__(self, item: object) -> bool:
        """`path in files`, or `(path, digest) in files`."""
        if isinstance(item, tuple) and len(item) == 2:
            return bool(self.get(item[0]) == item[1])
        return isinstance(item, str) and self.get(item) is not None

    def get(self, path: str) -> str | None:
        """The digest listed for `path`, None if it is not listed."""
        i = bisect.bisect_left(self._paths, path)
        if i < len(self._paths) and self._paths[i] == path:
            return self._digest_hex(i)
        return None

    def paths(self) -> Sequence[str]:
        return self._paths

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FileList):
            return self._paths == other._paths and self._digests == other._digests
        if isinstance(other, tuple | list):
            return list(self) == [tuple(p) for p in other]
        return NotImplemented

    def __hash__(self) -> int:
        return hash((len(self._paths), self._digests))

    def __repr__(self) -> str:
        return f"FileList({len(self)} files)"

    def canonical_json(self, h: hashlib._Hash) -> None:
        """Feed `json.dumps(dict(self), sort_keys=True, separators=(",", ":"),
        ensure_ascii=True)` into `h`, in pieces (never the whole text at once)."""
        h.update(b"{")
        for start in range(0, len(self._paths), _PIECE):
            paths = self._paths[start:start + _PIECE]
            hexes = self._digests[start * _DIGEST:(start + len(paths)) * _DIGEST].hex()
            text = ",".join([
                f'{encode_basestring_ascii(path)}:"{hexes[i:i + 64]}"'
                for i, path in zip(range(0, len(hexes), 64), paths, strict=True)
            ])
            h.update((("," if start else "") + text).encode())
        h.update(b"}")


class FileListBuilder:
    """Collects entries as the parser yields them; `finish` sorts and checks them."""

    def __init__(self) -> None:
        self._paths: list[str] = []
        self._digests = bytearray()
        self._sorted = True

    def __len__(self) -> int:
        return len(self._paths)

    def add(self, path: str, digest: str) -> None:
        """`digest` must be 64 lowercase hex digits (the manifest checks it first)."""
        try:
            raw = bytes.fromhex(digest)  # also takes spaces and capitals: checked below
        except ValueError:
            raw = b""
        if len(raw) != _DIGEST or raw.hex() != digest:
            raise InvalidPayload(f"payload.yaml files[{path!r}]: not a sha256 "
                                 "(64 lowercase hex digits)")
        if self._sorted and self._paths and path <= self._paths[-1]:
            self._sorted = False
        self._paths.append(path)
        self._digests += raw

    def extend(self, paths: list[str], digests: list[object]) -> bool:
        """`add` for a whole chunk of entries, checked in a few passes in C; False (and
        nothing added) if any digest is not 64 lowercase hex digits: the caller then adds
        them one by one, which names the entry."""
        if not digests or set(map(type, digests)) != {str}:
            return False
        texts: list[str] = digests  # type: ignore[assignment]
        if set(map(len, texts)) != {64}:
            return False
        joined = "".join(texts)
        if not joined.isascii() or joined.encode().translate(None, _HEX_DIGITS):
            return False
        # Strictly increasing (what a sorted manifest gives), else `parts` sorts.
        if self._sorted and not (
            (not self._paths or self._paths[-1] < paths[0])
            and paths == sorted(paths) and len(set(paths)) == len(paths)
        ):
            self._sorted = False
        self._paths.extend(paths)
        self._digests += bytes.fromhex(joined)
        return True

    def parts(self) -> tuple[list[str], bytes]:
        paths, digests = self._paths, bytes(self._digests)
        if self._sorted:
            return paths, digests  # strictly increasing: no path twice
        order = sorted(range(len(paths)), key=paths.__getitem__)
        paths = [paths[i] for i in order]
        digests = b"".join(digests[i * _DIGEST:(i + 1) * _DIGEST] for i in order)
        for a, b in itertools.pairwise(paths):
            if a == b:
                raise InvalidPayload(f"payload.yaml files: duplicate key {a!r}")
        return paths, digests

    def finish(self) -> FileList:
        """The checked list: each path once, and no path below another listed file."""
        paths, digests = self.parts()
        files = FileList._from_parts(paths, digests)
        # Every directory some path lies in, one level up at a time (set passes, not a
        # walk up from each of 100,000 paths); one that is also listed is a clash.
        parents: set[str] = set()
        level = {path.rpartition("/")[0] for path in paths}
        while level:
            level.discard("")
            level -= parents
            parents |= level
            level = {parent.rpartition("/")[0] for parent in level}
        clashes = parents.intersection(paths)
        if clashes:
            parent = min(clashes)
            below = next(p for p in paths if p.startswith(parent + "/"))
            raise InvalidPayload(
                f"payload.yaml files: {below!r} lies below the file {parent!r}")
        return files
