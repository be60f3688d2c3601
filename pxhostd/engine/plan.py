"""Why the service restarts, in words, and what an apply would change: `pxhostctl plan`.

`restart_reasons` *is* the restart decision: the apply restarts exactly when it returns
something (`apply.make_plan`), so what `plan` says beforehand, what the transaction's
result and history say afterwards, and what the journal line says are the same words.
`describe` turns an apply's Plan into the report `Manager.Plan` returns; it writes
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pxhostd.engine.decision import is_pod_volume_mount
from pxhostd.engine.state import AppliedState
from pxhostd.errors import InvalidSpec
from pxhostd.log import REDACTED, is_secret_name
from pxhostd.spec.model import Spec
from pxhostd.spec.validate import spec_from_dict

if TYPE_CHECKING:
    from pxhostd.engine.apply import Plan


def _previous_spec(previous: AppliedState) -> Spec | None:
    try:
        return spec_from_dict(previous.spec)
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
    if not config_present:
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
