"""Logging set-up: journald's native protocol under systemd, plain stderr elsewhere.

Under systemd (stderr is the journal stream named by JOURNAL_STREAM) records go to
journald as structured entries through python3-systemd, so the transaction id is a real
field (`journalctl PXHOSTD_TXID=...`); if the journal socket cannot take a record, it goes
to stderr with an sd-daemon `<N>` priority prefix. On a terminal the prefix is left out.
Secret values never reach a log call: callers pass them through `redact_env`.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

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
        prio = _syslog_priority(record.levelno)
        # One journal entry per line: prefix every line of a multi-line message.
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines() or [""])


#: The transaction a log record belongs to; set for the life of a transaction's task, so
#: every record it logs (engine, systemd client) carries PXHOSTD_TXID.
current_txid: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pxhostd_txid", default=None
)

JOURNAL_SOCKET = "/run/systemd/journal/socket"


def _syslog_priority(levelno: int) -> int:
    """python3-systemd's own mapping of logging levels to syslog priorities."""
    from systemd import journal

    return int(journal.JournalHandler.map_priority(levelno))


@functools.cache
def _journal_handler_class() -> type[logging.Handler]:
    """Made on first use: python3-systemd is loaded only by a process that logs to the
    journal (the daemon, the pod), never by a `pxhostctl` run."""
    from systemd import journal

    class JournalHandler(journal.JournalHandler):  # type: ignore[misc]
        """python3-systemd's journal handler, with our transaction id and a stderr fallback.

        The library sends MESSAGE, PRIORITY (logging levels mapped to syslog's), LOGGER,
        CODE_FILE/LINE/FUNC and the fixed SYSLOG_IDENTIFIER; we add PXHOSTD_TXID from the
        running transaction, and a record the journal socket cannot take goes to stderr
        with an sd-daemon `<N>` prefix instead of being lost.
        """

        def __init__(self, identifier: str, sender: Callable[..., None] | None = None) -> None:
            super().__init__(sender_function=sender or journal.send,
                             SYSLOG_IDENTIFIER=identifier)
            self.fallback = logging.StreamHandler(sys.stderr)
            self.fallback.setFormatter(JournalFormatter(with_prefix=True))
            self.setFormatter(logging.Formatter("%(message)s"))
            self.addFilter(_add_txid)

        def handleError(self, record: logging.LogRecord) -> None:
            if isinstance(sys.exc_info()[1], OSError):
                self.fallback.handle(record)
            else:
                super().handleError(record)

    return JournalHandler


def journal_handler(identifier: str, sender: Callable[..., None] | None = None) -> Any:
    """A journal handler (`_journal_handler_class`) for `identifier`; `sender` stands for
    `systemd.journal.send` in tests."""
    handler: Any = _journal_handler_class()
    return handler(identifier, sender)


def _add_txid(record: logging.LogRecord) -> bool:
    """The running transaction's id as the record's PXHOSTD_TXID (sent as a field)."""
    if not getattr(record, "PXHOSTD_TXID", None):
        txid = current_txid.get()
        if txid:
            record.PXHOSTD_TXID = txid
    return True


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
        handler = journal_handler(identifier)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JournalFormatter(with_prefix="JOURNAL_STREAM" in os.environ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
