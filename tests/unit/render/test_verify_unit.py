"""verify_unit_text against the machine's real systemd-analyze (required, never skipped)."""

from __future__ import annotations

import shutil

import pytest
from cases import RELEASE_ROOT, cases, paths

from pxhostd.errors import InvalidSpec
from pxhostd.render import verify as verify_mod
from pxhostd.render.names import is_unit_file
from pxhostd.render.units import render_units
from pxhostd.render.verify import verify_unit_text


@pytest.fixture(autouse=True)
def _tool_present() -> None:
    assert shutil.which("systemd-analyze"), "systemd-analyze is required for these tests"


@pytest.mark.parametrize("case", sorted(cases()))
def test_every_golden_case_passes_verify(case: str) -> None:
    spec, man = cases()[case]
    for name, text in render_units(spec, man, RELEASE_ROOT, paths()).items():
        if is_unit_file(name):  # the environment file is no unit
            verify_unit_text(name, text, exec_root=RELEASE_ROOT)


def _typical() -> str:
    spec, man = cases()["typical"]
    return render_units(spec, man, RELEASE_ROOT, paths())["portworx.service"]


def test_missing_program_fails_without_exec_root() -> None:
    with pytest.raises(InvalidSpec, match="not executable"):
        verify_unit_text("portworx.service", _typical())


def test_missing_program_outside_exec_root_fails() -> None:
    with pytest.raises(InvalidSpec, match="not executable"):
        verify_unit_text("portworx.service", _typical(), exec_root="/opt/pwx/releases/other")


def test_existing_program_passes_without_exec_root() -> None:
    text = "[Service]\nExecStart=/bin/true\n"
    verify_unit_text("ok.service", text)


def test_ignored_setting_is_a_failure() -> None:
    """systemd-analyze exits 0 on 'ignoring' warnings; we do not."""
    text = _typical().replace("KillMode=mixed", "KillMode=mixed\nNoSuchKey=1")
    with pytest.raises(InvalidSpec, match="Unknown key 'NoSuchKey'"):
        verify_unit_text("portworx.service", text, exec_root=RELEASE_ROOT)


def test_bad_quoting_is_a_failure() -> None:
    text = _typical().replace('"--serve"', '"--serve')
    with pytest.raises(InvalidSpec, match="Unbalanced quoting"):
        verify_unit_text("portworx.service", text, exec_root=RELEASE_ROOT)


def test_bad_environment_is_a_failure() -> None:
    text = _typical().replace("KillMode=mixed", 'KillMode=mixed\nEnvironment="1PX_LOG_LEVEL=x"')
    with pytest.raises(InvalidSpec, match="Invalid environment assignment"):
        verify_unit_text("portworx.service", text, exec_root=RELEASE_ROOT)


def test_message_names_the_unit_not_the_temp_path() -> None:
    with pytest.raises(InvalidSpec) as info:
        verify_unit_text("x.service", "[Service]\nExecStart=/bin/true\nBogus=1\n")
    assert "pxhostd-verify-" not in str(info.value)
    assert "x.service:3" in str(info.value)


@pytest.mark.parametrize("name", ["", "../x.service", "a/b.service", "x", "x.conf"])
def test_bad_unit_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidSpec, match="not a unit file name"):
        verify_unit_text(name, "[Service]\nExecStart=/bin/true\n")


def test_no_op_when_the_tool_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_mod.shutil, "which", lambda _name: None)
    verify_unit_text("portworx.service", "this is not a unit at all")
