"""Fixtures for the manifest generator: the real HTTP service on a free port, schema versions."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from specgen_helpers import ServerProcess

REPO = Path(__file__).resolve().parents[2]


def _start(*extra: str) -> Iterator[ServerProcess]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pxhostd.manifest.web", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("pxhostd-specgen: serving on "):
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"pxhostd-specgen did not start: {line!r} {err}", pytrace=False)
    base = line.rsplit(" ", 1)[1].strip().rstrip("/")
    try:
        yield ServerProcess(base, proc)
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.fixture(scope="session")
def specgen() -> Iterator[ServerProcess]:
    """`pxhostd-specgen` (strict, the default) as a real process on a random port."""
    yield from _start()


@pytest.fixture(scope="session")
def specgen_lenient() -> Iterator[ServerProcess]:
    yield from _start("--no-strict")
