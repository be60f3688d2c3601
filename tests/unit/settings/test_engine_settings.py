"""The daemon settings file: defaults, overrides, and named errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from pxhostd.engine.settings import EngineSettings, load_settings
from pxhostd.errors import InvalidOptions

REPO = Path(__file__).resolve().parents[3]


def test_missing_or_comment_only_file_gives_defaults(tmp_path: Path) -> None:
    assert load_settings(tmp_path / "absent.conf") == EngineSettings()
    shipped = REPO / "units" / "pxhostd.conf"
    assert load_settings(shipped) == EngineSettings()


def test_every_documented_setting_is_a_real_one() -> None:
    text = (REPO / "units" / "pxhostd.conf").read_text()
    for name in EngineSettings.__dataclass_fields__:
        assert f"#{name}: " in text, f"{name} is not documented in units/pxhostd.conf"


def test_overrides_keep_their_types(tmp_path: Path) -> None:
    conf = tmp_path / "pxhostd.conf"
    conf.write_text("activation_timeout: 5\njournal_lines: 3\nsettle_seconds: 0.5\n")
    settings = load_settings(conf)
    assert settings.activation_timeout == 5.0 and isinstance(settings.activation_timeout, float)
    assert settings.journal_lines == 3 and isinstance(settings.journal_lines, int)
    assert settings.settle_seconds == 0.5


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("bogus: 1\n", "unknown setting 'bogus'"),
        ("activation_timeout: -1\n", "non-negative number"),
        ("activation_timeout: yes\n", "non-negative number"),
        ("activation_timeout: '5'\n", "non-negative number"),
        ("- a list\n", "mapping"),
        ("key: [unclosed\n", "cannot read settings"),
    ],
)
def test_bad_settings_are_named_errors(tmp_path: Path, text: str, fragment: str) -> None:
    conf = tmp_path / "pxhostd.conf"
    conf.write_text(text)
    with pytest.raises(InvalidOptions, match=fragment.replace("[", r"\[")):
        load_settings(conf)
