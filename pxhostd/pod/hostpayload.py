"""Put the payload the image carries onto the host, where the daemon can stage it.

The image ships a payload directory (built when the image is built). The pod copies it to
/opt/pwx/pod/payloads/<name>-<version> (the host's /opt/pwx, mounted at the same path),
checking every file against the manifest's sha256 on the way in and again in place. An
identical copy already there is left alone; a different one under the same name is
replaced in one atomic step. The daemon then stages it as a release like any payload.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from pxhostd.errors import InvalidPayload
from pxhostd.hostfs import exchange_paths, fsync_dir, remove_tree, sweep_temp_files, temp_name
from pxhostd.payload.manifest import (
    MANIFEST_NAME,
    Manifest,
    load_manifest,
    verify_payload_files,
)
from pxhostd.pod.hostinstall import HOST_POD_DIR, IMAGE_DIR

IMAGE_PAYLOAD = IMAGE_DIR / "payload"
HOST_PAYLOADS = HOST_POD_DIR / "payloads"

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlacedPayload:
    path: Path
    manifest: Manifest
    changed: bool


def _dir_name(manifest: Manifest) -> str:
    name = f"{manifest.name}-{manifest.version}"
    if not _SAFE_NAME.fullmatch(name):
        name = f"payload-{manifest.digest[:16]}"
    return name


def _matches(path: Path, manifest: Manifest) -> bool:
    try:
        if load_manifest(path) != manifest:
            return False
        verify_payload_files(path, manifest)
    except InvalidPayload:
        return False
    return True


def _copy_tree(src: Path, dst: Path, manifest: Manifest) -> None:
    dst.mkdir(mode=0o755)
    for rel in [MANIFEST_NAME, *(rel for rel, _ in manifest.files)]:
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        shutil.copyfile(src / rel, target)
        os.chmod(target, 0o755 if os.stat(src / rel).st_mode & 0o100 else 0o644)
        with open(target, "rb") as f:
            os.fsync(f.fileno())
    for dirpath, _dirs, _files in os.walk(dst):
        fsync_dir(Path(dirpath))


def place_payload(src: Path = IMAGE_PAYLOAD, dest_root: Path = HOST_PAYLOADS) -> PlacedPayload:
    """Copy the verified payload `src` below `dest_root`; InvalidPayload if `src` is bad."""
    manifest = load_manifest(src)
    verify_payload_files(src, manifest)
    dest = dest_root / _dir_name(manifest)
    if dest.is_dir() and _matches(dest, manifest):
        return PlacedPayload(dest, manifest, changed=False)
    dest_root.mkdir(parents=True, exist_ok=True, mode=0o755)
    sweep_temp_files(dest_root)
    tmp = temp_name(dest_root, dest.name)
    try:
        _copy_tree(src, tmp, manifest)
        verify_payload_files(tmp, manifest)
        if os.path.lexists(dest):
            exchange_paths(tmp, dest)  # tmp now holds the old copy
            remove_tree(tmp)
        else:
            os.rename(tmp, dest)
            fsync_dir(dest_root)
    except BaseException:
        if os.path.lexists(tmp):
            remove_tree(tmp)
        raise
    _log.info("payload %s %s placed at %s", manifest.name, manifest.version, dest)
    return PlacedPayload(dest, manifest, changed=True)
