"""A payload's file list in compact form: sorted paths in one text, digests as raw bytes.

A 100,000-entry manifest as a dict of strings, then a tuple of pairs, cost about 50 MB;
a list of path strings and one 32-byte digest each, about 12 MB, in 100,000 small
objects, and the daemon kept some of their memory long after it had dropped them (small
objects share pages with whatever was allocated beside them). Here the paths are one
UTF-8 text, newline-separated (a manifest path holds no control character), with the end
offset of each; the three are large buffers that go back to the system whole when the
list is dropped. It is built straight from the parser's entries (yamlio's streamed
mapping), never as a dict, and iterates as (path, sha256 hex) pairs in path order (the
order the import reads files in), a piece at a time: only a piece's path strings exist
at once. UTF-8 byte order is code point order, so a lookup compares bytes.
"""

from __future__ import annotations

import hashlib
import itertools
from array import array
from collections.abc import Iterable, Iterator, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any, overload

from pxhostd.errors import InvalidPayload
from pxhostd.spec.rules import plain_rel_paths

_DIGEST = 32
_HEX_DIGITS = b"0123456789abcdef"
#: Entries per piece: what iteration, the canonical JSON and the checks take at once.
PIECE = 4096


class FileList(Sequence[tuple[str, str]]):
    """(relative path, sha256 hex) pairs, sorted by path, each path once."""

    __slots__ = ("_digests", "_ends", "_text", "plain")
    _text: bytes | bytearray
    _ends: array[int]
    _digests: bytes | bytearray
    #: Every path passed `rules.plain_rel_paths` as the list was built (what a generated
    #: manifest gives): the import and the canonical JSON need not look at each again.
    plain: bool

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        builder = FileListBuilder()
        for path, digest in pairs:
            builder.add(path, digest)
        self._text, self._ends, self._digests = builder.parts()
        self.plain = builder.plain

    @classmethod
    def _from_parts(
        cls, text: bytes | bytearray, ends: array[int], digests: bytes | bytearray,
        plain: bool = False,
    ) -> FileList:
        self = cls.__new__(cls)
        self._text, self._ends, self._digests = text, ends, digests
        self.plain = plain
        return self

    def __len__(self) -> int:
        return len(self._ends)

    @overload
    def __getitem__(self, index: int) -> tuple[str, str]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[str, str]]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._raw_path(index).decode(), self._digest_hex(index)

    def _start(self, i: int) -> int:
        return self._ends[i - 1] + 1 if i else 0

    def _raw_path(self, i: int) -> bytes | bytearray:
        return self._text[self._start(i):self._ends[i]]

    def _digest_hex(self, i: int) -> str:
        return self._digests[i * _DIGEST:(i + 1) * _DIGEST].hex()

    def pieces(self) -> Iterator[tuple[list[str], list[str]]]:
        """The paths and the sha256 hex digests of up to PIECE entries at a time."""
        for start in range(0, len(self), PIECE):
            stop = min(start + PIECE, len(self))
            paths = self._text[self._start(start):self._ends[stop - 1]].decode().split("\n")
            hexes = self._digests[start * _DIGEST:stop * _DIGEST].hex()
            yield paths, [hexes[i:i + 64] for i in range(0, len(hexes), 64)]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for paths, hexes in self.pieces():
            yield from zip(paths, hexes, strict=True)

    def paths(self) -> Iterator[str]:
        for paths, _hexes in self.pieces():
            yield from paths

    def __contains__(self, item: object) -> bool:
        """`path in files`, or `(path, digest) in files`."""
        if isinstance(item, tuple) and len(item) == 2:
            return bool(self.get(item[0]) == item[1])
        return isinstance(item, str) and self.get(item) is not None

    def get(self, path: str) -> str | None:
        """The digest listed for `path`, None if it is not listed."""
        try:
            wanted = path.encode()
        except UnicodeEncodeError:  # a lone surrogate: no listed path holds one
            return None
        lo, hi = 0, len(self)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._raw_path(mid) < wanted:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(self) and self._raw_path(lo) == wanted:
            return self._digest_hex(lo)
        return None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FileList):
            return (self._text == other._text and self._ends == other._ends
                    and self._digests == other._digests)
        if isinstance(other, tuple | list):
            return list(self) == [tuple(p) for p in other]
        return NotImplemented

    def __hash__(self) -> int:
        return hash((len(self), self._digests))

    def __repr__(self) -> str:
        return f"FileList({len(self)} files)"

    def canonical_json(self, h: hashlib._Hash) -> None:
        """Feed `json.dumps(dict(self), sort_keys=True, separators=(",", ":"),
        ensure_ascii=True)` into `h`, in pieces (never the whole text at once). Plain paths
        (`plain`: nothing JSON would escape) are joined in C."""
        h.update(b"{")
        for number, (paths, hexes) in enumerate(self.pieces()):
            if self.plain:
                text = '"' + '","'.join(map('":"'.join, zip(paths, hexes, strict=True))) + '"'
            else:
                text = ",".join([f'{encode_basestring_ascii(path)}:"{digest}"'
                                 for path, digest in zip(paths, hexes, strict=True)])
            h.update((("," if number else "") + text).encode())
        h.update(b"}")


class FileListBuilder:
    """Collects entries as the parser yields them; `finish` sorts and checks them."""

    def __init__(self) -> None:
        self._text = bytearray()
        self._ends: array[int] = array("Q")
        self._digests = bytearray()
        self._last = ""
        #: Strictly increasing so far (what a generated manifest is): nothing to sort.
        self._sorted = True
        #: The directory of each path, gathered while its string is at hand (`finish`).
        self._dirs: set[str] = set()
        #: Every entry so far came through `extend` (its paths checked as plain).
        self._plain = True

    def __len__(self) -> int:
        return len(self._ends)

    @property
    def plain(self) -> bool:
        return self._plain and bool(self._ends)

    def add(self, path: str, digest: str) -> None:
        """`digest` must be 64 lowercase hex digits (the manifest checks it first)."""
        try:
            raw = bytes.fromhex(digest)  # also takes spaces and capitals: checked below
        except ValueError:
            raw = b""
        if len(raw) != _DIGEST or raw.hex() != digest:
            raise InvalidPayload(f"payload.yaml files[{path!r}]: not a sha256 "
                                 "(64 lowercase hex digits)")
        try:
            text = path.encode()
        except UnicodeEncodeError:  # the manifest's rules refuse it first
            raise InvalidPayload(f"payload.yaml files: {path!r} is not valid text") from None
        if b"\n" in text:  # the same: a manifest path holds no control character
            raise InvalidPayload(f"payload.yaml files: {path!r} holds a newline")
        if self._sorted and self._ends and path <= self._last:
            self._sorted = False
        self._plain = False
        self._append([path], text, [len(text)])
        self._digests += raw

    def extend(self, paths: list[str], digests: list[object]) -> bool:
        """`add` for a whole chunk of entries, checked in a few passes in C; False (and
        nothing added) if any path is not plain (`rules.plain_rel_paths`) or any digest is
        not 64 lowercase hex digits: the caller then adds them one by one, which names the
        entry."""
        if (len(paths) != len(digests) or not plain_rel_paths(paths)
                or set(map(type, digests)) != {str}):
            return False
        texts: list[str] = digests  # type: ignore[assignment]
        if set(map(len, texts)) != {64}:
            return False
        joined = "".join(texts)
        if not joined.isascii() or joined.encode().translate(None, _HEX_DIGITS):
            return False
        if self._sorted and not (
            (not self._ends or self._last < paths[0])
            and paths == sorted(paths) and len(set(paths)) == len(paths)
        ):
            self._sorted = False
        self._append(paths, "\n".join(paths).encode(), map(len, paths))  # plain: ASCII
        self._digests += bytes.fromhex(joined)
        return True

    def _append(self, paths: list[str], text: bytes, lengths: Iterable[int]) -> None:
        """Paths, as their newline-joined UTF-8 `text` and each one's length in it."""
        if self._ends:
            self._text += b"\n"
        # Each end offset: the previous one, the separator, the path.
        ends = itertools.accumulate(map((1).__add__, lengths),
                                    initial=self._ends[-1] if self._ends else -1)
        next(ends)  # the previous end itself
        self._ends.extend(ends)
        self._text += text
        self._last = paths[-1]
        self._dirs.update([path.rpartition("/")[0] for path in paths])

    def parts(self) -> tuple[bytearray, array[int], bytearray]:
        """The text, end offsets and digests (the builder's own buffers, not copied:
        it is done with them)."""
        if self._sorted:
            return self._text, self._ends, self._digests  # strictly increasing: no duplicate
        listed = FileList._from_parts(self._text, self._ends, self._digests)
        pairs = sorted(zip(listed.paths(), range(len(self._ends)), strict=True))
        for (a, _), (b, _) in itertools.pairwise(pairs):
            if a == b:
                raise InvalidPayload(f"payload.yaml files: duplicate key {a!r}")
        digests = self._digests
        again = FileListBuilder()  # the same paths: `_dirs` stays as it is
        paths = [path for path, _ in pairs]
        again._append(paths, "\n".join(paths).encode(), (len(p.encode()) for p in paths))
        return (again._text, again._ends,
                bytearray(b"".join(digests[i * _DIGEST:(i + 1) * _DIGEST] for _, i in pairs)))

    def finish(self) -> FileList:
        """The checked list: each path once, and no path below another listed file."""
        files = FileList._from_parts(*self.parts(), self.plain)
        # Every directory some path lies in, one level up at a time (set passes, not a
        # walk up from each of 100,000 paths); one that is also listed is a clash.
        parents: set[str] = set()
        level = self._dirs
        while level:
            level.discard("")
            level -= parents
            parents |= level
            level = {parent.rpartition("/")[0] for parent in level}
        clashes = [parent for parent in parents if files.get(parent) is not None]
        if clashes:
            parent = min(clashes)
            below = next(p for p in files.paths() if p.startswith(parent + "/"))
            raise InvalidPayload(
                f"payload.yaml files: {below!r} lies below the file {parent!r}")
        return files
