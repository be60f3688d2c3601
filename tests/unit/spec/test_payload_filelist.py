"""The compact file list: the same digest, order and rules as the plain dict it replaces."""

from __future__ import annotations

import hashlib
import json
import random
import re

import pytest

from pxhostd.errors import InvalidPayload
from pxhostd.payload.filelist import FileList
from pxhostd.payload.manifest import Manifest, _digest, parse_manifest_yaml
from pxhostd.spec import rules


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def manifest_text(files: dict[str, str], **extra: str) -> str:
    lines = ["name: px", "version: '1.0'", "exec: [bin/px]", *(f"{k}: {v}" for k, v in
                                                               extra.items()), "files:"]
    lines += [f"  {json.dumps(path)}: '{digest}'" for path, digest in files.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(5))
def test_streamed_digest_is_the_canonical_json_digest(seed: int) -> None:
    rng = random.Random(seed)
    names = ["bin/lib", "a/b", "ü/ñ", "z-x/y", "a-b", "a.c", "日本/語"]
    files = {"bin/px": digest_of("px")}
    for i in range(200):
        files[f"{rng.choice(names)}/{i:04d}"] = digest_of(str(i))
    keys = list(files)
    rng.shuffle(keys)  # the manifest lists them in any order
    shuffled = {k: files[k] for k in keys}
    extra = {"health": "http://127.0.0.1:9001/h"} if seed % 2 else {"drain": "on-upgrade"}
    m = parse_manifest_yaml(manifest_text(shuffled, **extra))
    assert m.digest == _digest(m.to_dict())
    assert list(m.files) == sorted(files.items())
    assert isinstance(m.files, FileList)


def test_a_manifest_built_from_pairs_has_the_same_digest_and_equality() -> None:
    pairs = (("bin/px", "0" * 64), ("lib/a.so", "1" * 64))
    a = Manifest(name="px", version="1", exec=("bin/px",), files=pairs)
    b = parse_manifest_yaml(manifest_text(dict(pairs)).replace("'1.0'", "'1'"))
    assert a == b and a.digest == b.digest == _digest(a.to_dict())
    assert a.files == pairs and "lib/a.so" in a.files and "lib/b.so" not in a.files
    assert a.files.get("lib/a.so") == "1" * 64


@pytest.mark.parametrize(("files", "fragment"), [
    ({"bin/px": "0" * 64, "bin/px/x": "1" * 64}, "lies below the file 'bin/px'"),
    ({"bin/px": "0" * 63}, "not a sha256"),
    ({"bin/px": "A" * 64}, "not a sha256"),
    ({"bin/px": "ab" * 31 + "aB"}, "not a sha256"),
    ({"bin/px": "ab " * 21 + "a"}, "not a sha256"),
    ({"bin/px": "0" * 62 + " 0"}, "not a sha256"),
    ({"bin/px": "0" * 63 + "g"}, "not a sha256"),
    ({"bin/px": "0" * 66}, "not a sha256"),
    ({"bin/px": "0" * 64, "../x": "0" * 64}, "must not contain '..'"),
    ({"bin/px": "0" * 64, "payload.yaml": "0" * 64}, "cannot list itself"),
    ({"lib/a": "0" * 64}, "is not listed in files"),
])
def test_streamed_entries_keep_the_rules(files: dict[str, str], fragment: str) -> None:
    with pytest.raises(InvalidPayload, match=fragment):
        parse_manifest_yaml(manifest_text(files))


def test_a_duplicate_path_is_named() -> None:
    text = manifest_text({"bin/px": "0" * 64}) + "  bin/px: '" + "1" * 64 + "'\n"
    with pytest.raises(InvalidPayload, match="duplicate key 'bin/px'"):
        parse_manifest_yaml(text)


def test_files_twice_at_the_top_is_a_duplicate_key() -> None:
    text = manifest_text({"bin/px": "0" * 64}) + "files: {}\n"
    with pytest.raises(InvalidPayload, match="duplicate key 'files'"):
        parse_manifest_yaml(text)


def test_a_merge_key_in_files_is_refused() -> None:
    text = ("name: px\nversion: '1'\nexec: [bin/px]\nx: &m {bin/px: " + "0" * 64 + "}\n"
            "files:\n  <<: *m\n")
    with pytest.raises(InvalidPayload, match="merge key"):
        parse_manifest_yaml(text)


def test_too_many_files_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pxhostd.payload.manifest.MAX_FILES", 3)
    files = {f"f{i}": "0" * 64 for i in range(4)} | {"bin/px": "0" * 64}
    with pytest.raises(InvalidPayload, match="too many files"):
        parse_manifest_yaml(manifest_text(files))


def test_streamed_entries_take_quoted_plain_tagged_and_aliased_strings_alike() -> None:
    d = "ab" * 32  # a plain scalar that resolves to a string (all digits would be an int)
    text = ("name: px\nversion: '1'\nexec: [bin/px]\n"
            "files:\n  bin/px: &d '" + "1" * 64 + "'\n  'lib/a': " + d + "\n"
            "  !!str lib/b: !!str " + d + "\n  lib/c: *d\n")
    files = parse_manifest_yaml(text).files
    assert list(files) == [("bin/px", "1" * 64), ("lib/a", d), ("lib/b", d), ("lib/c", "1" * 64)]


@pytest.mark.parametrize(("entry", "fragment"), [
    ("bin/x: 1234", "must be a string"),
    ("bin/x: !!binary aGVsbG8=", "tag"),
    ("7: " + "0" * 64, "must be a string"),
    ("bin/x: [" + "0" * 64 + "]", "must be a string"),
])
def test_a_streamed_entry_that_is_not_two_plain_strings_is_refused(
    entry: str, fragment: str
) -> None:
    text = manifest_text({"bin/px": "0" * 64}) + "  " + entry + "\n"
    with pytest.raises(InvalidPayload, match=fragment):
        parse_manifest_yaml(text)


def test_the_whole_list_check_agrees_with_the_one_by_one_check() -> None:
    """`rules.plain_rel_paths` is only a shortcut: True must mean every path passes
    `check_rel_path`'s common case, and any path that fails it must make it False."""
    rng = random.Random(7)
    pieces = ["a", "b1", ".", "..", "", "x.y", "é", "a b", "a\nb", "%", ":", "~", "-", "_",
              "x" * 256, "(1)", "c=d", "q\\"]
    for _ in range(3000):
        path = "/".join(rng.choice(pieces) for _ in range(rng.randint(1, 4)))
        if rng.random() < 0.1:
            path = "/" + path
        if rng.random() < 0.1:
            path += "/"
        one = [f"ok/{i}" for i in range(rng.randint(0, 3))] + [path]
        rng.shuffle(one)
        each = all(rules._PLAIN_ASCII_PATH.fullmatch(p) and len(p) <= rules.MAX_COMPONENT
                   and rules.is_normalised(p) for p in one)
        assert rules.plain_rel_paths(list(one)) == each, one


def big_files(count: int) -> dict[str, str]:
    files = {f"lib/d{i // 500:03d}/f{i:05d}.so": digest_of(str(i)) for i in range(count)}
    files["bin/px"] = digest_of("px")
    return files


@pytest.mark.parametrize(("change", "fragment"), [
    ({"lib/d020/f10001.so": "0" * 63}, r"files\['lib/d020/f10001.so'\]: not a sha256"),
    ({"lib/../f": "0" * 64}, "must not contain '..'"),
    ({"lib/d020/f10001.so/x": "0" * 64}, "lies below the file 'lib/d020/f10001.so'"),
    ({"payload.yaml": "0" * 64}, "cannot list itself"),
])
def test_a_bad_entry_deep_in_a_big_manifest_is_named(
    change: dict[str, str], fragment: str
) -> None:
    """Entries are checked a chunk at a time; a bad one in a later chunk is still named."""
    files = big_files(12_000)
    keys = list(files)
    keys.insert(10_002, next(iter(change)))
    files = {**files, **change}
    with pytest.raises(InvalidPayload, match=fragment):
        parse_manifest_yaml(manifest_text({k: files[k] for k in keys}))


def test_a_big_manifest_in_any_order_gives_the_same_list_and_digest() -> None:
    files = big_files(12_000)
    in_order = parse_manifest_yaml(manifest_text(dict(sorted(files.items()))))
    keys = list(files)
    random.Random(3).shuffle(keys)
    shuffled = parse_manifest_yaml(manifest_text({k: files[k] for k in keys}))
    one_by_one = FileList(files.items())  # built with `add`, entry by entry
    assert in_order.files == shuffled.files == one_by_one
    assert in_order.digest == shuffled.digest == _digest(in_order.to_dict())
    # A path given twice, thousands of entries apart, is still a duplicate.
    text = manifest_text(files) + "  'lib/d000/f00003.so': '" + "1" * 64 + "'\n"
    with pytest.raises(InvalidPayload, match=re.escape("duplicate key 'lib/d000/f00003.so'")):
        parse_manifest_yaml(text)


def test_plain_entries_are_checked_a_chunk_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common manifest never takes the entry-by-entry path (what keeps parsing fast)."""
    from pxhostd.payload.filelist import FileListBuilder

    one_by_one: list[str] = []
    add = FileListBuilder.add
    monkeypatch.setattr(FileListBuilder, "add",
                        lambda self, path, digest: (one_by_one.append(path),
                                                    add(self, path, digest))[1])
    files = big_files(9_000)
    assert len(parse_manifest_yaml(manifest_text(files)).files) == len(files)
    assert one_by_one == []
    parse_manifest_yaml(manifest_text(files | {"lib/ü": digest_of("u")}))
    assert "lib/ü" in one_by_one and len(one_by_one) < 4096 + 1, "only its chunk"


def test_the_compact_list_reads_back_what_went_in() -> None:
    """One text of paths with end offsets: every access path agrees with a plain list,
    across pieces, with paths of any length and non-ASCII ones."""
    rng = random.Random(11)
    names = ["a", "bb", "ü", "日本", "x" * 200, "a-b", "a.b", "z"]
    pairs = {"/".join(rng.choice(names) for _ in range(rng.randint(1, 3))) + f"/{i}":
             digest_of(str(i)) for i in range(3 * 4096 + 17)}
    expected = sorted(pairs.items())
    shuffled = list(pairs.items())
    rng.shuffle(shuffled)
    files = FileList(shuffled)
    assert list(files) == expected and len(files) == len(expected)
    for i in (0, 4095, 4096, 4097, 8191, 8192, len(expected) - 1, -1):
        assert files[i] == expected[i]
    assert files[2:5] == expected[2:5]
    for path, digest in rng.sample(expected, 200):
        assert files.get(path) == digest and path in files and (path, digest) in files
    assert files.get("a") is None and files.get("\ud800") is None and "zz" not in files
    assert files == FileList(expected) and files != FileList(expected[:-1])
    with pytest.raises(IndexError):
        files[len(expected)]


def test_a_path_with_a_newline_cannot_enter_the_list() -> None:
    with pytest.raises(InvalidPayload, match="newline"):
        FileList([("a\nb", "0" * 64)])
