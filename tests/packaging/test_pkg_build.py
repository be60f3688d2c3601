"""The build commands: versions must agree, a build never touches the tree it builds
from, and --local-version makes a newer build of the same code (for upgrade tests).

Each test works on its own copy of the tree (the files git knows, as the build scripts
export them) and builds with --nocheck: what is checked here is the build machinery,
not the code (the test run's main packages are built with the import check).
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest
from pkgfiles import code_version, copy_tree, need_tools, run


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the work tree, as the build scripts see it."""
    need_tools("git", "tar")
    return copy_tree(tmp_path / "tree")


def set_code_version(tree: Path, version: str) -> None:
    init = tree / "pxhostd" / "__init__.py"
    text = init.read_text().replace(f'__version__ = "{code_version()}"',
                                    f'__version__ = "{version}"')
    init.write_text(text)


def failing(*argv: str | Path, cwd: Path | None = None) -> str:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          check=False)
    assert proc.returncode != 0, f"{argv} succeeded:\n{proc.stdout}"
    return proc.stdout + proc.stderr


def snapshot(tree: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(tree)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(tree.rglob("*"))}


@pytest.mark.parametrize("script", ["build-deb", "build-rpm"])
def test_build_script_refuses_a_version_mismatch(tree: Path, script: str) -> None:
    set_code_version(tree, "9.9.9")
    message = failing(tree / "scripts" / script, "--nocheck", "--out", tree.parent / "out")
    assert "9.9.9" in message and code_version() in message and "make them the same" in message


def test_debian_rules_refuses_a_version_mismatch(tree: Path) -> None:
    need_tools("dpkg-buildpackage")
    set_code_version(tree, "9.9.9")
    message = failing("dpkg-buildpackage", "-us", "-uc", "-b", cwd=tree)
    assert f"debian/changelog says {code_version()}" in message and "9.9.9" in message


def test_rpm_spec_refuses_a_version_mismatch(tree: Path, tmp_path: Path) -> None:
    need_tools("rpmbuild")
    set_code_version(tree, "9.9.9")
    top = tmp_path / "rpmbuild"
    (top / "SOURCES").mkdir(parents=True)
    with tarfile.open(top / "SOURCES" / f"pxhostd-{code_version()}.tar.gz", "w:gz") as tar:
        tar.add(tree, arcname=f"pxhostd-{code_version()}")
    message = failing("rpmbuild", "--nodeps", "--define", f"_topdir {top}", "-bp",
                      tree / "rpm" / "pxhostd.spec")
    assert f"pxhostd.spec says {code_version()}" in message and "9.9.9" in message


def test_builds_leave_the_tree_untouched(tree: Path, tmp_path: Path) -> None:
    before = snapshot(tree)
    out = tmp_path / "out"
    deb = Path(run(tree / "scripts" / "build-deb", "--nocheck", "--out", out).strip())
    rpm = Path(run(tree / "scripts" / "build-rpm", "--nocheck", "--out", out).strip())
    assert deb.is_file() and deb.parent == out
    assert rpm.is_file() and rpm.parent == out
    assert snapshot(tree) == before


def test_local_version_builds_a_newer_package(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    deb = Path(run(tree / "scripts" / "build-deb", "--nocheck", "--local-version", "test1",
                   "--out", out).strip())
    rpm = Path(run(tree / "scripts" / "build-rpm", "--nocheck", "--local-version", "test1",
                   "--out", out).strip())
    newer = f"{code_version()}+test1"
    assert run("dpkg-deb", "-f", deb, "Version").strip() == newer
    run("dpkg", "--compare-versions", newer, "gt", code_version())
    assert run("rpm", "-qp", "--qf", "%{VERSION}", rpm) == newer
    vercmp = f'%{{lua: print(rpm.vercmp("{newer}", "{code_version()}"))}}'
    assert run("rpm", "--eval", vercmp).strip() == "1"
    unpacked = tmp_path / "root"
    run("dpkg-deb", "-x", deb, unpacked)
    init = unpacked / "usr/lib/python3/dist-packages/pxhostd/__init__.py"
    assert f'__version__ = "{newer}"' in init.read_text()


@pytest.mark.parametrize("script", ["build-deb", "build-rpm"])
def test_bad_local_version_is_refused(tree: Path, script: str) -> None:
    message = failing(tree / "scripts" / script, "--local-version", "1 2",
                      "--out", tree.parent / "out")
    assert "--local-version" in message
