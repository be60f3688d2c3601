"""Recovery says why an operation was interrupted: the note pxhostd left as it stopped (it
lost its D-Bus connection), else a restart (it was killed); a note for another operation
is not believed, and every note is gone after the recovery that read it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from enginekit import build_payload, context, install, recover

from pxhostd.engine import journal as jn
from pxhostd.engine.interruption import LOST_BUS, RESTARTED, Note, note_path, write_note
from pxhostd.failpoints import FAILPOINTS_ENV

ENGINEKIT = Path(__file__).with_name("enginekit.py")


@pytest.fixture(scope="module")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("payloads")
    return {v: build_payload(base / v, v) for v in ("1.0.0", "2.0.0")}


def spec(payload: Path, n: int = 0) -> dict[str, Any]:
    return {"payload": str(payload), "env": {"STEP": str(n)}}


def killed_at(root: Path, spec_doc: dict[str, Any], failpoint: str) -> None:
    """The real apply in a child, SIGKILLed at `failpoint` (its journal stays)."""
    env = {k: v for k, v in os.environ.items() if k != FAILPOINTS_ENV}
    env[FAILPOINTS_ENV] = failpoint
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ENGINEKIT.parents[3]), str(ENGINEKIT.parent), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, str(ENGINEKIT), str(root), "install",
                           json.dumps(spec_doc)], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


@pytest.mark.parametrize(("note_for", "cause"), [
    ("tx", LOST_BUS),  # pxhostd said why, for this very operation
    (None, RESTARTED),  # no note: killed
    ("another-tx", RESTARTED),  # a stale note of another operation
])
def test_a_rolled_back_upgrade_carries_the_cause_of_its_interruption(
    tmp_path: Path, payloads: dict[str, Path], note_for: str | None, cause: str
) -> None:
    ctx = context(tmp_path)
    asyncio.run(install(ctx, spec(payloads["1.0.0"])))
    killed_at(tmp_path, spec(payloads["2.0.0"], 1), "after-switch")
    record = ctx.journal.load()
    assert record is not None and record.txid == "tx"
    if note_for is not None:
        write_note(ctx.paths.state_dir, Note(note_for, LOST_BUS))
    done = asyncio.run(recover(ctx))
    assert done is not None
    assert (done.txid, done.operation) == ("tx", "upgrade")
    assert done.action == jn.RecoveryAction.ROLL_BACK
    assert done.cause == cause
    assert (done.version_before, done.version_after) == ("1.0.0", "1.0.0")
    assert done.started == record.started
    assert not note_path(ctx.paths.state_dir).exists()
    assert not ctx.paths.journal_file.exists()
    applied = ctx.applied.load()
    assert applied is not None and applied.version == "1.0.0"


def test_an_upgrade_past_its_commit_point_is_finished_and_says_so(
    tmp_path: Path, payloads: dict[str, Path]
) -> None:
    ctx = context(tmp_path)
    asyncio.run(install(ctx, spec(payloads["1.0.0"])))
    killed_at(tmp_path, spec(payloads["2.0.0"], 1), "after-commit")
    write_note(ctx.paths.state_dir, Note("tx", LOST_BUS))
    done = asyncio.run(recover(ctx))
    assert done is not None
    assert done.action == jn.RecoveryAction.ROLL_FORWARD and done.cause == LOST_BUS
    assert (done.version_before, done.version_after) == ("1.0.0", "2.0.0")


def test_a_note_without_an_interrupted_operation_is_dropped(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    ctx.paths.state_dir.mkdir(parents=True, exist_ok=True)
    write_note(ctx.paths.state_dir, Note("tx", LOST_BUS))
    assert asyncio.run(recover(ctx)) is None
    assert not note_path(ctx.paths.state_dir).exists()


def test_a_damaged_note_is_ignored_and_removed(tmp_path: Path, payloads: dict[str, Path]) -> None:
    ctx = context(tmp_path)
    asyncio.run(install(ctx, spec(payloads["1.0.0"])))
    killed_at(tmp_path, spec(payloads["2.0.0"], 1), "after-switch")
    note_path(ctx.paths.state_dir).write_text("{not json")
    done = asyncio.run(recover(ctx))
    assert done is not None and done.cause == RESTARTED
    assert not note_path(ctx.paths.state_dir).exists()
