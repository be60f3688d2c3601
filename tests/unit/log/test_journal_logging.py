"""Logging: journald's native protocol (structured fields), and secrets kept out of logs."""

from __future__ import annotations

import logging
import socket
import struct
from pathlib import Path

from pxhostd.log import (
    REDACTED,
    JournalHandler,
    current_txid,
    is_secret_name,
    redact_env,
)


def parse_datagram(data: bytes) -> dict[str, str]:
    """The reader side of the native protocol: KEY=VALUE lines, or KEY\\n<le64 len>VALUE\\n."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            pos = end + 1
        else:
            (size,) = struct.unpack("<Q", data[end + 1 : end + 9])
            fields[line.decode()] = data[end + 9 : end + 9 + size].decode()
            pos = end + 9 + size + 1
    return fields


def test_records_become_structured_journal_entries(tmp_path: Path) -> None:
    path = str(tmp_path / "journal.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    handler = JournalHandler("pxhostd", path=path)
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
        first = parse_datagram(receiver.recv(65536))
        second = parse_datagram(receiver.recv(65536))
    finally:
        logger.removeHandler(handler)
        handler.close()
        receiver.close()
    assert first["MESSAGE"] == "rolled back: v3 exited"  # LOGGER= names the logger
    assert first["PRIORITY"] == "4"
    assert first["LOGGER"] == "pxhostd.test.journal"
    assert first["SYSLOG_IDENTIFIER"] == "pxhostd"
    assert first["PXHOSTD_TXID"] == "tx-42"
    assert first["CODE_FUNC"] == "test_records_become_structured_journal_entries"
    assert second["MESSAGE"] == "two\nlines"
    assert second["PRIORITY"] == "3"
    assert "PXHOSTD_TXID" not in second


def test_a_record_the_journal_cannot_take_goes_to_stderr(tmp_path: Path, capsys: object) -> None:
    handler = JournalHandler("pxhostd", path=str(tmp_path / "absent.sock"))
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
