"""Logging set-up: journald's native protocol under systemd, plain stderr elsewhere.

Under systemd (stderr is the journal stream named by JOURNAL_STREAM) records go to
journald as structured entries, so the transaction id is a real field
(`journalctl PXHOSTD_TXID=...`); if the journal socket cannot take a record, it goes to
stderr with an sd-daemon `<N>` priority prefix. On a terminal the prefix is left out.
Secret values never reach a log call: callers pass them through `redact_env`.
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
import struct
import sys
from collections.abc import Iterable

_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}

#: Substrings that mark an environment name or option as secret.
SECRET_MARKERS = ("PASS", "PWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "AUTH")

REDACTED = "<redacted>"


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


def redact_env(env: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Environment mapping fit for logs: secret-looking names keep their name only."""
    return {k: (REDACTED if is_secret_name(k) else v) for k, v in env}


class JournalFormatter(logging.Formatter):
    """The message alone: the logger's name is a field (LOGGER=), not the line's start."""

    def __init__(self, with_prefix: bool) -> None:
        super().__init__("%(message)s")
        self.with_prefix = with_prefix

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.with_prefix:
            return f"{record.levelname.lower()}: {text}"
        prio = _PRIORITY.get(record.levelno, 6)
        # One journal entry per line: prefix every line of a multi-line message.
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines() or [""])


#: The transaction a log record belongs to; set for the life of a transaction's task, so
#: every record it logs (engine, systemd client) carries PXHOSTD_TXID.
current_txid: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pxhostd_txid", default=None
)

JOURNAL_SOCKET = "/run/systemd/journal/socket"


def journal_fields(record: logging.LogRecord, message: str, identifier: str) -> bytes:
    """One journald native-protocol datagram (see systemd's "Native Journal Protocol")."""
    fields: dict[str, str] = {
        "MESSAGE": message,
        "PRIORITY": str(_PRIORITY.get(record.levelno, 6)),
        "SYSLOG_IDENTIFIER": identifier,
        "LOGGER": record.name,
        "CODE_FILE": record.pathname,
        "CODE_LINE": str(record.lineno),
        "CODE_FUNC": record.funcName or "",
    }
    txid = getattr(record, "PXHOSTD_TXID", None) or current_txid.get()
    if txid:
        fields["PXHOSTD_TXID"] = str(txid)
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalHandler(logging.Handler):
    """Structured records straight to journald; a record it cannot take goes to stderr."""

    def __init__(self, identifier: str, path: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.identifier = identifier
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.fallback = logging.StreamHandler(sys.stderr)
        self.fallback.setFormatter(JournalFormatter(with_prefix=True))
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            datagram = journal_fields(record, self.format(record), self.identifier)
            self.sock.sendto(datagram, self.path)
        except OSError:
            self.fallback.handle(record)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


def stderr_is_journal() -> bool:
    """True when systemd connected our stderr to the journal (JOURNAL_STREAM=dev:inode)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return st.st_dev == dev and st.st_ino == ino


def setup_logging(debug: bool = False, identifier: str = "pxhostd") -> None:
    handler: logging.Handler
    if stderr_is_journal() and os.path.exists(JOURNAL_SOCKET):
        handler = JournalHandler(identifier)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JournalFormatter(with_prefix="JOURNAL_STREAM" in os.environ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
