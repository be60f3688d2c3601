"""Typed views of what systemd reports about a unit, tolerant of values we do not know.

systemd grows new states over releases (ActiveState `maintenance` arrived in 250, job
results `frozen`/`once` later).  An unknown string must never crash the daemon: it maps to
UNKNOWN and is logged once.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from pxhostd.systemd import constants as c

log = logging.getLogger(__name__)

_reported_unknown: set[tuple[str, str]] = set()


class _Tolerant(enum.StrEnum):
    @classmethod
    def parse(cls, raw: object) -> Self:
        text = raw if isinstance(raw, str) else str(raw)
        try:
            return cls(text)
        except ValueError:
            key = (cls.__name__, text)
            if key not in _reported_unknown:
                _reported_unknown.add(key)
                log.warning("unknown %s from systemd: %r", cls.__name__, text)
            return cls("unknown")


class LoadState(_Tolerant):
    STUB = "stub"
    LOADED = "loaded"
    NOT_FOUND = "not-found"
    BAD_SETTING = "bad-setting"
    ERROR = "error"
    MERGED = "merged"
    MASKED = "masked"
    UNKNOWN = "unknown"


class ActiveState(_Tolerant):
    ACTIVE = "active"
    RELOADING = "reloading"
    INACTIVE = "inactive"
    FAILED = "failed"
    ACTIVATING = "activating"
    DEACTIVATING = "deactivating"
    MAINTENANCE = "maintenance"
    UNKNOWN = "unknown"


class JobResultKind(_Tolerant):
    DONE = "done"
    CANCELED = "canceled"
    TIMEOUT = "timeout"
    FAILED = "failed"
    DEPENDENCY = "dependency"
    SKIPPED = "skipped"
    INVALID = "invalid"
    ASSERT = "assert"
    UNSUPPORTED = "unsupported"
    COLLECTED = "collected"
    ONCE = "once"
    FROZEN = "frozen"
    UNKNOWN = "unknown"


class UnitFileState(_Tolerant):
    ENABLED = "enabled"
    ENABLED_RUNTIME = "enabled-runtime"
    LINKED = "linked"
    LINKED_RUNTIME = "linked-runtime"
    ALIAS = "alias"
    MASKED = "masked"
    MASKED_RUNTIME = "masked-runtime"
    STATIC = "static"
    DISABLED = "disabled"
    INDIRECT = "indirect"
    GENERATED = "generated"
    TRANSIENT = "transient"
    BAD = "bad"
    INVALID = "invalid"
    NONE = ""  # a unit without a unit file (or not found) reports an empty string
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class JobResult:
    """What JobRemoved said about one job."""

    unit: str
    job: str
    result: JobResultKind

    @property
    def done(self) -> bool:
        return self.result is JobResultKind.DONE


@dataclass(frozen=True)
class UnitActivity:
    """The part of a unit's state that watchers mirror."""

    active_state: ActiveState
    sub_state: str


@dataclass(frozen=True)
class UnitFileChange:
    """One entry of EnableUnitFiles/DisableUnitFiles: (`symlink`|`unlink`|..., file, dest)."""

    type: str
    file: str
    destination: str


@dataclass(frozen=True)
class UnitState:
    """A unit's state as read right now (Unit interface plus its type's interface)."""

    name: str
    load_state: LoadState
    active_state: ActiveState
    sub_state: str
    result: str
    invocation_id: str
    main_pid: int
    exec_main_status: int
    unit_file_state: UnitFileState
    need_daemon_reload: bool
    fragment_path: str
    status_text: str
    n_restarts: int | None
    condition_result: bool

    @property
    def is_active(self) -> bool:
        return self.active_state is ActiveState.ACTIVE

    @property
    def activity(self) -> UnitActivity:
        return UnitActivity(self.active_state, self.sub_state)

    def describe(self) -> str:
        """One line for error messages and logs."""
        parts = [
            f"{self.name}: {self.load_state}/{self.active_state}/{self.sub_state}",
            f"result={self.result or '-'}",
        ]
        if self.main_pid:
            parts.append(f"main_pid={self.main_pid}")
        if self.exec_main_status:
            parts.append(f"exit_status={self.exec_main_status}")
        if not self.condition_result:
            parts.append("condition not met")
        if self.status_text:
            parts.append(f"status={self.status_text!r}")
        return ", ".join(parts)

    @classmethod
    def from_properties(
        cls, name: str, unit: Mapping[str, object], typed: Mapping[str, object]
    ) -> UnitState:
        """Build from the GetAll results of the Unit and the type interface."""
        restarts = typed.get(c.P_N_RESTARTS)
        return cls(
            name=name,
            load_state=LoadState.parse(unit.get(c.P_LOAD_STATE, "unknown")),
            active_state=ActiveState.parse(unit.get(c.P_ACTIVE_STATE, "unknown")),
            sub_state=_text(unit.get(c.P_SUB_STATE)),
            result=_text(typed.get(c.P_RESULT)),
            invocation_id=invocation_hex(unit.get(c.P_INVOCATION_ID)),
            main_pid=_int(typed.get(c.P_MAIN_PID)),
            exec_main_status=_int(typed.get(c.P_EXEC_MAIN_STATUS)),
            unit_file_state=UnitFileState.parse(unit.get(c.P_UNIT_FILE_STATE, "")),
            need_daemon_reload=bool(unit.get(c.P_NEED_DAEMON_RELOAD, False)),
            fragment_path=_text(unit.get(c.P_FRAGMENT_PATH)),
            status_text=_text(typed.get(c.P_STATUS_TEXT)),
            n_restarts=restarts if isinstance(restarts, int) else None,
            # ConditionResult means something only once conditions were checked: a unit
            # loaded afresh (after garbage collection) reports false with timestamp 0.
            condition_result=bool(unit.get(c.P_CONDITION_RESULT, True))
            or not _int(unit.get(c.P_CONDITION_TIMESTAMP)),
        )


def invocation_hex(raw: object) -> str:
    """InvocationID comes as `ay` (16 bytes, empty before the first start)."""
    if isinstance(raw, bytes | bytearray):
        return bytes(raw).hex()
    if isinstance(raw, list) and all(isinstance(b, int) for b in raw):
        return bytes(raw).hex()
    return ""


def bus_path_escape(label: str) -> str:
    """systemd's bus_label_escape: keep [A-Za-z0-9] (no digit first), `_xx` the rest."""
    if not label:
        return "_"
    out = []
    for i, byte in enumerate(label.encode()):
        ch = chr(byte)
        if ch.isascii() and (ch.isalpha() or (i > 0 and ch.isdigit())):
            out.append(ch)
        else:
            out.append(f"_{byte:02x}")
    return "".join(out)


def unit_object_path(name: str) -> str:
    """The object path systemd gives a unit (stable across unload and reload)."""
    return c.UNIT_PATH_PREFIX + bus_path_escape(name)


def type_interface(name: str) -> str | None:
    """The interface with the type's own properties, None for types without (targets)."""
    return c.TYPE_INTERFACES.get(name.rsplit(".", 1)[-1])


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
