"""The import contracts of pyproject.toml ([tool.importlinter]) hold, and can fail.

Each case copies the package and the contract file to a scratch directory, adds one import
the layering forbids, and runs `lint-imports` (as `make lint` does) on the copy: it must
name the broken contract. The unmodified copy must pass, so a red case is the added import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def copy_tree(dest: Path) -> Path:
    shutil.copytree(REPO / "pxhostd", dest / "pxhostd",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(LINT_IMPORTS), "--no-logo", "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def add_import(root: Path, module: str, line: str) -> None:
    path = root / "pxhostd" / module
    path.write_text(path.read_text() + f"\n{line}  # added by the contract test\n")


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    result = lint_imports(copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert " kept, 0 broken." in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # A lower layer importing a higher one (payload reaching up into the engine).
        ("payload/store.py", "from pxhostd.engine import api as _api",
         "pxhostd.payload is not allowed to import pxhostd.engine"),
        # The engine reaching into the daemon that runs it.
        ("engine/state.py", "from pxhostd.daemon import service as _service",
         "pxhostd.engine is not allowed to import pxhostd.daemon"),
        # Siblings in one layer stay independent.
        ("status/probe.py", "from pxhostd.payload import manifest as _manifest",
         "pxhostd.status is not allowed to import pxhostd.payload"),
        # The daemon loading the pod's code (kubernetes client and all).
        ("daemon/service.py", "from pxhostd.pod import submit as _submit",
         "pxhostd.daemon is not allowed to import pxhostd.pod"),
        # A cycle inside one package: the client importing the rule built on it.
        ("systemd/client.py", "from pxhostd.systemd import verify as _verify",
         "No cycles are allowed in pxhostd.systemd"),
    ],
)
def test_an_added_forbidden_import_fails_the_lint(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    root = copy_tree(tmp_path)
    add_import(root, module, line)
    result = lint_imports(root)
    assert result.returncode != 0, result.stdout
    assert broken in result.stdout, result.stdout


def test_a_new_top_level_package_must_be_placed_in_a_layer(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    (root / "pxhostd" / "newconcern").mkdir()
    (root / "pxhostd" / "newconcern" / "__init__.py").write_text('"""Unplaced."""\n')
    result = lint_imports(root)
    assert result.returncode != 0, result.stdout
    assert "not listed as layers:\n\n- pxhostd.newconcern" in result.stdout, result.stdout
