"""Administrative holds: an explicit stop or disable that a later reconcile must respect.

`pxhostctl stop` means "keep it down" until `start`/`restart`; `disable` means "don't enable
at boot" until `enable`. Without this record the next reconcile (a pod restart, a reload)
would silently undo the administrator's decision.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pxhostd.hostfs import atomic_write, remove_file


@dataclass(frozen=True)
class Holds:
    stopped: bool = False
    disabled: bool = False


class HoldStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Holds:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return Holds()
        except (OSError, ValueError):
            return Holds()  # unreadable: fail open to the spec, the safe default
        return Holds(stopped=doc.get("stopped") is True, disabled=doc.get("disabled") is True)

    def save(self, holds: Holds) -> None:
        if holds == Holds():
            remove_file(self.path)
        else:
            atomic_write(self.path, json.dumps(asdict(holds), sort_keys=True) + "\n", 0o600)
