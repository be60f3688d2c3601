"""The image's payload placed on the host: verified, idempotent, replaced atomically."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pxhostd.errors import InvalidPayload
from pxhostd.pod.hostpayload import place_payload

REPO = Path(__file__).resolve().parents[3]
BUILD = REPO / "container" / "demo-payload" / "build.py"


@pytest.fixture
def image_payload(tmp_path: Path) -> Path:
    out = tmp_path / "image" / "payload"
    subprocess.run([sys.executable, str(BUILD), str(out), "--version", "1.2.3"], check=True)
    return out


def test_copied_then_left_alone(image_payload: Path, tmp_path: Path) -> None:
    dest = tmp_path / "host" / "payloads"
    first = place_payload(image_payload, dest)
    assert first.changed and first.path == dest / "portworx-demo-1.2.3"
    for name in ("pxdemo", "VERSION", "payload.yaml"):
        assert (first.path / name).read_bytes() == (image_payload / name).read_bytes()
    assert (first.path / "pxdemo").stat().st_mode & 0o111
    inode = (first.path / "pxdemo").stat().st_ino
    second = place_payload(image_payload, dest)
    assert not second.changed
    assert (second.path / "pxdemo").stat().st_ino == inode
    assert sorted(p.name for p in dest.iterdir()) == ["portworx-demo-1.2.3"]


def test_a_tampered_host_copy_is_replaced(image_payload: Path, tmp_path: Path) -> None:
    dest = tmp_path / "host" / "payloads"
    placed = place_payload(image_payload, dest)
    (placed.path / "pxdemo").write_text("#!/bin/sh\nexit 0\n")
    again = place_payload(image_payload, dest)
    assert again.changed
    assert (again.path / "pxdemo").read_bytes() == (image_payload / "pxdemo").read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == ["portworx-demo-1.2.3"]  # no temp left


def test_a_bad_image_payload_places_nothing(image_payload: Path, tmp_path: Path) -> None:
    (image_payload / "VERSION").write_text("changed\n")
    dest = tmp_path / "host" / "payloads"
    with pytest.raises(InvalidPayload, match="sha256 mismatch"):
        place_payload(image_payload, dest)
    assert not dest.exists()
