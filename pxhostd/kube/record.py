"""The drain's record on the host: what a restarted pod resumes or undoes from.

Written (atomically, fsync'd) before the node is cordoned, so that whatever instant the pod
dies at, its successor knows whether the cordon was already there before the drain (then
it is the administrator's and is left alone) or is the drain's own (then it is lifted when
the change is done or given up). It lives in the pod's own directory on the host
(`/opt/pwx/pod/`, mounted at the same path), beside the .deb and payload copies.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pxhostd import hostfs
from pxhostd.errors import HostStateError

DRAIN_RECORD = Path("/opt/pwx/pod/drain.json")
FORMAT = 1


@dataclass(frozen=True)
class DrainRecord:
    node: str
    #: The node was unschedulable before the drain: its cordon is not ours to lift.
    was_cordoned: bool
    #: The release the drain makes way for.
    target: str
    #: "draining" (evictions may be under way) or "applying" (handed to pxhostd).
    phase: str = "draining"
    started: float = 0.0

    @property
    def cordoned_by_us(self) -> bool:
        return not self.was_cordoned


def load(path: Path = DRAIN_RECORD) -> DrainRecord | None:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise HostStateError(f"cannot read the drain record {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise HostStateError(f"the drain record {path} has an unknown format")
    try:
        return DrainRecord(
            node=str(doc["node"]), was_cordoned=bool(doc["was_cordoned"]),
            target=str(doc["target"]), phase=str(doc["phase"]),
            started=float(doc.get("started", 0.0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise HostStateError(f"the drain record {path} is incomplete: {exc}") from None


def new_record(node: str, was_cordoned: bool, target: str) -> DrainRecord:
    return DrainRecord(node=node, was_cordoned=was_cordoned, target=target,
                       started=time.time())


def save(record: DrainRecord, path: Path = DRAIN_RECORD) -> None:
    doc = {"format": FORMAT, **asdict(record)}
    hostfs.atomic_write(path, json.dumps(doc, sort_keys=True) + "\n", mode=0o600)


def clear(path: Path = DRAIN_RECORD) -> None:
    hostfs.remove_file(path)
