"""The shipped engine under faults and crashes (fake systemd, real files).

Every failure after the journal opens rolls back and closes the journal, so the next good
install succeeds; a crash at any failpoint (a real SIGKILL of a child running the real
apply / uninstall) is recovered by the real `recovery.recover` into exactly the state asked
for or the state before, an uninstall's wipe included.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from enginekit import build_payload, context, install, recover, remove, systemd_of

from pxhostd.engine import journal as jn
from pxhostd.engine.context import HostContext
from pxhostd.errors import (
    ForeignUnit,
    HostStateError,
    InvalidPayload,
    InvalidSpec,
    RolledBack,
    SystemdError,
)
from pxhostd.failpoints import FAILPOINTS_ENV
from pxhostd.hostfs import TEMP_PREFIX
from pxhostd.spec.validate import spec_from_dict

ENGINEKIT = Path(__file__).with_name("enginekit.py")
UNIT = "portworx.service"


@pytest.fixture(scope="module")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("payloads")
    return {v: build_payload(base / v, v) for v in ("1.0.0", "2.0.0", "3.0.0")}


def spec(payload: Path, n: int = 0) -> dict[str, Any]:
    return {"payload": str(payload), "env": {"STEP": str(n)}}


def running(ctx: HostContext) -> dict[str, Any]:
    unit: dict[str, Any] = systemd_of(ctx).load()["units"].get(UNIT, {})
    return unit


def host_facts(ctx: HostContext) -> dict[str, Any]:
    """What an operator would compare before and after: files, link, state, service."""
    unit = ctx.unit_path(UNIT)
    applied = ctx.applied.load()
    return {
        "current": ctx.releases.current(),
        "releases": ctx.releases.list(),
        "unit": unit.read_text() if unit.exists() else None,
        "applied": applied.release_id if applied else None,
        "running": running(ctx).get("release"),
        "invocation": running(ctx).get("invocation"),
    }


def assert_clean(ctx: HostContext) -> None:
    assert not ctx.paths.journal_file.exists()
    root = ctx.paths.unit_dir.parents[2]
    assert [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)] == []


def on_v1(tmp_path: Path, payloads: dict[str, Path]) -> HostContext:
    ctx = context(tmp_path)
    asyncio.run(install(ctx, spec(payloads["1.0.0"])))
    return ctx


# -- every failure after the journal opens rolls back -----------------------------------------


def inject(ctx: HostContext, *names: str) -> None:
    fake = systemd_of(ctx)
    doc = fake.load()
    doc["fail"] = list(names)
    fake.save(doc)


def test_a_failing_daemon_reload_rolls_back_and_the_next_install_succeeds(
    tmp_path: Path, payloads: dict[str, Path]
) -> None:
    ctx = on_v1(tmp_path, payloads)
    before = host_facts(ctx)
    inject(ctx, "daemon-reload")
    # The forward reload fails, and so does the rollback's: the journal is kept...
    with pytest.raises(HostStateError, match="rollback"):
        asyncio.run(install(ctx, spec(payloads["2.0.0"], 1)))
    assert ctx.paths.journal_file.exists()
    inject(ctx)
    # ...and recovered, by the engine, before the next operation.
    assert asyncio.run(recover(ctx)) is not None
    assert host_facts(ctx) == before
    assert_clean(ctx)
    outcome = asyncio.run(install(ctx, spec(payloads["2.0.0"], 1)))
    assert outcome.changed and "upgraded to 2.0.0" in outcome.message


def test_a_failing_enable_on_first_install_leaves_nothing(
    tmp_path: Path, payloads: dict[str, Path]
) -> None:
    ctx = context(tmp_path)
    inject(ctx, "enable")
    with pytest.raises(SystemdError, match=r"rolled back.*nothing left installed"):
        asyncio.run(install(ctx, spec(payloads["1.0.0"])))
    assert_clean(ctx)
    assert not ctx.unit_path(UNIT).exists()
    assert ctx.releases.list() == [] and ctx.applied.load() is None
    inject(ctx)
    assert asyncio.run(install(ctx, spec(payloads["1.0.0"]))).changed
    assert running(ctx)["active"]


@pytest.mark.parametrize("where", ["stage", "switch", "write_unit"])
def test_an_os_error_mid_operation_rolls_back(
    tmp_path: Path, payloads: dict[str, Path], where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk at the import (before the journal) or at the switch, a read-only unit
    directory: a named error, the host as before, no journal, and the next install works."""
    ctx = on_v1(tmp_path, payloads)
    before = host_facts(ctx)
    code = errno.EROFS if where == "write_unit" else errno.ENOSPC
    target = ctx if where == "write_unit" else ctx.releases
    real = getattr(target, where)

    def unchanged(*args: Any) -> bool:
        if where == "write_unit":
            return ctx.read_unit(args[0]) == args[1]
        return where == "switch" and ctx.releases.current() == args[0]

    def boom(*args: Any) -> Any:
        if unchanged(*args):
            return real(*args)  # a full or read-only fs still "writes" what is already there
        raise OSError(code, os.strerror(code), "/somewhere")

    monkeypatch.setattr(target, where, boom)
    with pytest.raises(HostStateError, match=os.strerror(code)) as caught:
        asyncio.run(install(ctx, spec(payloads["2.0.0"], 1)))
    if where != "stage":
        assert "rolled back (portworx.service still runs 1.0.0)" in str(caught.value)
    assert host_facts(ctx) == before  # same release, same unit, same invocation
    assert_clean(ctx)
    monkeypatch.undo()
    assert "upgraded to 2.0.0" in asyncio.run(install(ctx, spec(payloads["2.0.0"], 1))).message


def test_a_start_failure_rolls_back_to_the_previous_release(
    tmp_path: Path, payloads: dict[str, Path]
) -> None:
    ctx = on_v1(tmp_path, payloads)
    v1_release = ctx.releases.current()
    inject(ctx, "start")
    with pytest.raises((RolledBack, HostStateError)):
        asyncio.run(install(ctx, spec(payloads["2.0.0"], 1)))
    inject(ctx)
    asyncio.run(recover(ctx))
    assert ctx.releases.current() == v1_release
    assert_clean(ctx)


def test_a_payload_with_a_wrong_sha256_is_refused_before_the_journal(
    tmp_path: Path, payloads: dict[str, Path]
) -> None:
    ctx = on_v1(tmp_path, payloads)
    before = host_facts(ctx)
    bad = tmp_path / "bad"
    build_payload(bad, "3.0.0")
    version_file = next(p for p in bad.rglob("*") if p.is_file() and "VERSION" in p.name.upper())
    version_file.write_text("tampered\n")
    calls_before = systemd_of(ctx).load()["calls"]
    with pytest.raises(InvalidPayload):
        asyncio.run(install(ctx, spec(bad, 1)))
    assert host_facts(ctx) == before
    assert systemd_of(ctx).load()["calls"] == calls_before  # nothing asked of systemd
    assert_clean(ctx)
    assert asyncio.run(install(ctx, spec(payloads["2.0.0"], 1))).changed


# -- never touch what pxhostd does not own ----------------------------------------------------


def test_an_admins_own_unit_of_the_same_name_is_refused_and_kept(
    tmp_path: Path, payloads: dict[str, Path]
) -> None:
    ctx = context(tmp_path)
    mine = b"[Service]\nExecStart=/usr/bin/sleep infinity\n"
    ctx.paths.unit_dir.mkdir(parents=True)
    ctx.unit_path("foo.service").write_bytes(mine)
    with pytest.raises(ForeignUnit, match="not written by pxhostd"):
        asyncio.run(install(ctx, {**spec(payloads["1.0.0"]), "service": "foo"}))
    assert ctx.unit_path("foo.service").read_bytes() == mine
    assert_clean(ctx)
    asyncio.run(remove(ctx, wipe=False))
    assert ctx.unit_path("foo.service").read_bytes() == mine


def test_a_unit_systemd_loads_from_elsewhere_is_not_shadowed(
    tmp_path: Path, payloads: dict[str, Path]
) -> None:
    ctx = context(tmp_path)
    fake = systemd_of(ctx)
    doc = fake.load()
    doc["foreign"] = {"storaged.service": "/lib/systemd/system/storaged.service"}
    fake.save(doc)
    with pytest.raises(ForeignUnit, match=r"/lib/systemd/system/storaged\.service"):
        asyncio.run(install(ctx, {**spec(payloads["1.0.0"]), "service": "storaged"}))
    assert not ctx.unit_path("storaged.service").exists()


def test_uninstall_leaves_a_file_pxhostd_did_not_write(
    tmp_path: Path, payloads: dict[str, Path]
) -> None:
    ctx = on_v1(tmp_path, payloads)
    admin = b"# mine now\n[Service]\nExecStart=/bin/true\n"
    ctx.unit_path(UNIT).write_bytes(admin)  # the admin replaced pxhostd's unit
    asyncio.run(remove(ctx, wipe=False))
    assert ctx.unit_path(UNIT).read_bytes() == admin
    assert ctx.releases.list() == [] and ctx.applied.load() is None


@pytest.mark.parametrize("name", [
    "systemd-logind", "ssh", "sshd", "dbus-broker", "emergency", "rescue", "user-1000",
    "getty", "multi-user", "graphical", "default", "pxhostd", "foo.service", "x.target",
])
def test_reserved_service_names_are_refused(name: str, payloads: dict[str, Path]) -> None:
    with pytest.raises(InvalidSpec, match="reserved"):
        spec_from_dict({"payload": str(payloads["1.0.0"]), "service": name})


# -- crashes at every step of the shipped engine ----------------------------------------------


def run_child(root: Path, op: str, arg: str, failpoint: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != FAILPOINTS_ENV}
    env[FAILPOINTS_ENV] = failpoint
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ENGINEKIT.parents[3]), str(ENGINEKIT.parent), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, str(ENGINEKIT), str(root), op, arg],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def crash(root: Path, op: str, arg: str, failpoint: str) -> None:
    proc = run_child(root, op, arg, failpoint)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert f"failpoint {failpoint} reached" in proc.stderr


APPLY_FAILPOINTS = [
    "after-journal-begin", "mid-stage", "after-stage", "after-unit-write", "after-daemon-reload",
    "after-switch", "after-restart", "after-commit", "after-save-applied", "mid-prune",
    "mid-spare", "before-journal-done",
]
FORWARD = {"after-commit", "after-save-applied", "mid-prune", "mid-spare", "before-journal-done"}


@pytest.mark.parametrize("failpoint", APPLY_FAILPOINTS)
def test_a_crash_at_every_upgrade_step_recovers_to_before_or_target(
    tmp_path: Path, payloads: dict[str, Path], failpoint: str
) -> None:
    ctx = on_v1(tmp_path, payloads)
    asyncio.run(install(ctx, spec(payloads["2.0.0"], 1)))  # v2 then back: a release to prune
    asyncio.run(install(ctx, spec(payloads["1.0.0"], 2)))
    before = host_facts(ctx)
    crash(tmp_path, "install", json.dumps(spec(payloads["3.0.0"], 3)), failpoint)
    asyncio.run(recover(ctx))
    after = host_facts(ctx)
    applied = ctx.applied.load()
    assert applied is not None
    if failpoint in FORWARD:
        assert applied.version == "3.0.0" and applied.spec.doc["env"] == {"STEP": "3"}
        assert after["current"] == applied.release_id == after["running"]
    else:
        # The previous release, unit and state; restarted only if the crash came after
        # the restart step (a new invocation then).
        assert {**after, "invocation": None} == {**before, "invocation": None}
        if failpoint != "after-restart":
            assert after["invocation"] == before["invocation"]
    assert after["unit"] is not None
    assert_clean(ctx)


@pytest.mark.parametrize("failpoint", [
    "after-journal-begin", "mid-stage", "after-stage", "after-unit-write", "after-restart",
    "after-commit", "before-journal-done",
])
def test_a_crash_during_a_first_install_leaves_it_whole_or_absent(
    tmp_path: Path, payloads: dict[str, Path], failpoint: str
) -> None:
    ctx = context(tmp_path)
    crash(tmp_path, "install", json.dumps(spec(payloads["1.0.0"])), failpoint)
    asyncio.run(recover(ctx))
    facts = host_facts(ctx)
    if failpoint in FORWARD:
        assert facts["applied"] == facts["current"] == facts["running"] is not None
    else:
        assert facts["current"] is None and facts["unit"] is None and facts["applied"] is None
        assert facts["releases"] == [] and not running(ctx).get("active")
    assert_clean(ctx)


@pytest.mark.parametrize("failpoint", [
    "after-journal-begin", "after-stop", "after-disable", "after-unit-remove",
    "after-daemon-reload", "mid-release-remove", "after-forget", "before-journal-done",
])
@pytest.mark.parametrize("wipe", [True, False])
def test_a_crash_at_every_uninstall_step_completes_it_wipe_included(
    tmp_path: Path, payloads: dict[str, Path], failpoint: str, wipe: bool
) -> None:
    ctx = on_v1(tmp_path, payloads)
    ctx.paths.pwx_config_dir.mkdir(parents=True)
    (ctx.paths.pwx_config_dir / "config.json").write_text("{}")
    crash(tmp_path, "uninstall", "wipe" if wipe else "keep", failpoint)
    asyncio.run(recover(ctx))
    assert not ctx.unit_path(UNIT).exists()
    assert ctx.releases.list() == [] and ctx.applied.load() is None
    assert not running(ctx)["active"]
    assert ctx.paths.pwx_config_dir.exists() is not wipe
    assert_clean(ctx)


def test_every_declared_step_has_a_kind_and_its_failpoint_is_known() -> None:
    from pxhostd.failpoints import known_failpoints

    for step in jn.STEPS.values():
        assert step.kinds
        assert step.failpoint is None or step.failpoint in known_failpoints()
    assert jn.steps_of(jn.REMOVE)[-1] == jn.STEP_FORGET


def test_an_injected_failure_after_daemon_reload_rolls_back(
    tmp_path: Path, payloads: dict[str, Path]
) -> None:
    """What the node test arms with `error:after-daemon-reload`: a failing step."""
    from pxhostd.failpoints import Failpoints, InjectedFault

    on_v1(tmp_path, payloads)
    ctx = context(tmp_path, Failpoints.parse("error:after-daemon-reload"))
    before = host_facts(ctx)
    with pytest.raises(InjectedFault, match="rolled back"):
        asyncio.run(install(ctx, spec(payloads["2.0.0"], 1)))
    assert host_facts(ctx) == before
    assert_clean(ctx)
    assert asyncio.run(install(ctx, spec(payloads["2.0.0"], 1))).changed


# -- one desired state --------------------------------------------------------------------------


def test_the_desired_state_records_its_source_and_keeps_the_files_digest(
    tmp_path: Path, payloads: dict[str, Path]
) -> None:
    from pxhostd.engine.apply import apply
    from pxhostd.engine.holds import Holds
    from pxhostd.engine.state import DesiredSource

    ctx = context(tmp_path)

    def run_apply(spec_doc: dict[str, Any], source: DesiredSource | None) -> None:
        asyncio.run(apply(ctx, spec_from_dict(spec_doc), "tx", lambda _p, _m: None, Holds(),
                          source))

    run_apply(spec(payloads["1.0.0"]), DesiredSource("spec file /etc/pxhostd/spec.yaml",
                                                     "t1", file_digest="f1"))
    run_apply(spec(payloads["2.0.0"]), DesiredSource("Install over D-Bus", "t2"))
    applied = ctx.applied.load()
    assert applied is not None and applied.version == "2.0.0"
    # Install is the source now, and the file's digest is kept: the unchanged file is not
    # a new desired state at the next start.
    assert (applied.source, applied.source_at, applied.file_digest) == (
        "Install over D-Bus", "t2", "f1")
    run_apply(applied.spec.doc, None)  # a reconcile to the desired state keeps all of it
    again = ctx.applied.load()
    assert again is not None and (again.source, again.file_digest) == ("Install over D-Bus", "f1")
