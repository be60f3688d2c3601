"""One JSON shape for a transaction's outcome, whether it comes from a running transaction,
its result, or the history file: the same keys everywhere, `null` for absent, ISO 8601 UTC
timestamps, `txid` as the only id name (`path`, the transaction's D-Bus object while it is
exported, is for programs; null in the history). pxhostctl(1) documents these keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pxhostd.errors import ERROR_PREFIX

#: Every key of a result object, in the order the man page lists them.
RESULT_KEYS = (
    "txid",
    "operation",
    "result",
    "percent",
    "message",
    "error",
    "started",
    "finished",
    "version_before",
    "version_after",
    "restarted",
    "reason",
    "path",
)

RUNNING = "running"
SUCCESS = "success"
NOTHING_TO_DO = "nothing-to-do"
FAILED = "failed"
ROLLED_BACK = "rolled-back"


def iso(ts: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 UTC with milliseconds; None for 0/absent."""
    if not ts:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def _opt_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _opt_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def from_transaction(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A Transaction's GetResult() (running or finished) in the common shape."""
    details = doc.get("details") or {}
    error = _opt_str(str(doc.get("error_name") or "").removeprefix(ERROR_PREFIX))
    if not doc.get("finished"):
        result = RUNNING
    elif doc.get("success"):
        result = SUCCESS if doc.get("changed") else NOTHING_TO_DO
    else:
        result = ROLLED_BACK if error == "RolledBack" else FAILED
    message = str(doc.get("error_message") or "") if error else str(doc.get("message") or "")
    return {
        "txid": _opt_str(doc.get("id")),
        "operation": _opt_str(doc.get("operation")),
        "result": result,
        "percent": int(doc.get("percent") or 0),
        "message": message,
        "error": error,
        "started": iso(doc.get("started_at")),
        "finished": iso(doc.get("finished_at")) if doc.get("finished") else None,
        "version_before": _opt_str(details.get("version_before")),
        "version_after": _opt_str(details.get("version_after")),
        "restarted": _opt_bool(details.get("restarted")),
        "reason": _opt_str(details.get("reason")),
        "path": _opt_str(doc.get("path")),
    }


def from_history(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A History() entry in the common shape (finished by definition)."""
    return {
        "txid": _opt_str(doc.get("txid")),
        "operation": _opt_str(doc.get("operation")),
        "result": str(doc.get("result") or FAILED),
        "percent": 100,
        "message": str(doc.get("message") or ""),
        "error": _opt_str(doc.get("error")),
        "started": _opt_str(doc.get("started")),
        "finished": _opt_str(doc.get("finished")),
        "version_before": _opt_str(doc.get("version_before")),
        "version_after": _opt_str(doc.get("version_after")),
        "restarted": _opt_bool(doc.get("restarted")),
        "reason": _opt_str(doc.get("reason")),
        "path": None,
    }
