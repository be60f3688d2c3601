"""Every wire name pxhostd uses to talk to systemd, and the timeouts around those calls.

How the timeouts nest: each public client call takes one `timeout` that bounds the whole
operation (method call *and* the wait for JobRemoved), so the engine can give an upgrade
step a single budget.  `METHOD_TIMEOUT` bounds calls that start no job (property reads,
EnableUnitFiles, ...): systemd answers those at once unless it is stuck, so a short bound
turns a hung manager into a named error instead of a hung daemon.  `JOB_TIMEOUT` is only a
default for callers that do not pass their own; it sits above systemd's own
DefaultTimeoutStartSec (90 s) so systemd normally reports `timeout` first.  The journal
reader has its own small bound: it only collects evidence for an error message.
"""

from __future__ import annotations

from typing import Final

BUS_NAME: Final = "org.freedesktop.systemd1"
MANAGER_PATH: Final = "/org/freedesktop/systemd1"
UNIT_PATH_PREFIX: Final = "/org/freedesktop/systemd1/unit/"

MANAGER_INTERFACE: Final = "org.freedesktop.systemd1.Manager"
UNIT_INTERFACE: Final = "org.freedesktop.systemd1.Unit"
SERVICE_INTERFACE: Final = "org.freedesktop.systemd1.Service"
PROPERTIES_INTERFACE: Final = "org.freedesktop.DBus.Properties"

DBUS_NAME: Final = "org.freedesktop.DBus"
DBUS_PATH: Final = "/org/freedesktop/DBus"
DBUS_INTERFACE: Final = "org.freedesktop.DBus"

# Unit type suffix -> the interface carrying that type's own properties (Result, ...).
TYPE_INTERFACES: Final = {
    "service": SERVICE_INTERFACE,
    "socket": "org.freedesktop.systemd1.Socket",
    "mount": "org.freedesktop.systemd1.Mount",
    "timer": "org.freedesktop.systemd1.Timer",
    "path": "org.freedesktop.systemd1.Path",
    "swap": "org.freedesktop.systemd1.Swap",
    "scope": "org.freedesktop.systemd1.Scope",
}

# Manager methods.
SUBSCRIBE: Final = "Subscribe"
UNSUBSCRIBE: Final = "Unsubscribe"
START_UNIT: Final = "StartUnit"
STOP_UNIT: Final = "StopUnit"
RESTART_UNIT: Final = "RestartUnit"
LOAD_UNIT: Final = "LoadUnit"
RELOAD: Final = "Reload"
ENABLE_UNIT_FILES: Final = "EnableUnitFiles"
DISABLE_UNIT_FILES: Final = "DisableUnitFiles"
RESET_FAILED_UNIT: Final = "ResetFailedUnit"

# Unit methods.
UNIT_REF: Final = "Ref"
UNIT_UNREF: Final = "Unref"

# Signals.
JOB_REMOVED: Final = "JobRemoved"
PROPERTIES_CHANGED: Final = "PropertiesChanged"
NAME_OWNER_CHANGED: Final = "NameOwnerChanged"

# org.freedesktop.DBus methods.
ADD_MATCH: Final = "AddMatch"
REMOVE_MATCH: Final = "RemoveMatch"
GET_NAME_OWNER: Final = "GetNameOwner"

# Properties.
GET_ALL: Final = "GetAll"
P_LOAD_STATE: Final = "LoadState"
P_ACTIVE_STATE: Final = "ActiveState"
P_SUB_STATE: Final = "SubState"
P_INVOCATION_ID: Final = "InvocationID"
P_UNIT_FILE_STATE: Final = "UnitFileState"
P_NEED_DAEMON_RELOAD: Final = "NeedDaemonReload"
P_FRAGMENT_PATH: Final = "FragmentPath"
P_CONDITION_RESULT: Final = "ConditionResult"
P_CONDITION_TIMESTAMP: Final = "ConditionTimestamp"
P_RESULT: Final = "Result"
P_MAIN_PID: Final = "MainPID"
P_EXEC_MAIN_STATUS: Final = "ExecMainStatus"
P_STATUS_TEXT: Final = "StatusText"
P_N_RESTARTS: Final = "NRestarts"

# Errors systemd (and the bus) reply with.
ERR_NO_SUCH_UNIT: Final = "org.freedesktop.systemd1.NoSuchUnit"
ERR_UNIT_MASKED: Final = "org.freedesktop.systemd1.UnitMasked"
ERR_ALREADY_SUBSCRIBED: Final = "org.freedesktop.systemd1.AlreadySubscribed"
ERR_ACCESS_DENIED: Final = "org.freedesktop.DBus.Error.AccessDenied"
ERR_SERVICE_UNKNOWN: Final = "org.freedesktop.DBus.Error.ServiceUnknown"
ERR_NO_REPLY: Final = "org.freedesktop.DBus.Error.NoReply"

#: Job mode for every job pxhostd queues: replace a conflicting queued job.
JOB_MODE_REPLACE: Final = "replace"

# Timeouts, seconds (see the module docstring for how they nest).
METHOD_TIMEOUT: Final = 25.0
JOB_TIMEOUT: Final = 120.0
JOURNAL_TIMEOUT: Final = 5.0

#: How long a JobRemoved that nobody waits for (yet) is kept: the reply carrying the
#: job path can reach the waiter after the signal, never minutes after it.
EARLY_JOB_RESULT_TTL: Final = 60.0
EARLY_JOB_RESULT_MAX: Final = 512
