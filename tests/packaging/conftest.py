"""The built packages under test: $PXHOSTD_DEB / $PXHOSTD_RPM, else built once per session.

Building goes through scripts/build-deb and scripts/build-rpm (the same commands a
developer and CI use), into a session directory, never the work tree. Both build from one
snapshot of the tree taken at the start, so the .deb and the .rpm hold the same code even
while the tree changes. Missing tools fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pkgfiles import copy_tree, need_tools, run


@pytest.fixture(scope="session")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_tools("git")
    return copy_tree(tmp_path_factory.mktemp("snapshot") / "pxhostd")


def _package(env: str, source: Path, script: str, out: Path, *args: str) -> Path:
    given = os.environ.get(env)
    if given:
        path = Path(given)
        if not path.is_file():
            pytest.fail(f"{env}={given} is not a file", pytrace=False)
        return path.resolve()
    printed = run(source / "scripts" / script, "--out", out, *args).strip().splitlines()
    path = Path(printed[-1]) if printed else out / "missing"
    if not path.is_file():
        pytest.fail(f"scripts/{script} printed {printed!r}, not a package path", pytrace=False)
    return path


@pytest.fixture(scope="session")
def deb_file(snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_tools("dpkg-buildpackage", "dpkg-deb", "dh")
    return _package("PXHOSTD_DEB", snapshot, "build-deb", tmp_path_factory.mktemp("deb"))


@pytest.fixture(scope="session")
def upgrade_deb_file(snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A newer build of the same code ($PXHOSTD_DEB_UPGRADE, else --local-version upgrade1)."""
    need_tools("dpkg-buildpackage", "dpkg-deb", "dh")
    out = tmp_path_factory.mktemp("deb-upgrade")
    return _package("PXHOSTD_DEB_UPGRADE", snapshot, "build-deb", out,
                    "--local-version", "upgrade1")


@pytest.fixture(scope="session")
def rpm_file(snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_tools("rpmbuild", "rpm")
    return _package("PXHOSTD_RPM", snapshot, "build-rpm", tmp_path_factory.mktemp("rpm"))


@pytest.fixture(scope="session")
def deb_root(deb_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .deb unpacked (`dpkg-deb -x`), its control area in DEBIAN/."""
    root = tmp_path_factory.mktemp("deb-root")
    run("dpkg-deb", "-x", deb_file, root)
    run("dpkg-deb", "-e", deb_file, root / "DEBIAN")
    return root


@pytest.fixture(scope="session")
def rpm_root(rpm_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .rpm installed with `rpm -i --nodeps` into a scratch root (own database).

    --noscripts: the scratch root has no shell to run scriptlets in; the scriptlets are
    checked on their own.
    """
    root = tmp_path_factory.mktemp("rpm-root")
    run("rpm", "--root", root, "--dbpath", "/var/lib/rpm", "--initdb")
    run(
        "rpm", "-i", "--nodeps", "--noscripts",
        "--root", root, "--dbpath", "/var/lib/rpm", rpm_file,
    )
    return root
