"""Test bed: real Debian 12 nodes booted with systemd-nspawn (see docs/testing.md)."""

from .errors import NodeBootError, NodeCommandError, NodeError, NodeRootError, UnitFailed
from .node import NODE_DROP_DIR, Node
from .polling import WaitTimeout, wait_for
from .root import DOCKER_NSPAWN_ARGS, REPO_ROOT, build_node_root

__all__ = [
    "DOCKER_NSPAWN_ARGS",
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
