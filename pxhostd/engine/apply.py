"""Install, upgrade and reconfigure: make the host match one spec, touching only what differs.

The decision is made on structured data before anything is written: the release id (payload
version + manifest digest), the rendered unit texts, and the restart digest (what matters to
the running service; pod-volume mounts excluded). A no-op writes nothing and calls neither
Reload nor Restart. Otherwise each step is journaled before it is taken; a release that does
not become active is rolled back in-process, and a crash at any step is rolled back (or,
after the commit point, finished) by `recovery` at the next start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pxhostd.engine import failpoints as fp
from pxhostd.engine import journal as jn
from pxhostd.engine.api import Outcome, ProgressFn
from pxhostd.engine.commit import finish
from pxhostd.engine.context import HostContext, in_thread
from pxhostd.engine.decision import compute_restart_digest, unit_digests
from pxhostd.engine.holds import Holds
from pxhostd.engine.plan import action_reasons, restart_reasons, service_action
from pxhostd.engine.state import AppliedState
from pxhostd.engine.undo import perform_undo, unit_failure_reason
from pxhostd.errors import (
    Failed,
    InvalidSpec,
    RolledBack,
    SystemdError,
    Timeout,
)
from pxhostd.payload.manifest import (
    PayloadHeader,
    manifest_sha256,
    parse_manifest_yaml,
    read_manifest_bytes,
)
from pxhostd.payload.staging import ReleaseMeta, Releases, StageResult
from pxhostd.render.names import is_unit_file
from pxhostd.render.units import render_units
from pxhostd.render.verify import verify_unit_text
from pxhostd.spec.model import Spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """Everything the apply decided, before it touches the host."""

    spec: Spec
    #: The payload as far as rendering and the decision need it (no file list).
    header: PayloadHeader
    #: The payload.yaml bytes (kept beside the release when it is imported).
    manifest_bytes: bytes
    #: The file list, when the manifest had to be parsed (None: a release on disk has it).
    files: Files | None
    release_id: str
    units: dict[str, str]
    #: Unit files as they are now (None: absent), for every name the apply may touch.
    live_units: dict[str, str | None]
    stale_units: tuple[str, ...]
    restart_digest: str
    previous: AppliedState | None
    current_release: str | None
    enabled: bool
    active: bool
    need_stage: bool
    need_restart: bool
    need_start: bool
    #: Why the running service must restart (`plan.restart_reasons`); empty: it need not.
    reasons: tuple[str, ...] = ()
    #: Units changed only by a pxhostd upgrade: they apply at the service's next restart.
    deferred: bool = False

    @property
    def unit_changes(self) -> dict[str, str | None]:
        wanted: dict[str, str | None] = {**self.units, **dict.fromkeys(self.stale_units)}
        return {n: t for n, t in wanted.items() if self.live_units.get(n) != t}

    @property
    def applied(self) -> AppliedState:
        return AppliedState(
            spec=self.spec.to_dict(),
            release_id=self.release_id,
            payload_digest=self.header.digest,
            restart_digest=self.restart_digest,
            unit_digests=unit_digests(self.units),
            enabled=True,
            version=self.header.version,
        )

    @property
    def nothing_to_do(self) -> bool:
        return not (
            self.need_stage
            or self.unit_changes
            or not self.enabled
            or self.need_restart
            or self.need_start
            or self.previous is None
            or self.previous.spec != self.spec.to_dict()
        )

    @property
    def operation(self) -> str:
        if self.previous is None:
            return jn.OP_INSTALL
        if self.need_stage:
            return jn.OP_UPGRADE
        return jn.OP_RECONFIGURE


Files = tuple[tuple[str, str], ...]


def _read_payload(releases: Releases, spec: Spec) -> tuple[PayloadHeader, bytes, Files | None]:
    """The payload's header, decided from digests when a release on disk came from the
    same payload.yaml (no parse: the no-op and the switch back); parsed (once) otherwise,
    and then the file list comes along for the import."""
    data = read_manifest_bytes(Path(spec.payload))
    on_disk = releases.find(manifest_sha256(data))
    header = releases.header(on_disk) if on_disk else None
    if header is not None:
        return header, data, None
    manifest = parse_manifest_yaml(data)
    return manifest.header, data, manifest.files


async def make_plan(ctx: HostContext, spec: Spec, holds: Holds) -> Plan:
    header, manifest_bytes, files = await in_thread(_read_payload, ctx.releases, spec)
    rid = Releases.release_id(header.version, header.digest)
    root = str(ctx.paths.current_link)
    units = render_units(spec, header, root, ctx.paths)
    digest = compute_restart_digest(spec, header, root, ctx.paths)
    previous = await in_thread(ctx.applied.load)
    if previous is not None and previous.spec.get("service") != spec.service:
        raise InvalidSpec(
            f"service: {previous.spec.get('service')!r} is installed; uninstall it before "
            f"installing under the name {spec.service!r}"
        )
    stale = tuple(sorted(n for n in (previous.unit_digests if previous else {}) if n not in units))
    live = {n: ctx.read_unit(n) for n in (*units, *stale)}
    for name, text in units.items():
        # A unit already live as rendered was checked before; the env file is no unit.
        if is_unit_file(name) and live.get(name) != text:
            await in_thread(verify_unit_text, name, text, root)
    current = ctx.releases.current()
    state = await ctx.systemd.unit_state(spec.unit_name)
    enabled = state.unit_file_state in ("enabled", "enabled-runtime") or holds.disabled
    active = state.active_state in ("active", "reloading")
    need_stage = current != rid or not ctx.releases.exists(rid)
    # Same spec, same payload, different units: the change comes from upgrading pxhostd
    # itself (a new template). Written and reloaded, it takes effect at the service's next
    # restart; a package upgrade must not restart storage on every node at once.
    only_pxhostd = (
        previous is not None
        and previous.restart_digest != digest
        and previous.spec == spec.to_dict()
        and previous.payload_digest == header.digest
        and not need_stage
    )
    reasons = restart_reasons(
        previous=previous,
        spec=spec,
        version=header.version,
        restart_digest=digest,
        need_stage=need_stage,
        config_present=ctx.paths.pwx_config_file.exists(),
        units_only_from_pxhostd=only_pxhostd,
    )
    restart_wanted = bool(reasons)
    return Plan(
        spec=spec,
        header=header,
        manifest_bytes=manifest_bytes,
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
    ctx: HostContext, spec: Spec, txid: str, progress: ProgressFn, holds: Holds
) -> Outcome:
    progress(5, "reading the payload manifest")
    plan = await make_plan(ctx, spec, holds)
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
        return Outcome(
            False,
            f"nothing to do: {name} runs {version} as specified",
            {**details, "restarted": False},
        )

    # The import happens before the journal opens and before anything stops: a bad payload
    # fails here with nothing to undo; what a crash mid-import leaves is a temp tree that
    # start-up sweeps, or a release no `current` names, which the next collection prunes.
    preexisting = ctx.releases.exists(plan.release_id)
    if plan.need_stage:
        progress(15, f"importing release {plan.release_id}")
        staged = await in_thread(_import, ctx.releases, spec, plan)
        details.update(files_imported=staged.imported, bytes_imported=staged.imported_bytes)
    before, target = _snapshots(plan)
    record = ctx.journal.begin(plan.operation, txid, before, target)
    if plan.need_stage:
        record.step(jn.STEP_STAGE, release=plan.release_id, preexisting=preexisting)
        ctx.failpoints.hit(fp.AFTER_STAGE)
    changes = plan.unit_changes
    if changes:
        progress(40, f"writing {', '.join(sorted(changes))}")
        record.step(jn.STEP_WRITE_UNITS, names=sorted(changes))
        for unit, text in changes.items():
            await in_thread(ctx.write_unit, unit, text)
        ctx.failpoints.hit(fp.AFTER_UNIT_WRITE)
        record.step(jn.STEP_DAEMON_RELOAD)
        await ctx.systemd.daemon_reload(ctx.settings.reload_timeout)
        ctx.failpoints.hit(fp.AFTER_DAEMON_RELOAD)
    if not plan.enabled:
        unit_files = sorted(filter(is_unit_file, plan.units))
        progress(50, f"enabling {', '.join(unit_files)}")
        record.step(jn.STEP_ENABLE)
        await ctx.systemd.enable_unit_files(unit_files)
        ctx.failpoints.hit(fp.AFTER_ENABLE)
    if plan.need_stage:
        progress(55, f"switching to release {plan.release_id}")
        record.step(jn.STEP_SWITCH, release=plan.release_id)
        await in_thread(ctx.releases.switch, plan.release_id)
        ctx.failpoints.hit(fp.AFTER_SWITCH)
    restarted = False
    if plan.need_restart or plan.need_start:
        verb = "restarting" if plan.need_restart else "starting"
        wait = ctx.settings.activation_timeout + ctx.settings.settle_seconds
        progress(65, f"{verb} {name} ({version}), waiting up to {wait:g}s for it to be active")
        record.step(jn.STEP_RESTART, restart=plan.need_restart)
        try:
            await _activate(ctx, name, restart=plan.need_restart)
        except (SystemdError, Timeout) as exc:
            reason = await unit_failure_reason(ctx, name, exc)
            progress(80, f"{version} failed to start; rolling back")
            record.begin_rollback(reason)
            await perform_undo(ctx, record, _rollback_actions(record))
            record.done()
            ctx.want_collect(None)  # the objects only the removed release had
            if plan.previous is None:
                raise Failed(
                    f"install of {version} failed, nothing left installed: {reason}"
                ) from exc
            raise RolledBack(
                f"{version} did not become active ({reason}); rolled back to {before_version}",
                details={**details, "version_after": before_version},
            ) from exc
        restarted = True
        ctx.failpoints.hit(fp.AFTER_RESTART)
    progress(90, "recording the applied state")
    record.commit()
    await finish(ctx, record)
    verbs = {jn.OP_INSTALL: "installed", jn.OP_UPGRADE: upgrade_verb(before_version, version)}
    said = verbs.get(plan.operation, "reconfigured")
    if plan.need_restart:
        suffix = f" (restarted: {details['reason']})"
    elif plan.need_start:
        suffix = f" (started: {details['reason']})"
    else:
        suffix = " (no restart needed)"
    if plan.deferred:
        suffix = (f" (the unit change from the pxhostd upgrade takes effect at the next "
                  f"restart of {name})")
        details["unit_change_pending"] = True
    return Outcome(True, f"{name} {said} {version}{suffix}", {**details, "restarted": restarted})


def upgrade_verb(before: str | None, after: str) -> str:
    """A downgrade is not reported as an upgrade (versions in dpkg's order)."""
    from pxhostd.pod.versions import BadVersion, compare_versions

    try:
        older = bool(before) and compare_versions(after, str(before)) < 0
    except BadVersion:
        return "switched to"
    return "downgraded to" if older else "upgraded to"


def _import(releases: Releases, spec: Spec, plan: Plan) -> StageResult:
    files = plan.files
    if files is None and not releases.exists(plan.release_id):
        files = parse_manifest_yaml(plan.manifest_bytes).files  # its release went missing
    meta = ReleaseMeta(plan.header, plan.manifest_bytes)
    return releases.stage(Path(spec.payload), plan.release_id, files or (), meta)


def _rollback_actions(record: jn.JournalRecord) -> tuple[jn.Undo, ...]:
    plan = jn.plan_recovery(record)
    return plan.undo


async def _activate(ctx: HostContext, name: str, *, restart: bool) -> None:
    timeout = ctx.settings.activation_timeout
    if restart:
        await ctx.systemd.restart_and_verify(name, timeout)
    else:
        await ctx.systemd.start_and_verify(name, timeout)
    await ctx.systemd.wait_stable(name, ctx.settings.settle_seconds)
