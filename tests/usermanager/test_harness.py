"""The user-manager harness fails loudly (never skips) and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from um_harness import CGROUP_PREFIX, UserManagerError, cgroup_hierarchies, running_user_manager

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
