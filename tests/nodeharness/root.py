"""The pristine node root: built once by `scripts/build-node-root`, then reused."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .errors import NodeRootError

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-node-root"
#: How a node of the `docker` variant boots on these machines (docs/testing.md, "Docker
#: nodes"): runc needs every capability the machine has and a session keyring.
DOCKER_NSPAWN_ARGS = ("--capability=all", "--system-call-filter=@keyring")


def build_node_root(variant: str | None = None) -> Path:
    """Return the cached root, building it first if needed (about a minute, once).

    `variant`: a root with more packages (`podman`; see scripts/build-node-root).
    """
    argv = [str(BUILD_SCRIPT), *(["--variant", variant] if variant else [])]
    proc = subprocess.run(argv, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise NodeRootError(
            f"{BUILD_SCRIPT} failed (exit {proc.returncode}); it needs root, debootstrap "
            f"(`make setup`) and a reachable Debian mirror.\n{proc.stderr[-4000:]}"
        )
    root = Path(lines[-1])
    if not (root / "etc" / "pxhostd-node-root").is_file():
        raise NodeRootError(f"{BUILD_SCRIPT} printed {root}, which is not a node root")
    return root
