"""Logging: journald's native protocol (structured fields), and secrets kept out of logs."""

from __future__ import annotations

import logging

from pxhostd.log import (
    REDACTED,
    current_txid,
    is_secret_name,
    journal_handler,
    redact_env,
)


class Sent:
    """Stands in for `systemd.journal.send`: keeps the fields of every entry it is given."""

    def __init__(self) -> None:
        self.entries: list[dict[str, str]] = []

    def __call__(self, MESSAGE: str, **fields: object) -> None:
        self.entries.append({"MESSAGE": MESSAGE, **{k: str(v) for k, v in fields.items()}})


def test_records_become_structured_journal_entries() -> None:
    sent = Sent()
    handler = journal_handler("pxhostd", sender=sent)
    logger = logging.getLogger("pxhostd.test.journal")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        token = current_txid.set("tx-42")
        try:
            logger.warning("rolled back: %s", "v3 exited")
        finally:
            current_txid.reset(token)
        logger.error("two\nlines")
    finally:
        logger.removeHandler(handler)
        handler.close()
    first, second = sent.entries
    assert first["MESSAGE"] == "rolled back: v3 exited"  # LOGGER= names the logger
    assert first["PRIORITY"] == "4"
    assert first["LOGGER"] == "pxhostd.test.journal"
    assert first["SYSLOG_IDENTIFIER"] == "pxhostd"
    assert first["PXHOSTD_TXID"] == "tx-42"
    assert first["CODE_FUNC"] == "test_records_become_structured_journal_entries"
    assert second["MESSAGE"] == "two\nlines"
    assert second["PRIORITY"] == "3"
    assert "PXHOSTD_TXID" not in second


def test_a_record_the_journal_cannot_take_goes_to_stderr(capsys: object) -> None:
    def refused(MESSAGE: str, **fields: object) -> None:
        raise FileNotFoundError(2, "No such file or directory")

    handler = journal_handler("pxhostd", sender=refused)
    record = logging.LogRecord("pxhostd.x", logging.ERROR, __file__, 1, "kept", None, None)
    handler.emit(record)
    handler.close()
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert err == "<3>kept\n"


def test_secret_names_are_redacted() -> None:
    env = [("PX_TOKEN", "t0ken"), ("REGISTRY_PASS", "pw"), ("CLUSTER", "c1"), ("api_key", "k")]
    assert redact_env(env) == {
        "PX_TOKEN": REDACTED,
        "REGISTRY_PASS": REDACTED,
        "CLUSTER": "c1",
        "api_key": REDACTED,
    }
    assert is_secret_name("PXHOSTD_KVDB_USERPWD") and not is_secret_name("PX_IMAGE")
