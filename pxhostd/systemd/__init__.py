"""Client for systemd's Manager and Unit objects over D-Bus (dbus-fast)."""

from pxhostd.systemd.client import Systemd
from pxhostd.systemd.errors import NoSuchUnit, UnitMasked
from pxhostd.systemd.journal import unit_journal_tail
from pxhostd.systemd.unit import (
    ActiveState,
    JobResult,
    JobResultKind,
    LoadState,
    UnitActivity,
    UnitFileChange,
    UnitFileState,
    UnitState,
    bus_path_escape,
    unit_object_path,
)
from pxhostd.systemd.watch import UnitWatch

__all__ = [
    "ActiveState",
    "JobResult",
    "JobResultKind",
    "LoadState",
    "NoSuchUnit",
    "Systemd",
    "UnitActivity",
    "UnitFileChange",
    "UnitFileState",
    "UnitMasked",
    "UnitState",
    "UnitWatch",
    "bus_path_escape",
    "unit_journal_tail",
    "unit_object_path",
]
