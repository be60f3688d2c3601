"""Failpoint configuration parsing, and that an armed failpoint really kills the process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pxhostd import failpoints as fp
from pxhostd.failpoints import FAILPOINTS_ENV, Failpoints, UnknownFailpoint

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_off_by_default() -> None:
    points = Failpoints.from_env({})
    assert not points
    assert points.armed == {}
    for name in fp.KNOWN_FAILPOINTS:
        points.hit(name)  # returns: nothing armed


def test_env_list_with_counts_and_spaces() -> None:
    points = Failpoints.from_env({FAILPOINTS_ENV: " after-stage , mid-prune=3,,"})
    assert points.armed == {fp.AFTER_STAGE: 1, fp.MID_PRUNE: 3}
    assert points


def test_config_value_list() -> None:
    assert Failpoints(["after-switch=2"]).armed == {fp.AFTER_SWITCH: 2}


@pytest.mark.parametrize("text,message", [
    ("after-stag", "unknown failpoint 'after-stag'"),
    ("after-stage,befor-journal-done", "unknown failpoint 'befor-journal-done'"),
    ("after-stage=0", "whole number >= 1"),
    ("after-stage=x", "whole number >= 1"),
    ("after-stage=-1", "whole number >= 1"),
])
def test_typos_are_refused_at_start(text: str, message: str) -> None:
    with pytest.raises(UnknownFailpoint, match=message):
        Failpoints.parse(text)


def test_hitting_an_unregistered_name_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="KNOWN_FAILPOINTS"):
        Failpoints().hit("somewhere-new")


def test_known_names_are_unique_and_well_formed() -> None:
    assert len(set(fp.KNOWN_FAILPOINTS)) == len(fp.KNOWN_FAILPOINTS)
    for name in fp.KNOWN_FAILPOINTS:
        assert name == name.lower() and " " not in name and "," not in name and "=" not in name


CHILD = """
import sys
from pxhostd.failpoints import Failpoints
points = Failpoints.from_env()
for n in range(1, 6):
    print("before", n, flush=True)
    try:
        points.hit("after-switch")
    finally:
        print("finally", n, flush=True)
"""


@pytest.mark.parametrize("spec,survived", [("after-switch", 0), ("after-switch=3", 2)])
def test_armed_failpoint_sigkills_without_cleanup(spec: str, survived: int) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), **{FAILPOINTS_ENV: spec})
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL
    # The crashing hit runs no `finally`; the earlier hits returned normally.
    assert proc.stdout.count("finally") == survived
    assert proc.stdout.count("before") == survived + 1
    assert f"failpoint after-switch reached (hit {survived + 1})" in proc.stderr


def test_an_error_failpoint_raises_once_on_its_hit() -> None:
    points = Failpoints.parse("error:after-daemon-reload=2")
    assert points.armed == {fp.AFTER_DAEMON_RELOAD: 2}
    points.hit(fp.AFTER_DAEMON_RELOAD)
    with pytest.raises(fp.InjectedFault, match="after-daemon-reload"):
        points.hit(fp.AFTER_DAEMON_RELOAD)
    points.hit(fp.AFTER_DAEMON_RELOAD)  # the next operation passes
