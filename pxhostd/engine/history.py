"""Results of past operations, kept across restarts (JSON lines, newest last).

Appends are one `write` of a whole line on an O_APPEND descriptor, then fsync. A crash
mid-append can leave at most a torn last line without its newline: reads skip any line
that does not parse, and the next append first terminates such a fragment so it can never
glue onto a good entry. The file is trimmed to the newest `max_entries` by an atomic
rewrite, so it stays small without ever losing the recent entries.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pxhostd.engine.state import STATE_FILE_MODE
from pxhostd.errors import HostStateError
from pxhostd.hostfs import atomic_write, fsync_dir, write_all

log = logging.getLogger("pxhostd.history")

DEFAULT_MAX_ENTRIES = 200


class Result(enum.StrEnum):
    SUCCESS = "success"
    NOTHING_TO_DO = "nothing-to-do"
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"


@dataclass(frozen=True)
class HistoryEntry:
    txid: str
    operation: str
    started: str
    finished: str
    result: Result
    #: PxError.name of the failure (e.g. "RolledBack"), None on success.
    error: str | None = None
    message: str = ""
    version_before: str | None = None
    version_after: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "txid": self.txid,
            "operation": self.operation,
            "started": self.started,
            "finished": self.finished,
            "result": self.result.value,
            "error": self.error,
            "message": self.message,
            "version_before": self.version_before,
            "version_after": self.version_after,
        }

    @classmethod
    def from_json(cls, doc: Any) -> HistoryEntry:
        """Raises ValueError/TypeError/KeyError on anything that is not a whole entry."""
        if not isinstance(doc, dict):
            raise TypeError("not an object")
        for key in ("txid", "operation", "started", "finished", "message"):
            if not isinstance(doc[key], str):
                raise TypeError(key)
        for key in ("error", "version_before", "version_after"):
            if doc.get(key) is not None and not isinstance(doc[key], str):
                raise TypeError(key)
        return cls(
            txid=doc["txid"],
            operation=doc["operation"],
            started=doc["started"],
            finished=doc["finished"],
            result=Result(doc["result"]),
            error=doc.get("error"),
            message=doc["message"],
            version_before=doc.get("version_before"),
            version_after=doc.get("version_after"),
        )


def _line(entry: HistoryEntry) -> bytes:
    # ensure_ascii keeps every entry one line whatever the message holds.
    return (json.dumps(entry.to_json(), sort_keys=True, ensure_ascii=True) + "\n").encode()


class History:
    """The history file (Paths.history_file)."""

    def __init__(self, path: Path, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.path = path
        self.max_entries = max_entries
        self._lock = threading.Lock()

    def append(self, entry: HistoryEntry) -> None:
        """Add one entry durably; trim to the newest `max_entries`."""
        line = _line(entry)
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                created = not self.path.exists()
                fd = os.open(
                    self.path,
                    os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                    STATE_FILE_MODE,
                )
                try:
                    size = os.fstat(fd).st_size
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        line = b"\n" + line  # terminate a torn fragment left by a crash
                    write_all(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if created:
                    fsync_dir(self.path.parent)
            except OSError as exc:
                raise HostStateError(f"cannot append to {self.path}: {exc.strerror}") from exc
            self._trim()

    def _raw_lines(self) -> list[bytes]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise HostStateError(f"cannot read {self.path}: {exc.strerror}") from exc
        return data.splitlines()

    def _trim(self) -> None:
        lines = [ln for ln in self._raw_lines() if ln.strip()]
        if len(lines) <= self.max_entries:
            return
        kept = lines[-self.max_entries:]
        atomic_write(self.path, b"".join(ln + b"\n" for ln in kept), mode=STATE_FILE_MODE)

    def read(self, limit: int = 50) -> list[HistoryEntry]:
        """Up to `limit` entries, newest first; lines that do not parse are skipped.

        Takes no lock: an append is one write of a whole line and a trim an atomic rename,
        so a reader sees a whole file version and never waits on an append's fsync.
        """
        lines = self._raw_lines()
        entries: list[HistoryEntry] = []
        for number, raw in enumerate(reversed(lines)):
            if len(entries) >= limit:
                break
            if not raw.strip():
                continue
            try:
                entries.append(HistoryEntry.from_json(json.loads(raw)))
            except (ValueError, TypeError, KeyError):
                if number != 0:  # the last line may be torn by a crash; others are odd
                    log.warning("skipping a malformed line in %s", self.path)
        return entries
