"""Why the service restarts, in words, and what an apply would change: `pxhostctl plan`.

`restart_reasons` *is* the restart decision: the apply restarts exactly when it returns
something (`apply.make_plan`), so what `plan` says beforehand, what the transaction's
result and history say afterwards, and what the journal line says are the same words.
`Plan` is what an apply decided before it touches the host; `describe` turns it into the
report `Manager.Plan` returns, and writes
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pxhostd.engine import journal as jn
from pxhostd.engine.decision import is_pod_volume_mount, unit_digests
from pxhostd.engine.state import AppliedSpec, AppliedState, DesiredSource
from pxhostd.errors import InvalidSpec
from pxhostd.log import REDACTED, is_secret_name
from pxhostd.payload.filelist import FileList
from pxhostd.payload.manifest import PayloadHeader
from pxhostd.spec.model import Spec

Files = FileList


@dataclass(frozen=True)
class Plan:
    """Everything the apply decided, before it touches the host."""

    spec: Spec
    #: The payload as far as rendering and the decision need it (no file list).
    header: PayloadHeader
    #: sha256 of payload.yaml (kept beside the release when it is imported).
    manifest_sha256: str
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
    #: Where the desired state comes from (the previous one's when a reconcile keeps it).
    source: DesiredSource
    #: Units changed only by a pxhostd upgrade: they apply at the service's next restart.
    deferred: bool = False
    #: Why the running service must restart (`plan.restart_reasons`); empty: it need not.
    reasons: tuple[str, ...] = ()
    #: /etc/pwx/config.json exists now.
    config_present: bool = True

    @property
    def unit_changes(self) -> dict[str, str | None]:
        wanted: dict[str, str | None] = {**self.units, **dict.fromkeys(self.stale_units)}
        return {n: t for n, t in wanted.items() if self.live_units.get(n) != t}

    @property
    def applied(self) -> AppliedState:
        return AppliedState(
            spec=AppliedSpec.of(self.spec),
            release_id=self.release_id,
            payload_digest=self.header.digest,
            restart_digest=self.restart_digest,
            unit_digests=unit_digests(self.units),
            enabled=True,
            version=self.header.version,
            source=self.source.what,
            source_at=self.source.at,
            file_digest=self.source.file_digest,
            config_missing=not self.config_present,
        )

    @property
    def config_record_changed(self) -> bool:
        """The configuration appeared or went missing since the applied state was recorded."""
        return self.previous is not None and self.previous.config_missing == self.config_present

    @property
    def source_changed(self) -> bool:
        """The spec file was applied with new bytes but the same spec: record its digest."""
        return self.previous is not None and self.previous.file_digest != self.source.file_digest

    @property
    def nothing_to_do(self) -> bool:
        return not (
            self.need_stage
            or self.unit_changes
            or not self.enabled
            or self.need_restart
            or self.need_start
            or self.previous is None
            or self.previous.spec.doc != self.spec.to_dict()
        )

    @property
    def operation(self) -> str:
        if self.previous is None:
            return jn.OP_INSTALL
        if self.need_stage:
            return jn.OP_UPGRADE
        return jn.OP_RECONFIGURE



def _previous_spec(previous: AppliedState) -> Spec | None:
    try:
        return previous.spec.to_spec()
    except InvalidSpec:
        return None  # written by an older pxhostd with other rules: say "changed" only


def _env_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """By name only: an environment value may be a secret."""
    out = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            out.append(f"env {name} added")
        elif name not in new:
            out.append(f"env {name} removed")
        elif old[name] != new[name]:
            out.append(f"env {name} changed")
    return out


def _shown_args(args: Sequence[str]) -> list[str]:
    """Arguments fit for people and logs: the value after a secret-looking option hidden."""
    shown: list[str] = []
    hide = False
    for arg in args:
        name, eq, _ = arg.partition("=")
        if hide:
            shown.append(REDACTED)
            hide = False
        elif name.startswith("-") and is_secret_name(name.lstrip("-")):
            shown.append(f"{name}={REDACTED}" if eq else arg)
            hide = not eq
        else:
            shown.append(arg)
    return shown


def _mount_changes(old: Spec, new: Spec) -> list[str]:
    before = {str(m): m for m in old.mounts}
    after = {str(m): m for m in new.mounts}
    out = []
    for text in sorted(set(before) | set(after)):
        mount = after.get(text) or before[text]
        note = " (pod volume: never restarts the service)" if is_pod_volume_mount(mount) else ""
        if text not in before:
            out.append(f"mount {text} added{note}")
        elif text not in after:
            out.append(f"mount {text} removed{note}")
    return out


def spec_changes(previous: AppliedState | None, spec: Spec) -> list[str]:
    """Each changed arg list, env name and mount between the applied spec and `spec`."""
    if previous is None:
        return []
    old = _previous_spec(previous)
    if old is None:
        return ["spec changed (the applied spec predates this pxhostd's rules)"]
    out = []
    if old.args != spec.args:
        out.append(f"args {_shown_args(old.args)} -> {_shown_args(spec.args)}")
    out += _env_changes(dict(old.env), dict(spec.env))
    out += _mount_changes(old, spec)
    return out


def restart_reasons(
    *,
    previous: AppliedState | None,
    spec: Spec,
    version: str,
    restart_digest: str,
    need_stage: bool,
    config_present: bool,
    units_only_from_pxhostd: bool = False,
) -> tuple[str, ...]:
    """Why the running service must restart; empty when nothing that matters changed.

    `units_only_from_pxhostd`: same spec and payload, the units differ only because pxhostd
    itself was upgraded; they take effect at the next restart and cause none.
    """
    if previous is None:
        return ("first install",)
    reasons: list[str] = []
    if need_stage:
        if previous.version and previous.version != version:
            reasons.append(f"payload changed ({previous.version} -> {version})")
        else:
            reasons.append("payload changed")
    if previous.restart_digest != restart_digest and not units_only_from_pxhostd:
        relevant = [c for c in spec_changes(previous, spec) if "pod volume" not in c]
        if relevant:
            reasons += relevant
        elif not need_stage:
            reasons.append("the rendered unit's settings changed")
    if not config_present and not previous.config_missing:
        # Missing since the last apply: a restart lets the service write it again. Missing
        # then as well: the restart after that apply did not bring it, and another would
        # not either (a payload that never writes it must not restart at every reconcile).
        reasons.append("the Portworx configuration (/etc/pwx/config.json) is missing")
    return tuple(reasons)


def service_action(plan: Plan) -> str:
    if plan.need_restart:
        return "restart"
    if plan.need_start:
        return "start"
    return "none"


def action_reasons(plan: Plan, held_stopped: bool) -> list[str]:
    """Why the service is restarted, started or left alone."""
    if plan.need_restart:
        return list(plan.reasons)
    if plan.need_start:
        return list(plan.reasons) if plan.previous is None else ["it was not running"]
    if held_stopped:
        return ["kept stopped by `pxhostctl stop` (start or restart lifts it)"]
    if plan.deferred:
        return ["the unit change from the pxhostd upgrade takes effect at the next restart"]
    if plan.reasons:
        return [f"not running, nothing to restart ({'; '.join(plan.reasons)})"]
    return ["nothing that matters to the running service changed"]


def describe(plan: Plan, held_stopped: bool) -> dict[str, Any]:
    """The report of `pxhostctl plan`: changes, the service's fate, and why."""
    changes: list[str] = []
    before = plan.previous.version if plan.previous else None
    after = plan.header.version
    if plan.previous is None:
        changes.append(f"install {plan.header.name} {after} (release {plan.release_id})")
    elif plan.need_stage:
        changes.append(f"payload {before or '-'} -> {after} (release {plan.release_id})")
    changes += spec_changes(plan.previous, plan.spec)
    for name, text in sorted(plan.unit_changes.items()):
        changes.append(f"{'remove' if text is None else 'write'} {name}")
    if not plan.enabled:
        changes.append(f"enable {plan.spec.unit_name} at boot")
    if not changes and not plan.nothing_to_do:
        changes.append("record the spec as applied")
    action = service_action(plan)
    name = plan.spec.unit_name
    if not changes:
        summary = f"{name} runs {after} as specified"
    elif action == "none":
        summary = f"{len(changes)} change(s); {name} is not restarted"
    else:
        summary = f"{len(changes)} change(s); {name} would be {action}ed"
    return {
        "changes": changes,
        "service_action": action,
        "reasons": action_reasons(plan, held_stopped),
        "summary": summary,
        "version_before": before,
        "version_after": after,
        "release": plan.release_id,
        "service": plan.spec.service,
    }
