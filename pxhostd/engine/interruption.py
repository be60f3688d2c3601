"""Why pxhostd stopped with an operation running: a note beside the journal, for recovery.

An operation interrupted by pxhostd itself having to stop (it lost its D-Bus connection, it
was stopped) is not the user's failure: its journal stays and recovery at the next start
finishes or rolls it back. The note says why, so that the history entry recovery leaves
for it can say so too. Without a note (pxhostd was killed, the node lost power) the cause
is a restart of pxhostd. A note names its operation's txid; recovery uses a note only for
that operation, and removes it whatever it holds.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from pxhostd.engine.state import STATE_FILE_MODE, CorruptStateFile, dump_json, read_json_object
from pxhostd.errors import HostStateError
from pxhostd.hostfs import atomic_write, fsync_dir

log = logging.getLogger(__name__)

NOTE_FILE = "interrupted.json"
NOTE_SCHEMA = 1

LOST_BUS = "pxhostd lost its D-Bus connection during the transaction"
STOPPED = "pxhostd was stopped during the transaction"
#: No note: pxhostd did not get to say why (killed, crashed, power lost).
RESTARTED = "pxhostd restarted during the transaction (it was killed or crashed)"


@dataclass(frozen=True)
class Note:
    txid: str
    reason: str


def note_path(state_dir: Path) -> Path:
    return state_dir / NOTE_FILE


def write_note(state_dir: Path, note: Note) -> None:
    """Record why the running operation is being interrupted (atomic, durable)."""
    doc = {"schema": NOTE_SCHEMA, "txid": note.txid, "reason": note.reason}
    atomic_write(note_path(state_dir), dump_json(doc), mode=STATE_FILE_MODE)


def take_note(state_dir: Path) -> Note | None:
    """The note left by the last stop, removed; None if there is none or it is damaged."""
    path = note_path(state_dir)
    note: Note | None = None
    try:
        doc = read_json_object(path, "interruption note", NOTE_SCHEMA)
    except (CorruptStateFile, HostStateError) as exc:
        log.warning("ignoring the interruption note: %s", exc)
        doc = None
    if doc is not None:
        txid, reason = doc.get("txid"), doc.get("reason")
        if isinstance(txid, str) and isinstance(reason, str) and reason.isprintable():
            note = Note(txid, reason)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        fsync_dir(path.parent)
    return note


def cause_of(note: Note | None, txid: str) -> str:
    """Why the operation `txid` was interrupted."""
    return note.reason if note is not None and note.txid == txid else RESTARTED
