"""unit_journal_tail: argv building, tail, and never failing for a missing journal."""

from __future__ import annotations

from pathlib import Path

import pytest

from pxhostd.systemd import unit_journal_tail
from pxhostd.systemd.journal import journal_command

INVOCATION = "0123456789abcdef0123456789abcdef"


def test_command_system_and_user_unit() -> None:
    assert journal_command("portworx.service", 20, None, user=False) == [
        "journalctl", "--no-pager", "--quiet", "--output=cat", "--lines=20",
        "--unit=portworx.service",
    ]
    argv = journal_command("a.service", 5, INVOCATION, user=True)
    assert "--user-unit=a.service" in argv
    assert argv[-1] == f"_SYSTEMD_INVOCATION_ID={INVOCATION}"


@pytest.mark.parametrize("bad", ["xyz", INVOCATION + "0", "' OR 1", "0123456789ABCDEF" * 2])
def test_command_rejects_a_bad_invocation_id(bad: str) -> None:
    with pytest.raises(ValueError):
        journal_command("a.service", 5, bad, user=False)


def fake_journalctl(tmp_path: Path, body: str) -> str:
    path = tmp_path / "journalctl"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


async def test_tail_returns_the_last_lines(tmp_path: Path) -> None:
    args_file = tmp_path / "args"
    tool = fake_journalctl(
        tmp_path, f'printf "%s\\n" "$@" > {args_file}\nprintf "one\\ntwo\\nthree\\n"\n'
    )
    lines = await unit_journal_tail("p.service", lines=2, invocation_id=INVOCATION,
                                    journalctl=tool)
    assert lines == ["two", "three"]
    assert f"_SYSTEMD_INVOCATION_ID={INVOCATION}" in args_file.read_text().splitlines()


async def test_missing_journalctl_gives_nothing(tmp_path: Path) -> None:
    assert await unit_journal_tail("p.service", journalctl=str(tmp_path / "none")) == []


async def test_failing_journalctl_gives_nothing(tmp_path: Path) -> None:
    tool = fake_journalctl(tmp_path, 'echo "some line"\necho "Failed" >&2\nexit 1\n')
    assert await unit_journal_tail("p.service", journalctl=tool) == []


async def test_hung_journalctl_is_killed(tmp_path: Path) -> None:
    tool = fake_journalctl(tmp_path, "exec sleep 60\n")
    assert await unit_journal_tail("p.service", journalctl=tool, timeout=0.5) == []


async def test_zero_lines_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    tool = fake_journalctl(tmp_path, f"touch {marker}\n")
    assert await unit_journal_tail("p.service", lines=0, journalctl=tool) == []
    assert not marker.exists()
