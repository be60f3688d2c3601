"""The pristine node root: built once by `scripts/build-node-root`, then reused."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .errors import NodeRootError

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-node-root"
DOCKER_BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-docker-node-root"
#: How a Docker node boots on these machines (docs/testing.md, "Docker nodes"): runc needs
#: every capability the machine has and a session keyring.
DOCKER_NSPAWN_ARGS = ("--capability=all", "--system-call-filter=@keyring")


def build_node_root(script: Path = BUILD_SCRIPT) -> Path:
    """Return the cached root, building it first if needed (about a minute, once)."""
    proc = subprocess.run([str(script)], capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise NodeRootError(
            f"{script} failed (exit {proc.returncode}); it needs root, debootstrap "
            f"(`make setup`) and a reachable Debian mirror.\n{proc.stderr[-4000:]}"
        )
    root = Path(lines[-1])
    if not (root / "etc" / "pxhostd-node-root").is_file():
        raise NodeRootError(f"{script} printed {root}, which is not a node root")
    return root


def build_docker_node_root() -> Path:
    """The node root plus Debian's docker.io, prepared for Docker in nspawn (cached)."""
    return build_node_root(DOCKER_BUILD_SCRIPT)
