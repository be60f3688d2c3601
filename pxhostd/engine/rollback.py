"""The previous release and its spec, kept for `pxhostctl rollback`.

After an install, upgrade, reconfigure or rollback that changed the host, the applied
state it replaced is written to `previous.json` (atomically, root only). The pruning after
every apply keeps the release before it, so that release is still staged. A rollback is an
apply of the previous spec, with everything an apply has (journal, progress, its own
rollback when the previous release does not come up), after which the state it left is
the previous one: a second rollback goes forward again.

previous.json is written after the apply committed; a crash in between loses only the
rollback target (rollback then says there is none), never host consistency.
"""

from __future__ import annotations

from pathlib import Path

from pxhostd.engine.state import (
    APPLIED_SCHEMA,
    STATE_FILE_MODE,
    AppliedState,
    dump_json,
    read_json_object,
)
from pxhostd.errors import InvalidSpec, NoPreviousRelease
from pxhostd.hostfs import atomic_write, remove_file
from pxhostd.payload.manifest import load_manifest
from pxhostd.payload.staging import Releases
from pxhostd.spec.model import Spec

PREVIOUS_FILE = "previous.json"


class PreviousStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> AppliedState | None:
        doc = read_json_object(self.path, "previous state", APPLIED_SCHEMA)
        return None if doc is None else AppliedState.from_json(doc, self.path)

    def remember(self, before: AppliedState | None, after: AppliedState | None) -> None:
        """Keep `before` as the rollback target when the apply really replaced it."""
        if before is None or after is None:
            return
        if (before.release_id, before.spec) == (after.release_id, after.spec):
            return
        atomic_write(self.path, dump_json(before.to_json()), mode=STATE_FILE_MODE)

    def clear(self) -> bool:
        return remove_file(self.path)


def rollback_target(store: PreviousStore, releases: Releases) -> tuple[AppliedState, Spec]:
    """The previous state and its spec, or NoPreviousRelease saying why there is none."""
    previous = store.load()
    if previous is None:
        raise NoPreviousRelease(
            "cannot roll back: no previous release is recorded (nothing was upgraded or "
            "reconfigured since the install)"
        )
    if not releases.exists(previous.release_id):
        raise NoPreviousRelease(
            f"cannot roll back: the previous release {previous.release_id} is no longer kept"
        )
    try:
        spec = previous.spec.to_spec()
        manifest = load_manifest(Path(spec.payload))
    except InvalidSpec as exc:
        raise NoPreviousRelease(f"cannot roll back to {previous.release_id}: {exc}") from exc
    if Releases.release_id(manifest.version, manifest.digest) != previous.release_id:
        raise NoPreviousRelease(
            f"cannot roll back to {previous.version}: its payload directory {spec.payload} "
            f"now holds {manifest.name} {manifest.version}, not release {previous.release_id}"
        )
    return previous, spec
