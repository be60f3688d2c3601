"""The engine's vocabulary, shared by the daemon and the D-Bus surface.

`Engine` is what the daemon asks of the engine; `EngineHost` is all the engine may ask of
the daemon, so the engine layer never imports the daemon above it.

A Request names an operation and its parameters; the engine answers with an Outcome or
raises a PxError. `Request.key` decides whether two requests are the same work (then the
second joins the first instead of getting Busy).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from dbus_fast.aio.message_bus import MessageBus

from pxhostd.paths import Paths


@dataclass(frozen=True)
class Request:
    operation: str
    params: Mapping[str, Any] = field(default_factory=dict)
    txid: str = ""
    #: Who asked, for the record of where the desired state came from (not part of `key`).
    origin: str = ""

    @property
    def key(self) -> str:
        return json.dumps([self.operation, self.params], sort_keys=True, default=str)


@dataclass(frozen=True)
class Outcome:
    """A successful result. `changed` is False when the host already matched."""

    changed: bool
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[int, str], None]


def new_txid() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class EngineSnapshot:
    """What the daemon reports about the managed service between operations."""

    installed: bool = False
    service: str = "portworx"
    payload_name: str = ""
    payload_version: str = ""
    release: str = ""
    health_url: str = ""
    spec: Mapping[str, Any] | None = None
    #: Holds set by `pxhostctl stop` / `disable` (engine/holds.py).
    held_stopped: bool = False
    held_disabled: bool = False
    #: What `pxhostctl rollback` would return to ("" when there is none).
    previous_version: str = ""
    previous_release: str = ""
    #: Non-empty while a unit change waits for the service's next restart (why, in words).
    unit_change_pending: str = ""
    #: Where the desired state came from and when it was submitted (docs/spec-format.md).
    desired_source: str = ""
    desired_at: str = ""


@dataclass(frozen=True)
class Recovered:
    """What a recovery did, for the log and the history."""

    note: str
    #: The interrupted operation; None when only a corrupt journal was moved aside.
    txid: str | None = None
    operation: str = ""
    started: str = ""
    #: journal.RecoveryAction's value: roll-back, roll-forward, discard.
    action: str = ""
    #: Why the operation was interrupted (`interruption`).
    cause: str = ""
    version_before: str | None = None
    version_after: str | None = None

    def __str__(self) -> str:
        return self.note


class Engine(Protocol):
    async def start(self) -> None:
        """Connect to systemd and finish or roll back an interrupted operation."""

    def take_recovered(self) -> list[Recovered]:
        """What the recovery at start did (for the history); empty once taken."""

    async def interrupted(self, txid: str, reason: str) -> None:
        """pxhostd must stop while operation `txid` runs: persist why, for its recovery."""

    async def run(self, request: Request, progress: ProgressFn) -> Outcome: ...

    async def plan(self, raw_spec: Mapping[str, Any] | None) -> dict[str, Any]:
        """What applying the spec (None: the desired state) would change, and why."""

    def snapshot(self) -> EngineSnapshot: ...

    def reload_config(self) -> None:
        """Re-read the daemon's settings file (SIGHUP); keep the old ones if it is bad."""

    async def close(self) -> None: ...


class EngineHost(Protocol):
    """What the engine needs of the process it runs in (the daemon), and nothing more."""

    @property
    def paths(self) -> Paths: ...

    @property
    def bus(self) -> MessageBus | None:
        """The connected bus, for the systemd client (None before the daemon connects)."""

    def set_service_state(self, state: str) -> None:
        """The service's `ActiveState/SubState` changed ("": nothing is installed)."""
