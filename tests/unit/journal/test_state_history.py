"""Applied state and results history on real files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from pxhostd.engine.history import History, HistoryEntry, Result
from pxhostd.engine.state import AppliedSpec, AppliedState, AppliedStateStore, CorruptStateFile


def applied(release: str = "1.0-abc") -> AppliedState:
    return AppliedState(
        spec=AppliedSpec.from_doc({"service": "portworx", "env": {"A": "1"}}),
        release_id=release, payload_digest="p" * 64, restart_digest="r" * 64,
        unit_digests={"portworx.service": "u" * 64}, enabled=True, version="1.0",
        txid="tx1", applied_at="2024-01-01T00:00:00.000Z",
    )


def entry(n: int, result: Result = Result.SUCCESS) -> HistoryEntry:
    return HistoryEntry(
        txid=f"tx{n}", operation="upgrade", started=f"s{n}", finished=f"f{n}", result=result,
        error=None if result is Result.SUCCESS else "RolledBack", message=f"message {n}",
        version_before="1.0", version_after="2.0",
    )


# -- applied state --------------------------------------------------------------------------


def test_applied_state_roundtrip_and_mode(tmp_path: Path) -> None:
    store = AppliedStateStore(tmp_path / "applied.json")
    assert store.load() is None
    assert store.save(applied())
    assert store.load() == applied()
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert not store.save(applied())  # identical bytes: nothing rewritten
    assert store.clear()
    assert store.load() is None
    assert not store.clear()


@pytest.mark.parametrize("text", [
    "",
    "{",
    "null",
    '{"schema": 2}',
    '{"schema": 1, "spec": {}, "release_id": 5}',
])
def test_corrupt_applied_state_is_a_named_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "applied.json"
    path.write_text(text)
    with pytest.raises(CorruptStateFile, match=f"applied state {path}"):
        AppliedStateStore(path).load()


def test_malformed_unit_digests_are_detected(tmp_path: Path) -> None:
    doc = applied().to_json()
    doc["unit_digests"] = {"portworx.service": 1}
    path = tmp_path / "applied.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(CorruptStateFile, match="unit_digests"):
        AppliedStateStore(path).load()


#: applied.json as a node running an earlier pxhostd wrote it (schema 1, dump_json's layout).
NODE_APPLIED_JSON = """{
 "applied_at": "2024-05-01T10:00:00.000Z",
 "enabled": true,
 "file_digest": "",
 "payload_digest": "5d41402abc4b2a76b9719d911017c592",
 "release_id": "3.1.0-abc",
 "restart_digest": "7d793037a0760186574b0282f2f435e7",
 "schema": 1,
 "source": "Install over D-Bus",
 "source_at": "2024-05-01T09:59:59.000Z",
 "spec": {
  "args": [
   "-c",
   "px-cluster"
  ],
  "env": {
   "A": "1"
  },
  "mounts": [],
  "payload": "/opt/pwx/payload",
  "service": "px-storage"
 },
 "txid": "tx1",
 "unit_digests": {
  "px-storage.service": "b026324c6904b2a9cb4b88d6d61c81d1"
 },
 "version": "3.1.0"
}
"""


def test_applied_json_of_a_node_loads_typed_and_saves_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "applied.json"
    path.write_text(NODE_APPLIED_JSON)
    state = AppliedStateStore(path).load()
    assert state is not None
    assert state.spec.service == "px-storage"
    assert state.spec.unit_name == "px-storage.service"
    assert state.spec.payload == "/opt/pwx/payload"
    assert state.spec.to_spec().args == ("-c", "px-cluster")
    # The format on disk is unchanged: the same state saves to the very same bytes.
    assert not AppliedStateStore(path).save(state)
    assert path.read_text() == NODE_APPLIED_JSON


def test_applied_spec_without_a_service_name_is_the_default_service() -> None:
    spec = AppliedSpec.from_doc({"payload": "/opt/p"})
    assert (spec.service, spec.unit_name) == ("portworx", "portworx.service")


@pytest.mark.parametrize("service", [5, "", None, ["px"]])
def test_a_malformed_applied_service_name_is_a_named_error(tmp_path: Path, service: object) -> None:
    doc = applied().to_json()
    doc["spec"] = {"payload": "/opt/p", "service": service}
    path = tmp_path / "applied.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(CorruptStateFile, match=r"'spec\.service' is malformed"):
        AppliedStateStore(path).load()


# -- history --------------------------------------------------------------------------------


def test_history_newest_first_with_limit(tmp_path: Path) -> None:
    history = History(tmp_path / "state" / "history.jsonl")
    assert history.read(10) == []
    for n in range(5):
        history.append(entry(n))
    assert [e.txid for e in history.read(3)] == ["tx4", "tx3", "tx2"]
    assert history.read(10)[0] == entry(4)
    assert stat.S_IMODE(history.path.stat().st_mode) == 0o600


def test_history_survives_a_new_instance(tmp_path: Path) -> None:
    History(tmp_path / "h.jsonl").append(entry(1, Result.ROLLED_BACK))
    (only,) = History(tmp_path / "h.jsonl").read(5)
    assert only.result is Result.ROLLED_BACK and only.error == "RolledBack"


def test_torn_last_line_is_ignored_and_does_not_spoil_the_next_append(tmp_path: Path) -> None:
    history = History(tmp_path / "h.jsonl")
    history.append(entry(1))
    history.append(entry(2))
    whole = history.path.read_bytes()
    torn = json.dumps(entry(3).to_json()).encode()[:40]  # crash mid-append: no newline
    history.path.write_bytes(whole + torn)
    assert [e.txid for e in history.read(10)] == ["tx2", "tx1"]
    history.append(entry(4))
    assert [e.txid for e in history.read(10)] == ["tx4", "tx2", "tx1"]


def test_lines_that_are_not_entries_are_skipped(tmp_path: Path) -> None:
    history = History(tmp_path / "h.jsonl")
    history.append(entry(1))
    with history.path.open("a") as f:
        f.write('{"txid": "tx-bad", "result": "exploded"}\n[]\n\n')
    history.append(entry(2))
    assert [e.txid for e in history.read(10)] == ["tx2", "tx1"]


def test_history_is_trimmed_to_the_newest_entries(tmp_path: Path) -> None:
    history = History(tmp_path / "h.jsonl", max_entries=4)
    for n in range(10):
        history.append(entry(n))
    assert len(history.path.read_text().splitlines()) == 4
    assert [e.txid for e in history.read(100)] == ["tx9", "tx8", "tx7", "tx6"]


def test_messages_with_newlines_stay_one_line(tmp_path: Path) -> None:
    history = History(tmp_path / "h.jsonl")
    e = HistoryEntry(txid="t", operation="install", started="s", finished="f",
                     result=Result.FAILED, error="SystemdError", message="line1\nline2\u2028x")
    history.append(e)
    assert len(history.path.read_bytes().splitlines()) == 1
    assert history.read(1) == [e]
