"""Test bed: real Debian 12 nodes booted with systemd-nspawn (see docs/testing.md)."""

from .errors import NodeBootError, NodeCommandError, NodeError, NodeRootError, UnitFailed
from .node import NODE_DROP_DIR, Node
from .polling import WaitTimeout, wait_for
from .root import REPO_ROOT, build_node_root

__all__ = [
    "NODE_DROP_DIR",
    "REPO_ROOT",
    "Node",
    "NodeBootError",
    "NodeCommandError",
    "NodeError",
    "NodeRootError",
    "UnitFailed",
    "WaitTimeout",
    "build_node_root",
    "wait_for",
]
