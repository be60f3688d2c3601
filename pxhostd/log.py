"""Logging set-up: stderr lines with sd-daemon priority prefixes that journald understands.

Under systemd (JOURNAL_STREAM set) each line starts with `<N>` so `journalctl -p` works;
on a terminal the prefix is left out. Secret values never reach a log call: callers pass
them through `redact`.
"""

from __future__ import annotations

import logging
import os
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
    def __init__(self, with_prefix: bool) -> None:
        super().__init__("%(name)s: %(message)s")
        self.with_prefix = with_prefix

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.with_prefix:
            return f"{record.levelname.lower()}: {text}"
        prio = _PRIORITY.get(record.levelno, 6)
        # One journal entry per line: prefix every line of a multi-line message.
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines() or [""])


def setup_logging(debug: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter(with_prefix="JOURNAL_STREAM" in os.environ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
