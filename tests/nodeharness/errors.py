"""Errors of the node harness: each carries what a developer needs to see why."""

from __future__ import annotations

import subprocess


class NodeError(Exception):
    """A node could not be built, booted, entered or stopped."""


class NodeRootError(NodeError):
    """The pristine root filesystem could not be built."""


class NodeBootError(NodeError):
    """A node did not reach `running`/`degraded` in time; the message has its console."""


class NodeCommandError(NodeError):
    """A command inside a node failed (non-zero exit or timeout)."""

    def __init__(self, node: str, result: subprocess.CompletedProcess[str], reason: str) -> None:
        self.node = node
        self.result = result
        args = result.args if isinstance(result.args, list) else [str(result.args)]
        super().__init__(
            f"on node {node}: {reason}: {' '.join(str(a) for a in args)}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )


class UnitFailed(AssertionError):
    """A unit the test waited for ended up `failed` (an AssertionError: tests fail on it)."""
