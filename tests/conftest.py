"""Shared fixtures: the node root and the pxhostd .deb, each built once per session.

Neither ever skips: a test that needs a node fails with the reason when one cannot be
built, so a missing tool never turns into a green run.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from nodeharness import REPO_ROOT, NodeError, build_node_root
from nodeharness.outcome import pytest_runtest_makereport  # noqa: F401  (hook)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def node_root() -> Path:
    """The pristine Debian 12 root (built by scripts/build-node-root, cached)."""
    try:
        return build_node_root()
    except NodeError as exc:
        pytest.fail(f"cannot build the node root: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def pxhostd_deb() -> Path:
    """The pxhostd .deb: $PXHOSTD_DEB if set, else built once with `make deb`."""
    given = os.environ.get("PXHOSTD_DEB")
    if given:
        path = Path(given)
        if not path.is_file():
            pytest.fail(f"PXHOSTD_DEB={given} is not a file", pytrace=False)
        return path.resolve()
    proc = subprocess.run(
        ["make", "--no-print-directory", "deb"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"`make deb` failed (exit {proc.returncode}):\n{proc.stdout[-6000:]}", pytrace=False
        )
    debs = sorted((REPO_ROOT / "out").glob("pxhostd_*.deb"), key=lambda p: p.stat().st_mtime)
    if not debs:
        pytest.fail("`make deb` succeeded but left no out/pxhostd_*.deb", pytrace=False)
    return debs[-1]
