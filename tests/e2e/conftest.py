"""Node fixtures: fresh booted Debian 12 nodes, with and without pxhostd installed.

Every test under tests/e2e gets the `node` marker, so `-m "not node"` leaves them out.
On failure, a node's console and journal are kept under .cache/node-logs/ and their
paths printed with the test's output.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nodeharness import Node
from nodeharness.outcome import item_failed

E2E_DIR = Path(__file__).resolve().parent
#: Journal lines shown with a failed test (the whole journal is kept in the file).
DIAGNOSTIC_LINES = 60


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.node)


@pytest.fixture
def node_factory(node_root: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Node]]:
    """Boot nodes on demand (`node_factory()`); all are stopped after the test."""
    nodes: list[Node] = []

    def boot(**kwargs: Any) -> Node:
        node = Node(node_root, **kwargs)
        nodes.append(node)
        return node.start()

    yield boot
    failed = item_failed(request.node)
    for node in reversed(nodes):
        try:
            if failed and node.running:
                journal = node.save_diagnostics()
                tail = "\n".join(journal.read_text().splitlines()[-DIAGNOSTIC_LINES:])
                print(
                    f"node {node.name}: console {node.console_log}, journal {journal}\n"
                    f"--- last {DIAGNOSTIC_LINES} lines of the journal ---\n{tail}",
                    file=sys.stderr,
                )
        finally:
            node.stop()


@pytest.fixture
def node(node_factory: Callable[..., Node]) -> Node:
    """A freshly booted node, private to the test."""
    return node_factory()


@pytest.fixture
def installed_node(node: Node, pxhostd_deb: Path) -> Node:
    """A fresh node with the pxhostd .deb installed and pxhostd.service active."""
    node.install_deb(pxhostd_deb)
    node.wait_active("pxhostd")
    return node
