"""The restart decision in words (engine/plan.py): the reasons are the decision."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pxhostd.bus.txlog import end_line, start_line
from pxhostd.engine.plan import restart_reasons, spec_changes
from pxhostd.engine.rollback import PreviousStore, rollback_target
from pxhostd.engine.state import AppliedSpec, AppliedState
from pxhostd.errors import NoPreviousRelease
from pxhostd.payload.staging import Releases
from pxhostd.spec.validate import spec_from_dict

BASE = {"payload": "/opt/p", "args": ["-c", "one", "--token", "s3cret"],
        "env": {"A": "1", "SECRET_KEY": "k"}, "mounts": ["/a:/a"]}


def applied(spec: dict[str, object], digest: str = "d1", version: str = "1.0.0") -> AppliedState:
    return AppliedState(spec=AppliedSpec.from_doc(spec), release_id=f"{version}-x",
                        payload_digest="p", restart_digest=digest, unit_digests={},
                        enabled=True, version=version)


def reasons(
    previous: AppliedState | None, spec: dict[str, object], **kw: object
) -> tuple[str, ...]:
    args: dict[str, object] = {"version": "1.0.0", "restart_digest": "d1",
                               "need_stage": False, "config_present": True}
    args.update(kw)
    return restart_reasons(previous=previous, spec=spec_from_dict(spec), **args)  # type: ignore[arg-type]


def test_nothing_changed_means_no_reason_and_no_restart() -> None:
    assert reasons(applied(BASE), BASE) == ()


def test_first_install_payload_and_config() -> None:
    assert reasons(None, BASE) == ("first install",)
    assert reasons(applied(BASE), BASE, version="2.0.0", need_stage=True) == (
        "payload changed (1.0.0 -> 2.0.0)",)
    assert reasons(applied(BASE), BASE, config_present=False) == (
        "the Portworx configuration (/etc/pwx/config.json) is missing",)


def test_a_configuration_missing_since_the_last_apply_restarts_once() -> None:
    """Missing now but there at the last apply: restart (the service writes it again).
    Missing at the last apply too: that apply's restart did not bring it back, so its
    absence alone restarts nothing, or a payload that never writes it would restart at
    every reconcile."""
    from dataclasses import replace

    missing = "the Portworx configuration (/etc/pwx/config.json) is missing"
    assert reasons(applied(BASE), BASE, config_present=False) == (missing,)
    was_missing = replace(applied(BASE), config_missing=True)
    assert reasons(was_missing, BASE, config_present=False) == ()
    assert reasons(was_missing, BASE, config_present=True) == ()
    assert reasons(was_missing, BASE, config_present=False, version="2.0.0",
                   need_stage=True) == ("payload changed (1.0.0 -> 2.0.0)",)


def test_the_configuration_record_is_kept_only_when_true() -> None:
    """A state file of an earlier version (no such field) saves back byte for byte."""
    from dataclasses import replace

    state = applied(BASE)
    assert "config_missing" not in state.to_json()
    assert AppliedState.from_json(state.to_json()).config_missing is False
    doc = replace(state, config_missing=True).to_json()
    assert doc["config_missing"] is True
    assert AppliedState.from_json(doc).config_missing is True


def test_spec_changes_are_named_and_values_stay_hidden() -> None:
    new = {**BASE, "env": {"A": "2", "B": "x"}, "args": ["-c", "two", "--token", "other"],
           "mounts": ["/b:/b", "/var/lib/kubelet/pods/x:/var/lib/kubelet/pods/x"]}
    got = reasons(applied(BASE), new, restart_digest="d2")
    assert "env A changed" in got and "env B added" in got and "env SECRET_KEY removed" in got
    assert "mount /a:/a removed" in got and "mount /b:/b added" in got
    assert not any("kubelet/pods" in r for r in got), "pod volumes never restart"
    (args,) = [r for r in got if r.startswith("args")]
    assert "s3cret" not in args and "other" not in args and "<redacted>" in args
    assert all("=2" not in r and r != "x" for r in got)
    changes = spec_changes(applied(BASE), spec_from_dict(new))
    assert any("pod volume: never restarts the service" in c for c in changes)


def test_a_digest_change_always_has_a_reason() -> None:
    # Same spec, different digest (a template change): still one reason, so the decision
    # and its words never disagree; unless only a pxhostd upgrade changed the units.
    assert reasons(applied(BASE), BASE, restart_digest="d2") == (
        "the rendered unit's settings changed",)
    assert reasons(applied(BASE), BASE, restart_digest="d2", units_only_from_pxhostd=True) == ()


def test_journal_lines_say_what_happened_at_the_right_priority() -> None:
    common = {"txid": "t1", "caller": "uid 0 via pxhostctl, pid 9", "service": "portworx",
              "error_name": "", "message": ""}
    level, line = end_line(operation="install", success=True, changed=True, **common,
                           details={"version_before": "1.0.0", "version_after": "1.1.0",
                                    "restarted": True, "reason": "payload changed"})
    assert level == logging.INFO
    assert line == ("upgrade portworx 1.0.0 -> 1.1.0: done; restarted: payload changed; "
                    "requested by uid 0 via pxhostctl, pid 9 (txid t1)")
    level, line = end_line(operation="install", success=True, changed=True, **common,
                           details={"version_before": "1.1.0", "version_after": "1.0.0"})
    assert line.startswith("downgrade portworx 1.1.0 -> 1.0.0")
    level, line = end_line(operation="rollback", success=True, changed=True, **common,
                           details={"version_before": "2.0.0", "version_after": "1.0.0",
                                    "restarted": True, "reason": "payload changed"})
    assert level == logging.WARNING and line.startswith("rollback portworx 2.0.0 -> 1.0.0")
    failed = {**common, "error_name": "com.portworx.pxhostd1.Error.RolledBack",
              "message": "3.0.0 did not become active"}
    level, line = end_line(operation="install", success=False, changed=False, **failed,
                           details={"reason": "payload changed (1.0.0 -> 3.0.0)"})
    assert level == logging.WARNING
    assert "failed, RolledBack: 3.0.0 did not become active" in line
    assert "restart reason: payload changed (1.0.0 -> 3.0.0)" in line
    broken = {**common, "error_name": "com.portworx.pxhostd1.Error.SystemdError",
              "message": "no"}
    assert end_line(operation="restart", success=False, changed=False, **broken,
                    details={})[0] == logging.ERROR
    cut = {**common, "error_name": "com.portworx.pxhostd1.Error.Interrupted",
           "message": "interrupted: pxhostd lost its D-Bus connection during the transaction; "
                      "recovery finishes or rolls it back when pxhostd starts again"}
    level, line = end_line(operation="install", success=False, changed=False, **cut,
                           details={})
    assert level == logging.WARNING and "failed" not in line
    assert line.startswith("install: interrupted: pxhostd lost its D-Bus connection during "
                           "the transaction; recovery finishes")
    level, line = end_line(operation="install", success=True, changed=True, **common,
                           details={"version_before": None, "version_after": "1.0.0",
                                    "restarted": True, "reason": "first install",
                                    "service_action": "start"})
    assert line.startswith("install portworx - -> 1.0.0: done; started: first install")
    assert start_line("install", "t1", "pxhostd itself") == (
        "install started, requested by pxhostd itself (txid t1)")


def test_rollback_target_is_named_when_missing(tmp_path: Path) -> None:
    store = PreviousStore(tmp_path / "previous.json")
    releases = Releases(tmp_path / "releases")
    with pytest.raises(NoPreviousRelease, match="no previous release is recorded"):
        rollback_target(store, releases)
    old = applied(BASE)
    store.remember(old, old)  # nothing replaced: nothing remembered
    assert store.load() is None
    store.remember(old, applied({**BASE, "env": {}}))
    assert store.load() == old
    with pytest.raises(NoPreviousRelease, match="no longer kept"):
        rollback_target(store, releases)
