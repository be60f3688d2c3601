"""The tree helpers staging relies on: atomic exchange and durable tree removal."""

from __future__ import annotations

from pathlib import Path

import pytest

from pxhostd.errors import HostStateError
from pxhostd.hostfs import TEMP_PREFIX, exchange_paths, remove_tree, temp_name


def test_exchange_swaps_two_non_empty_directories(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "sub").mkdir(parents=True)
    (a / "sub" / "f").write_text("A")
    b.mkdir()
    (b / "g").write_text("B")
    exchange_paths(a, b)
    assert (b / "sub" / "f").read_text() == "A"
    assert (a / "g").read_text() == "B"


def test_exchange_with_a_missing_path_is_a_named_error(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(HostStateError, match="cannot exchange"):
        exchange_paths(tmp_path / "a", tmp_path / "missing")
    assert (tmp_path / "a").is_dir()


def test_remove_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "x" / "y").mkdir(parents=True)
    (tree / "x" / "y" / "f").write_text("data")
    assert remove_tree(tree)
    assert list(tmp_path.iterdir()) == []
    assert not remove_tree(tree)


def test_remove_tree_on_a_symlink_removes_only_the_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "keep").write_text("k")
    (tmp_path / "link").symlink_to("real")
    assert remove_tree(tmp_path / "link")
    assert (tmp_path / "real" / "keep").read_text() == "k"


def test_temp_names_are_unique_and_swept_by_prefix(tmp_path: Path) -> None:
    names = {temp_name(tmp_path, "r1") for _ in range(50)}
    assert len(names) == 50
    assert all(n.name.startswith(TEMP_PREFIX) and n.parent == tmp_path for n in names)
