"""How pxhostctl shows things: human text by default, JSON with --json, progress lines."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO


def print_json(value: Any, out: TextIO = sys.stdout) -> None:
    out.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


STATUS_FIELDS = [
    ("daemon", "daemon_version"),
    ("state", "state"),
    ("service", "service"),
    ("installed", "installed"),
    ("service state", "service_state"),
    ("payload", "payload_name"),
    ("payload version", "payload_version"),
    ("release", "release"),
    ("pending", "unit_change_pending"),
    ("desired state", "desired_source"),
    ("transaction", "active_transaction"),
    ("last error", "last_error"),
]


def print_status(status: Mapping[str, Any], out: TextIO = sys.stdout) -> None:
    width = max(len(label) for label, _ in STATUS_FIELDS)
    for label, key in STATUS_FIELDS:
        value = status.get(key, "")
        if key == "active_transaction" and value in ("/", ""):
            value = "none"
        if isinstance(value, bool):
            value = "yes" if value else "no"
        if key == "desired_source" and value and status.get("desired_at"):
            value = f"{value}, {status['desired_at']}"
        optional = ("last_error", "release", "payload_name", "desired_source",
                    "unit_change_pending")
        if value in ("", None) and key in optional:
            continue
        out.write(f"{label + ':':<{width + 1}} {value}\n")


def print_history(entries: Sequence[Mapping[str, Any]], out: TextIO = sys.stdout) -> None:
    if not entries:
        out.write("no operations recorded\n")
        return
    for e in entries:
        # History entries (pxhostd.engine.history) carry ISO-8601 UTC times and `txid`.
        when = str(e.get("finished") or e.get("started") or "")
        result = e.get("result", "")
        line = f"{when:<24}  {e.get('operation', ''):<10} {result:<12} {e.get('txid', '')}"
        message = e.get("message") or e.get("error") or ""
        if message:
            line += f"  {message}"
        out.write(line + "\n")


class Progress:
    """One live line on a terminal; plain lines otherwise (logs, pipes, CI)."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self.live = out.isatty()
        self._last = ""

    def __call__(self, percent: int, message: str) -> None:
        line = f"[{percent:3d}%] {message}"
        if line == self._last:
            return
        self._last = line
        if self.live:
            self.out.write("\r\033[K" + line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.live and self._last:
            self.out.write("\n")
            self.out.flush()
