"""Small payload trees on real files for the staging tests."""

from __future__ import annotations

import hashlib
from pathlib import Path


def write_payload(root: Path, files: dict[str, tuple[bytes, int]]) -> dict[str, str]:
    """Write each path's (content, mode) below `root`; path -> sha256, as a manifest lists."""
    digests: dict[str, str] = {}
    for rel, (data, mode) in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        p.chmod(mode)
        digests[rel] = hashlib.sha256(data).hexdigest()
    return digests
