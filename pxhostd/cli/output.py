"""How pxhostctl shows things: human text by default, JSON with --json, progress lines."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

#: What the human output prints for a value nobody knows (never an empty column).
UNKNOWN = "-"


def print_json(value: Any, out: TextIO = sys.stdout) -> None:
    out.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def shown(value: Any) -> str:
    if value is None or value == "":
        return UNKNOWN
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _holds(status: Mapping[str, Any]) -> str:
    held = []
    if status.get("held_stopped") is True:
        held.append("stopped (until start or restart)")
    if status.get("held_disabled") is True:
        held.append("disabled at boot (until enable)")
    if held:
        return ", ".join(held)
    if "held_stopped" in status or "held_disabled" in status:
        return "none"
    return UNKNOWN


def _payload(status: Mapping[str, Any]) -> str:
    name, version = status.get("payload_name"), status.get("payload_version")
    if not name and not version:
        return UNKNOWN
    text = " ".join(str(v) for v in (name, version) if v)
    if status.get("release"):
        text += f" (release {status['release']})"
    return text


def _previous(status: Mapping[str, Any]) -> str:
    version, release = status.get("previous_version"), status.get("previous_release")
    if not version and not release:
        return "none" if "previous_release" in status else UNKNOWN
    return f"{version or UNKNOWN} (release {release or UNKNOWN}; `pxhostctl rollback`)"


def _desired(status: Mapping[str, Any]) -> str:
    source, at = status.get("desired_source"), status.get("desired_at")
    if not source:
        return UNKNOWN
    return f"{source}, {at}" if at else str(source)


def _transaction(status: Mapping[str, Any]) -> str:
    txid = status.get("active_txid")
    if txid:
        return f"{txid} (follow: pxhostctl watch {txid})"
    active = status.get("active_transaction")
    return "none" if active in ("/", "", None) else str(active)


def status_lines(status: Mapping[str, Any]) -> list[tuple[str, str]]:
    service = status.get("service") or ""
    unit = f"{service}.service" if service else UNKNOWN
    return [
        ("daemon", f"pxhostd {shown(status.get('daemon_version'))}"),
        ("state", shown(status.get("state"))),
        ("service", unit),
        ("installed", shown(status.get("installed"))),
        ("service state", shown(status.get("service_state"))),
        ("enabled", shown(status.get("unit_file_state"))),
        ("unit status", shown(status.get("status_text"))),
        ("payload", _payload(status)),
        ("payload version", shown(status.get("payload_version"))),
        ("pending", shown(status.get("unit_change_pending"))),
        ("previous", _previous(status)),
        ("holds", _holds(status)),
        ("desired state", _desired(status)),
        ("transaction", _transaction(status)),
        ("last error", shown(status.get("last_error"))),
    ]


def print_status(status: Mapping[str, Any], out: TextIO = sys.stdout) -> None:
    lines = status_lines(status)
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        out.write(f"{label + ':':<{width + 1}} {value}\n")


HISTORY_HEADER = ("FINISHED", "OPERATION", "RESULT", "VERSIONS", "TXID", "MESSAGE")


def print_history(entries: Sequence[Mapping[str, Any]], out: TextIO = sys.stdout) -> None:
    """A table: header, then one row per entry; columns sized to their widest value."""
    if not entries:
        out.write("no operations recorded\n")
        return
    rows = [HISTORY_HEADER]
    for e in entries:
        before, after = e.get("version_before"), e.get("version_after")
        versions = f"{before or UNKNOWN} -> {after or UNKNOWN}" if before or after else UNKNOWN
        rows.append((
            shown(e.get("finished") or e.get("started")),
            shown(e.get("operation")),
            shown(e.get("result")),
            versions,
            shown(e.get("txid")),
            shown(e.get("message")),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(HISTORY_HEADER) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")


def print_plan(plan: Mapping[str, Any], out: TextIO = sys.stdout) -> None:
    """What `plan` found: the changes, then what happens to the service and why."""
    if not plan.get("changes"):
        out.write(f"nothing to do: {plan.get('summary') or 'the host matches the spec'}\n")
        return
    out.write(f"{plan.get('summary')}\n")
    for change in plan.get("changes") or []:
        out.write(f"  {change}\n")
    action = plan.get("service_action") or UNKNOWN
    reasons = plan.get("reasons") or []
    why = "; ".join(str(r) for r in reasons) if reasons else UNKNOWN
    out.write(f"service: {action} ({why})\n")


def _elapsed(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """One live line on a terminal; one plain line per step otherwise (logs, pipes, CI).

    The live line shows the step's elapsed time and, while the daemon waits for the
    service, the unit's own `STATUS=` text; the step message carries the wait's deadline.
    """

    def __init__(self, out: TextIO = sys.stderr, *, live: bool | None = None) -> None:
        self.out = out
        self.live = out.isatty() if live is None else live
        self._step = ""
        self._since = time.monotonic()
        self._status_text = ""
        self._drawn = ""

    def __call__(self, percent: int, message: str) -> None:
        step = f"[{percent:3d}%] {message}"
        if step == self._step:
            return
        self._step = step
        self._since = time.monotonic()
        self._status_text = ""
        if self.live:
            self._draw()
        else:
            self.out.write(step + "\n")
            self.out.flush()

    def note_status(self, text: str) -> None:
        """The unit's current STATUS= text (shown on the live line only)."""
        if text != self._status_text:
            self._status_text = text
            if self.live:
                self._draw()

    def tick(self) -> None:
        if self.live and self._step:
            self._draw()

    def _draw(self) -> None:
        line = f"{self._step} · {_elapsed(time.monotonic() - self._since)}"
        if self._status_text:
            line += f" · {self._status_text}"
        if line == self._drawn:
            return
        self._drawn = line
        self.out.write("\r\033[K" + line)
        self.out.flush()

    def close(self) -> None:
        """End the live line: the last step stays visible, nothing half-drawn remains."""
        if self.live and self._drawn:
            self.out.write("\r\033[K" + self._step + "\n")
            self.out.flush()
            self._drawn = ""
