"""Install, upgrade and reconfigure: make the host match one spec, touching only what differs.

The decision is made on structured data before anything is written: the release id (payload
version + manifest digest), the rendered unit texts, and the restart digest (what matters to
the running service; pod-volume mounts excluded). A no-op writes nothing and calls neither
Reload nor Restart. Otherwise each step is journaled before it is taken; a release that does
not become active is rolled back in-process, and a crash at any step is rolled back (or,
after the commit point, finished) by `recovery` at the next start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from pathlib import Path

from pxhostd.engine import journal as jn
from pxhostd.engine.api import Outcome, ProgressFn
from pxhostd.engine.commit import finish
from pxhostd.engine.context import HostContext, in_thread
from pxhostd.engine.decision import compute_restart_digest
from pxhostd.engine.holds import Holds
from pxhostd.engine.ownership import check_unit_ownership
from pxhostd.engine.pending import record_pending
from pxhostd.engine.plan import Files, Plan, action_reasons, restart_reasons, service_action
from pxhostd.engine.state import AppliedState, DesiredSource
from pxhostd.engine.undo import perform_undo, unit_failure_reason
from pxhostd.errors import (
    Failed,
    HostStateError,
    InvalidPayload,
    InvalidSpec,
    PxError,
    RolledBack,
    SystemdError,
    Timeout,
)
from pxhostd.payload.manifest import (
    Manifest,
    PayloadHeader,
    manifest_file_sha256,
    read_manifest,
)
from pxhostd.payload.staging import ReleaseMeta, Releases, StageResult
from pxhostd.render.names import is_unit_file
from pxhostd.render.units import render_units
from pxhostd.render.verify import verify_unit_text
from pxhostd.spec.model import Spec
from pxhostd.systemd.verify import restart_and_verify, start_and_verify, wait_settled, wait_stable
from pxhostd.versions import BadVersion, compare_versions

log = logging.getLogger(__name__)


def _read_payload(releases: Releases, spec: Spec) -> tuple[PayloadHeader, str, Files | None]:
    """The payload's header and payload.yaml's sha256, decided from digests when a release
    on disk came from the same payload.yaml (no parse: the no-op and the switch back);
    parsed (once, as it is read) otherwise, and then the file list comes along."""
    payload = Path(spec.payload)
    digest = manifest_file_sha256(payload)
    on_disk = releases.find(digest)
    header = releases.header(on_disk) if on_disk else None
    if header is not None:
        return header, digest, None
    manifest = _parse(payload, digest)
    return manifest.header, digest, manifest.files


def _parse(payload: Path, digest: str) -> Manifest:
    manifest, parsed = read_manifest(payload)
    if parsed != digest:
        raise InvalidPayload("payload.yaml: changed while it was being read; apply again")
    return manifest


def resolve_source(previous: AppliedState | None, source: DesiredSource | None) -> DesiredSource:
    """The source to record: the new one, else the previous desired state's own."""
    keep_digest = previous.file_digest if previous else ""
    if source is None:
        if previous is None:
            return DesiredSource("reconcile", file_digest=keep_digest)
        return DesiredSource(previous.source, previous.source_at, keep_digest)
    if source.file_digest:
        return source
    # A desired state from Install keeps the file's digest: the unchanged file is not
    # applied again over it at the next start (docs/spec-format.md).
    return DesiredSource(source.what, source.at, keep_digest)


async def make_plan(
    ctx: HostContext, spec: Spec, holds: Holds, source: DesiredSource | None = None
) -> Plan:
    header, manifest_digest, files = await in_thread(_read_payload, ctx.releases, spec)
    rid = Releases.release_id(header.version, header.digest)
    root = str(ctx.paths.current_link)
    # Rendering reads the templates: off the event loop like every other host read.
    units = await in_thread(render_units, spec, header, root, ctx.paths)
    digest = await in_thread(compute_restart_digest, spec, header, root, ctx.paths)
    previous = await in_thread(ctx.applied.load)
    if previous is not None and previous.spec.service != spec.service:
        raise InvalidSpec(
            f"service: {previous.spec.service!r} is installed; uninstall it before "
            f"installing under the name {spec.service!r}"
        )
    stale = tuple(sorted(n for n in (previous.unit_digests if previous else {}) if n not in units))
    live = {n: await in_thread(ctx.read_unit, n) for n in (*units, *stale)}
    for name, text in units.items():
        # A unit already live as rendered was checked before; the env file is no unit.
        if is_unit_file(name) and live.get(name) != text:
            await in_thread(verify_unit_text, name, text, root)
    current = await in_thread(ctx.releases.current)
    state = await ctx.systemd.unit_state(spec.unit_name)
    enabled = state.unit_file_state in ("enabled", "enabled-runtime") or holds.disabled
    if state.active_state in ("activating", "deactivating"):
        # At boot systemd may still be starting the service: wait for its own job, never
        # queue a second start (or a restart) on top of it.
        state = await wait_settled(
            ctx.systemd, spec.unit_name, ctx.settings.activation_timeout
        )
    active = state.active_state in ("active", "reloading")
    need_stage = current != rid or not await in_thread(ctx.releases.exists, rid)
    # Same spec, same payload, different units: the change comes from upgrading pxhostd
    # itself (a new template). Written and reloaded, it takes effect at the service's next
    # restart; a package upgrade must not restart storage on every node at once.
    only_pxhostd = (
        previous is not None
        and previous.restart_digest != digest
        and previous.spec.doc == spec.to_dict()
        and previous.payload_digest == header.digest
        and not need_stage
    )
    config_present = await in_thread(ctx.paths.pwx_config_file.exists)
    reasons = restart_reasons(
        previous=previous,
        spec=spec,
        version=header.version,
        restart_digest=digest,
        need_stage=need_stage,
        config_present=config_present,
        units_only_from_pxhostd=only_pxhostd,
    )
    restart_wanted = bool(reasons)
    return Plan(
        spec=spec,
        header=header,
        manifest_sha256=manifest_digest,
        files=files,
        release_id=rid,
        units=units,
        live_units=live,
        stale_units=stale,
        restart_digest=digest,
        previous=previous,
        current_release=current,
        enabled=enabled,
        active=active,
        need_stage=need_stage,
        need_restart=restart_wanted and active and not holds.stopped,
        need_start=not active and not holds.stopped,
        reasons=reasons,
        deferred=only_pxhostd and active,
        source=resolve_source(previous, source),
        config_present=config_present,
    )


def _snapshots(plan: Plan) -> tuple[jn.Snapshot, jn.Snapshot]:
    before = jn.Snapshot(
        release=plan.current_release,
        units=dict(plan.live_units),
        enabled=plan.enabled,
        active=plan.active,
        version=plan.previous.version if plan.previous else None,
        applied=plan.previous.to_json() if plan.previous else None,
    )
    target = jn.Snapshot(
        release=plan.release_id,
        units={**plan.units, **dict.fromkeys(plan.stale_units)},
        enabled=True,
        active=plan.need_restart or plan.need_start or plan.active,
        version=plan.header.version,
        applied=plan.applied.to_json(),
    )
    return before, target


async def apply(
    ctx: HostContext, spec: Spec, txid: str, progress: ProgressFn, holds: Holds,
    source: DesiredSource | None = None,
) -> Outcome:
    progress(5, "reading the payload manifest")
    clock = _Clock()
    plan = await make_plan(ctx, spec, holds, source)
    name = spec.unit_name
    version = plan.header.version
    before_version = plan.previous.version if plan.previous else None
    details: dict[str, object] = {
        "version_before": before_version,
        "version_after": version,
        "release": plan.release_id,
        "reason": "; ".join(action_reasons(plan, holds.stopped)),
        "service_action": service_action(plan),
    }
    if plan.nothing_to_do:
        if plan.source_changed or plan.config_record_changed:
            # The same desired state from a new spec-file text (its digest), or the
            # configuration came or went: recorded, nothing else done.
            await in_thread(ctx.applied.save, plan.applied)
        return Outcome(
            False,
            f"nothing to do: {name} runs {version} as specified",
            {**details, "restarted": False},
        )
    # Everything that can be checked is checked before the journal opens: the units' names
    # are pxhostd's to take, and the import (which verifies every file and fails on a full
    # disk) happens before anything stops. A bad payload fails here with nothing to undo;
    # what a crash mid-import leaves is a temp tree that start-up sweeps, or a release no
    # `current` names, which the next collection prunes.
    await check_unit_ownership(ctx, plan.units, plan.previous)
    preexisting = await in_thread(ctx.releases.exists, plan.release_id)
    if plan.need_stage:
        progress(15, f"importing release {plan.release_id}")
        try:
            staged = await in_thread(_import, ctx.releases, spec, plan)
        except OSError as exc:
            raise HostStateError(
                f"cannot import release {plan.release_id}: {_describe(exc)}; nothing changed"
            ) from exc
        details.update(files_imported=staged.imported, bytes_imported=staged.imported_bytes)
        if staged.changed:
            log.info("imported release %s: %d of %d files new (%d bytes read and written), "
                     "the rest linked from the store", plan.release_id, staged.imported,
                     staged.files, staged.imported_bytes)
        else:
            log.info("release %s is on disk: switching to it, nothing read", plan.release_id)
    clock.prepared = clock.now()
    before, target = _snapshots(plan)
    record = await ctx.journal.begin(
        plan.operation, txid, before, target,
        intent={
            "release": plan.release_id, "version": version, "service": spec.service,
            "imported": plan.need_stage, "preexisting": preexisting,
        },
    )
    try:
        restarted = await _run_steps(ctx, plan, record, progress, preexisting, clock)
    except asyncio.CancelledError:
        raise  # shutdown: the journal stays; the next start recovers it
    except BaseException as exc:
        if record.committed:
            raise  # recovery before the next operation finishes it (roll forward)
        raise await _roll_back(ctx, plan, record, exc, progress, details) from exc
    progress(90, "recording the applied state")
    await record.commit()
    await finish(ctx, record)
    log.info("%s %s took %.3f s: plan and import %.3f s, restart and settle %.3f s, "
             "the rest %.3f s", plan.operation, record.txid, clock.now(), clock.prepared,
             clock.restart, clock.now() - clock.prepared - clock.restart)
    verbs = {jn.OP_INSTALL: "installed", jn.OP_UPGRADE: upgrade_verb(before_version, version)}
    said = verbs.get(plan.operation, "reconfigured")
    if plan.need_restart:
        suffix = f" (restarted: {details['reason']})"
    elif plan.need_start:
        suffix = f" (started: {details['reason']})"
    else:
        suffix = " (no restart needed)"
    if plan.deferred:
        await record_pending(ctx, name)
        suffix = (f" (the unit change from the pxhostd upgrade takes effect at the next "
                  f"restart of {name})")
        details["unit_change_pending"] = True
    return Outcome(True, f"{name} {said} {version}{suffix}", {**details, "restarted": restarted})


def upgrade_verb(before: str | None, after: str) -> str:
    """A downgrade is not reported as an upgrade (versions in dpkg's order)."""
    try:
        older = bool(before) and compare_versions(after, str(before)) < 0
    except BadVersion:
        return "switched to"
    return "downgraded to" if older else "upgraded to"


class _Clock:
    """Where an operation's time goes (logged): the benchmarks tell pxhostd's own work
    from the service's restart and the settle window with it."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.prepared = 0.0
        self.restart = 0.0

    def now(self) -> float:
        return time.monotonic() - self.start


async def _run_steps(
    ctx: HostContext, plan: Plan, record: jn.JournalRecord, progress: ProgressFn,
    preexisting: bool, clock: _Clock,
) -> bool:
    """Every journaled step before the commit point; True if the service was (re)started."""
    spec = plan.spec
    if plan.need_stage:
        async with record.doing(jn.STEP_STAGE, release=plan.release_id, preexisting=preexisting):
            pass  # imported before the journal opened; journaled so a rollback removes it
    changes = plan.unit_changes
    if changes:
        progress(40, f"writing {', '.join(sorted(changes))}")
        async with record.doing(jn.STEP_WRITE_UNITS, names=sorted(changes)):
            for unit, text in changes.items():
                await in_thread(ctx.write_unit, unit, text)
        async with record.doing(jn.STEP_DAEMON_RELOAD):
            await ctx.systemd.daemon_reload(ctx.settings.reload_timeout)
    if not plan.enabled:
        unit_files = sorted(filter(is_unit_file, plan.units))
        progress(50, f"enabling {', '.join(unit_files)}")
        async with record.doing(jn.STEP_ENABLE):
            await ctx.systemd.enable_unit_files(unit_files)
    if plan.need_stage:
        progress(55, f"switching to release {plan.release_id}")
        async with record.doing(jn.STEP_SWITCH, release=plan.release_id):
            await in_thread(ctx.releases.switch, plan.release_id)
    if not (plan.need_restart or plan.need_start):
        return False
    verb = "restarting" if plan.need_restart else "starting"
    wait = ctx.settings.activation_timeout + ctx.settings.settle_seconds
    progress(65, f"{verb} {spec.unit_name} ({plan.header.version}), waiting up to {wait:g}s "
                 "for it to be active")
    async with record.doing(jn.STEP_RESTART, restart=plan.need_restart):
        began = time.monotonic()
        try:
            await _activate(ctx, spec.unit_name, restart=plan.need_restart)
        except (SystemdError, Timeout) as exc:
            raise _StartFailed(await unit_failure_reason(ctx, spec.unit_name, exc)) from exc
        clock.restart = time.monotonic() - began
    return True


def _import(releases: Releases, spec: Spec, plan: Plan) -> StageResult:
    files = plan.files
    if files is None and not releases.exists(plan.release_id):
        files = _parse(Path(spec.payload), plan.manifest_sha256).files  # its release went missing
    meta = ReleaseMeta(plan.header, plan.manifest_sha256)
    return releases.stage(Path(spec.payload), plan.release_id, files or (), meta)


class _StartFailed(Exception):
    """The new release did not become active; carries the unit's own last words."""


async def _roll_back(
    ctx: HostContext,
    plan: Plan,
    record: jn.JournalRecord,
    exc: BaseException,
    progress: ProgressFn,
    details: Mapping[str, object],
) -> PxError:
    """Undo what the failed operation did and close its journal; the error to raise."""
    version = plan.header.version
    before_version = plan.previous.version if plan.previous else None
    reason = str(exc) if isinstance(exc, (PxError, _StartFailed)) else _describe(exc)
    progress(80, f"{plan.operation} of {version} failed; rolling back")
    log.warning("%s %s failed, rolling back: %s", plan.operation, record.txid, reason)
    try:
        await record.begin_rollback(reason)
        await perform_undo(ctx, record, jn.plan_recovery(record).undo)
        await record.done()
        ctx.want_collect(None)  # the objects only the removed release had
    except asyncio.CancelledError:
        raise
    except Exception as undo_exc:
        log.error("rollback of %s failed: %s", record.txid, undo_exc)
        return HostStateError(
            f"{plan.operation} of {version} failed ({reason}), and so did its rollback "
            f"({_describe(undo_exc)}); the journal is kept and the rollback is retried "
            "before the next operation"
        )
    restored = (
        "nothing left installed"
        if plan.previous is None
        else f"{plan.spec.unit_name} still runs {before_version}"
    )
    if isinstance(exc, _StartFailed):
        if plan.previous is None:
            return Failed(f"install of {version} failed, nothing left installed: {reason}")
        return RolledBack(
            f"{version} did not become active ({reason}); rolled back to {before_version}",
            details={**details, "version_after": before_version},
        )
    message = f"{plan.operation} of {version} failed and was rolled back ({restored}): {reason}"
    if isinstance(exc, PxError):
        return type(exc)(message, details={**exc.details, **details,
                                           "version_after": before_version})
    return HostStateError(message, details={**details, "version_after": before_version})


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return f"{type(exc).__name__}: {exc}"


async def _activate(ctx: HostContext, name: str, *, restart: bool) -> None:
    timeout = ctx.settings.activation_timeout
    if restart:
        await restart_and_verify(ctx.systemd, name, timeout)
    else:
        await start_and_verify(ctx.systemd, name, timeout)
    await wait_stable(ctx.systemd, name, ctx.settings.settle_seconds)
