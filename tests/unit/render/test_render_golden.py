"""Golden files: the exact bytes of rendered units.

Regenerate after an intended template change with
`PXHOSTD_REGEN_GOLDEN=1 python -m pytest tests/unit/render -q` and review the diff.
"""

from __future__ import annotations

import os

import pytest
from cases import GOLDEN_DIR, RELEASE_ROOT, cases, paths

from pxhostd.render.units import render_units

REGEN = os.environ.get("PXHOSTD_REGEN_GOLDEN") == "1"


def _golden_units() -> list[tuple[str, str, str]]:
    """(case, unit name, golden file name) for every unit every case renders."""
    out: list[tuple[str, str, str]] = []
    for case, (spec, manifest) in sorted(cases().items()):
        for name in sorted(render_units(spec, manifest, RELEASE_ROOT, paths())):
            out.append((case, name, f"{case}--{name.replace('/', '--')}"))
    return out


@pytest.mark.parametrize(("case", "unit", "golden"), _golden_units())
def test_rendered_unit_matches_golden_file(case: str, unit: str, golden: str) -> None:
    spec, manifest = cases()[case]
    text = render_units(spec, manifest, RELEASE_ROOT, paths())[unit]
    path = GOLDEN_DIR / golden
    if REGEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"missing golden file {path.name}; run with PXHOSTD_REGEN_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


def test_every_golden_file_is_produced_by_a_case() -> None:
    produced = {golden for _, _, golden in _golden_units()}
    on_disk = {p.name for p in GOLDEN_DIR.iterdir()}
    assert on_disk == produced


def test_golden_set_covers_both_templates() -> None:
    units = {unit for _, unit, _ in _golden_units()}
    assert "portworx.service" in units
    assert "portworx-reboot.service" in units
