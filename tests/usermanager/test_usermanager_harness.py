"""The user-manager harness fails loudly (never skips) and leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from um_harness import (
    CGROUP_PREFIX,
    UserManagerError,
    cgroup_hierarchies,
    cgroup_pids,
    running_user_manager,
    sweep_stale_cgroups,
)

pytestmark = pytest.mark.usermanager


def test_a_manager_that_cannot_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UserManagerError) as caught, running_user_manager(
        tmp_path / "m", systemd="/bin/false"
    ):
        pytest.fail("the harness must not yield a manager that is not running")
    assert "exited" in str(caught.value)
    leftovers = [
        group for h in cgroup_hierarchies() for group in h.glob(f"{CGROUP_PREFIX}*-m")
    ]
    assert leftovers == []


def test_a_killed_owner_takes_its_manager_along(tmp_path: Path) -> None:
    """SIGKILL of the test process: the namespace dies with it, the sweep removes the rest."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "import um_harness\n"
        f"m = um_harness.UserManager(base=Path({str(tmp_path / 'k')!r}))\n"
        "m.start()\n"
        "print(' '.join(str(g) for g in m.cgroups), flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script], cwd=Path(__file__).parent,
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert owner.stdout is not None
        groups = [Path(p) for p in owner.stdout.readline().split()]
        assert groups, "the child did not start its manager"
        assert any(cgroup_pids(g) for g in groups)
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    deadline = time.monotonic() + 20
    while any(cgroup_pids(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [g for g in groups if cgroup_pids(g)] == []
    sweep_stale_cgroups()
    assert [g for g in groups if g.exists()] == []
