"""Version order (as dpkg has it) and the install decision for the host daemon."""

from __future__ import annotations

import subprocess

import pytest
from debian.debian_support import NativeVersion

from pxhostd.pod.hostinstall import HostDaemon, Plan, decide, package_name, parse_version_output
from pxhostd.versions import BadVersion, compare_versions

PAIRS = [
    ("1.10", "1.7", 1),  # numbers, not strings (the old monitor got this wrong)
    ("0.1.0", "0.1.0", 0),
    ("0.1.0+test1", "0.1.0", 1),
    ("0.1.0", "0.1.1", -1),
    ("1.0~rc1", "1.0", -1),
    ("1.0", "1.0.0", -1),
    ("2.0", "10.0", -1),
    ("1:0.1", "2.0", 1),
    ("0.1.0-1", "0.1.0-2", -1),
    ("0.1.0-10", "0.1.0-9", 1),
    ("1.0a", "1.0", 1),
    ("1.0a", "1.0b", -1),
    ("1.0+b1", "1.0a", 1),
    ("01.2", "1.2", 0),
    ("1.2.3.4", "1.2.3", 1),
]


@pytest.mark.parametrize(("a", "b", "expected"), PAIRS)
def test_compare_versions(a: str, b: str, expected: int) -> None:
    assert compare_versions(a, b) == expected
    assert compare_versions(b, a) == -expected


@pytest.mark.parametrize(("a", "b", "expected"), PAIRS)
def test_agrees_with_dpkg(a: str, b: str, expected: int) -> None:
    for op, holds in (("lt", expected < 0), ("eq", expected == 0), ("gt", expected > 0)):
        rc = subprocess.run(["dpkg", "--compare-versions", a, op, b], check=False).returncode
        assert (rc == 0) is holds, (a, op, b)


@pytest.mark.parametrize(("a", "b", "expected"), PAIRS)
def test_the_pure_python_order_agrees(a: str, b: str, expected: int) -> None:
    """The pod image has no python3-apt: python3-debian's own comparison is the one used."""
    va, vb = NativeVersion(a), NativeVersion(b)
    assert ((va > vb) - (va < vb)) == expected


@pytest.mark.parametrize("text", ["", "abc", "1.0 beta", "-1", "1.0/2"])
def test_not_a_version(text: str) -> None:
    with pytest.raises(BadVersion):
        compare_versions(text, "1.0")


def test_version_output() -> None:
    assert parse_version_output("pxhostd 0.1.0\n") == "0.1.0"
    assert parse_version_output("pxhostd 0.1.0+test1") == "0.1.0+test1"
    for bad in ("0.1.0", "pxhostd", "pxhostd 0.1 extra", "Traceback ..."):
        with pytest.raises(BadVersion):
            parse_version_output(bad)


@pytest.mark.parametrize(
    ("host", "image", "plan"),
    [
        (HostDaemon(), "0.1.0", Plan.INSTALL),
        (HostDaemon(problem="exit 1"), "0.1.0", Plan.REPAIR),
        (HostDaemon("0.1.0"), "0.1.0", Plan.NOTHING),
        (HostDaemon("0.1.0"), "0.1.0+b1", Plan.UPGRADE),
        (HostDaemon("0.9"), "0.10", Plan.UPGRADE),
        (HostDaemon("0.10"), "0.9", Plan.KEEP_NEWER),
    ],
)
def test_decide(host: HostDaemon, image: str, plan: Plan) -> None:
    assert decide(host, image) is plan


def test_package_name_leaves_the_epoch_out() -> None:
    assert package_name("1:0.2.0") == "pxhostd_0.2.0_all.deb"
    assert package_name("0.1.0+b1") == "pxhostd_0.1.0+b1_all.deb"
