"""HostEngine: the daemon's engine. Serialises host changes and dispatches operations.

One operation at a time (the transaction manager guarantees it inside the daemon; the host
lock guarantees it against the pod side). Blocking host work runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import hashlib
import importlib
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pxhostd.engine import recovery
from pxhostd.engine.api import (
    EngineHost,
    EngineSnapshot,
    Outcome,
    ProgressFn,
    Recovered,
    Request,
)
from pxhostd.engine.collect import collect
from pxhostd.engine.context import HostContext, in_thread
from pxhostd.engine.holds import Holds, HoldStore
from pxhostd.engine.interruption import Note, write_note
from pxhostd.engine.pending import pending_message
from pxhostd.engine.rollback import PREVIOUS_FILE, PreviousStore, rollback_target
from pxhostd.engine.settings import load_settings
from pxhostd.engine.state import AppliedState, DesiredSource
from pxhostd.engine.uninstall import managed_files, uninstall
from pxhostd.engine.verify import verify_releases
from pxhostd.errors import InvalidOptions, NotInstalled
from pxhostd.failpoints import FAILPOINTS_ENV, Failpoints
from pxhostd.memory import trim
from pxhostd.payload.manifest import load_manifest
from pxhostd.render.names import is_unit_file
from pxhostd.spec.model import unit_name
from pxhostd.spec.validate import load_spec, spec_from_dict
from pxhostd.systemd.client import Systemd
from pxhostd.systemd.unit import UnitActivity
from pxhostd.systemd.verify import restart_and_verify, start_and_verify
from pxhostd.systemd.watch import UnitWatch

log = logging.getLogger(__name__)

#: A one-shot failpoint list: read and deleted at start, so a crash test cannot loop.
FAILPOINTS_FILE = "failpoints"


#: Loaded on first use, not at start: the renderer (jinja2) is the daemon's heaviest import
#: and nothing before READY=1 needs it.
_APPLY_MODULE = "pxhostd.engine.apply"


async def load_apply() -> None:
    """Import the apply path in a worker thread the first time: its 20 ms of import on
    the event loop would stall every bus call (Status() included) meanwhile."""
    if _APPLY_MODULE not in sys.modules:
        await in_thread(importlib.import_module, _APPLY_MODULE)


def spec_file_digest(path: Path) -> str | None:
    """sha256 of the spec file's bytes, None if there is no file."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def load_failpoints(state_dir: Path) -> Failpoints:
    """The environment's failpoints plus the one-shot file's (consumed as it is read)."""
    text = os.environ.get(FAILPOINTS_ENV, "")
    path = state_dir / FAILPOINTS_FILE
    with contextlib.suppress(FileNotFoundError):
        text += "," + path.read_text().replace("\n", ",")
        path.unlink()
    return Failpoints.parse(text)


def release_memory() -> None:
    """Hand what a big operation freed (a 100,000-entry file list) back to the system, so
    the idle daemon does not stay at its peak: a collection, then glibc's malloc_trim."""
    gc.collect()
    trim()


class HostEngine:
    def __init__(self, daemon: EngineHost) -> None:
        self.daemon = daemon
        self.paths = daemon.paths
        self.settings = load_settings(self.paths.config_file)
        self.failpoints = load_failpoints(self.paths.state_dir)
        if self.failpoints:
            log.warning("failpoints armed: %s", ", ".join(self.failpoints.armed))
        self.holds = HoldStore(self.paths.state_dir / "holds.json")
        self.previous = PreviousStore(self.paths.state_dir / PREVIOUS_FILE)
        self.ctx: HostContext | None = None
        self._snapshot = EngineSnapshot()
        self._watch: UnitWatch | None = None
        self._collecting: asyncio.Task[None] | None = None
        self._recovered: list[Recovered] = []

    # -- Engine protocol -------------------------------------------------------------

    async def start(self) -> None:
        assert self.daemon.bus is not None
        systemd = await Systemd.connect(self.daemon.bus)
        self.ctx = HostContext.create(self.paths, self.settings, self.failpoints, systemd)
        async with self.ctx.locked():
            note = await recovery.recover(self.ctx)
        if note:
            log.warning("recovered: %s", note)
            self._recovered.append(note)
        await self._refresh()
        self._start_collect(self.ctx)

    async def run(self, request: Request, progress: ProgressFn) -> Outcome:
        ctx = self._ctx()
        await self._collected()
        try:
            async with ctx.locked():
                if await in_thread(ctx.journal.pending):
                    # An operation whose rollback failed, or one the pod side left: finish
                    # it first, so one failure never blocks the next request.
                    progress(2, "recovering an interrupted operation")
                    note = await recovery.recover(ctx)
                    # Not for the history: the operation that left this journal (its
                    # rollback failed) already has its entry, saying so.
                    log.warning("recovered before %s: %s", request.operation, note)
                return await self._dispatch(ctx, request, progress)
        finally:
            await self._refresh()
            self._start_collect(ctx)

    def take_recovered(self) -> list[Recovered]:
        taken, self._recovered = self._recovered, []
        return taken

    async def interrupted(self, txid: str, reason: str) -> None:
        await in_thread(write_note, self.paths.state_dir, Note(txid, reason))

    def _start_collect(self, ctx: HostContext) -> None:
        """Prune and collect in the background, after the operation has been reported."""
        if not ctx.collect_pending:
            return
        keep, ctx.collect_pending, ctx.collect_keep = ctx.collect_keep, False, None

        async def run() -> None:
            try:
                async with ctx.locked():
                    await collect(ctx, keep)
                release_memory()  # after the reply, off the operation's path
            except Exception:  # a failed collection costs disk, never the service
                log.exception("collecting old releases failed; the next operation retries")
                ctx.want_collect(keep)

        self._collecting = asyncio.get_running_loop().create_task(run(), name="collect")

    async def _collected(self) -> None:
        """Wait for a collection still running (operations never overlap one)."""
        if self._collecting is not None:
            with contextlib.suppress(Exception):
                await self._collecting
            self._collecting = None

    def snapshot(self) -> EngineSnapshot:
        return self._snapshot

    def reload_config(self) -> None:
        try:
            settings = load_settings(self.paths.config_file)
        except InvalidOptions as exc:
            log.error("keeping the previous settings: %s", exc)
            return
        self.settings = settings
        if self.ctx is not None:
            self.ctx.settings = settings

    async def close(self) -> None:
        # An interrupted collection is journaled; the next start finishes it.
        if self._collecting is not None:
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(self._collecting), 10)
        if self._watch is not None:
            with contextlib.suppress(Exception):
                await self._watch.close()
            self._watch = None

    # -- operations -------------------------------------------------------------------

    def _ctx(self) -> HostContext:
        if self.ctx is None:
            raise NotInstalled("the engine has not started")
        return self.ctx

    async def _dispatch(self, ctx: HostContext, request: Request, progress: ProgressFn) -> Outcome:
        await load_apply()
        from pxhostd.engine.apply import apply

        op = request.operation
        if op in ("install", "reconcile", "rollback"):
            before = await in_thread(ctx.applied.load)
            if op == "install":
                spec = spec_from_dict(dict(request.params))
                source = DesiredSource(request.origin or "Install over D-Bus")
                holds = await in_thread(self.holds.load)
                outcome = await apply(ctx, spec, request.txid, progress, holds, source)
            elif op == "rollback":
                outcome = await self._rollback(ctx, request, progress)
            else:
                outcome = await self._reconcile(ctx, request, progress)
            if outcome.changed:
                await in_thread(self.previous.remember, before, await in_thread(ctx.applied.load))
            return outcome
        if op == "uninstall":
            outcome = await uninstall(ctx, bool(request.params.get("wipe")), request.txid, progress)
            await in_thread(self.holds.save, Holds())
            await in_thread(self.previous.clear)
            return outcome
        if op == "verify":
            return await verify_releases(ctx, progress)
        if op in ("start", "stop", "restart", "enable", "disable"):
            return await self._service_action(ctx, op, progress)
        raise InvalidOptions(f"unknown operation {op!r}")

    async def _reconcile(self, ctx: HostContext, request: Request, progress: ProgressFn) -> Outcome:
        from pxhostd.engine.apply import apply

        holds = await in_thread(self.holds.load)
        applied = await in_thread(ctx.applied.load)
        file_digest = await in_thread(spec_file_digest, self.paths.spec_file)
        if file_digest is not None and (applied is None or applied.file_digest != file_digest):
            # The file changed since it was last applied: it is a new desired state.
            spec = await in_thread(load_spec, self.paths.spec_file)
            source = DesiredSource(f"spec file {self.paths.spec_file}", file_digest=file_digest)
            return await apply(ctx, spec, request.txid, progress, holds, source)
        if applied is None:
            return Outcome(False, f"nothing to do: no spec in {self.paths.spec_file}")
        # Keep the host at the desired state it already has; only drift is repaired.
        return await apply(ctx, applied.spec.to_spec(), request.txid, progress, holds)

    async def _rollback(self, ctx: HostContext, request: Request, progress: ProgressFn) -> Outcome:
        from pxhostd.engine.apply import apply

        progress(2, "finding the previous release")
        previous, spec = await in_thread(rollback_target, self.previous, ctx.releases)
        source = DesiredSource(f"rollback to {previous.version} ({request.origin or 'Rollback'})")
        holds = await in_thread(self.holds.load)
        outcome = await apply(ctx, spec, request.txid, progress, holds, source)
        current = outcome.details.get("version_before")
        message = f"{spec.unit_name} rolled back to {previous.version} (from {current})"
        if await in_thread(self.paths.spec_file.exists):
            message += (
                f"; {self.paths.spec_file} is unchanged: edit it, or the next change of it "
                "applies it again"
            )
        return Outcome(outcome.changed, message, outcome.details)

    async def plan(self, raw_spec: Mapping[str, Any] | None) -> dict[str, Any]:
        """What applying `raw_spec` (None: the desired state) would do; writes nothing."""
        await load_apply()
        from pxhostd.engine.apply import make_plan
        from pxhostd.engine.plan import describe

        ctx = self._ctx()
        if raw_spec:
            spec = spec_from_dict(dict(raw_spec))
        elif await in_thread(self.paths.spec_file.exists):
            spec = await in_thread(load_spec, self.paths.spec_file)
        else:
            applied = await in_thread(ctx.applied.load)
            if applied is None:
                raise NotInstalled("nothing to plan: no spec given, none in "
                                   f"{self.paths.spec_file}, and nothing applied")
            spec = applied.spec.to_spec()
        holds = await in_thread(self.holds.load)
        return describe(await make_plan(ctx, spec, holds), holds.stopped)

    async def _service_action(self, ctx: HostContext, op: str, progress: ProgressFn) -> Outcome:
        applied = await in_thread(ctx.applied.load)
        if applied is None:
            raise NotInstalled(f"cannot {op}: nothing is installed")
        unit = applied.spec.unit_name
        holds = self.holds.load()
        state = await ctx.systemd.unit_state(unit)
        was_active = state.active_state == "active"
        timeout = ctx.settings.activation_timeout
        unit_files = [n for n in managed_files(applied, applied.spec.service) if is_unit_file(n)]
        progress(30, f"{op} {unit}")
        changed = True
        if op == "start":
            holds = Holds(False, holds.disabled)
            changed = not was_active
            if changed:
                await start_and_verify(ctx.systemd, unit, timeout)
        elif op == "restart":
            holds = Holds(False, holds.disabled)
            await restart_and_verify(ctx.systemd, unit, timeout)
        elif op == "stop":
            holds = Holds(True, holds.disabled)
            changed = state.active_state not in ("inactive", "failed")
            await ctx.systemd.stop_unit(unit, ctx.settings.stop_timeout)
        elif op == "enable":
            holds = Holds(holds.stopped, False)
            changed = bool(await ctx.systemd.enable_unit_files(unit_files))
        else:
            holds = Holds(holds.stopped, True)
            changed = bool(await ctx.systemd.disable_unit_files(unit_files))
        await in_thread(self.holds.save, holds)
        done = {"start": "started", "stop": "stopped", "restart": "restarted",
                "enable": "enabled", "disable": "disabled"}[op]
        message = f"{unit} {done}" if changed else f"nothing to do: {unit} already {done}"
        return Outcome(changed, message)

    # -- state for the daemon -----------------------------------------------------------

    async def _refresh(self) -> None:
        ctx = self._ctx()
        try:
            applied = await in_thread(ctx.applied.load)
        except Exception as exc:  # a corrupt state file must not take the daemon down
            log.error("cannot read the applied state: %s", exc)
            applied = None
        snapshot = await in_thread(self._snapshot_of, applied)
        if applied is not None:
            pending = await pending_message(ctx)
            snapshot = dataclasses.replace(snapshot, unit_change_pending=pending)
        self._snapshot = snapshot
        await self._watch_service(self._snapshot.service if applied else None)

    def _snapshot_of(self, applied: AppliedState | None) -> EngineSnapshot:
        if applied is None:
            return EngineSnapshot()
        return dataclasses.replace(self._installed_snapshot(applied), **self._extras())

    def _extras(self) -> dict[str, Any]:
        """Holds and the rollback target, for `status`."""
        holds = self.holds.load()
        try:
            previous = self.previous.load()
        except Exception as exc:  # a damaged file must not hide the status
            log.error("cannot read the previous state: %s", exc)
            previous = None
        kept = previous is not None and self.ctx is not None and self.ctx.releases.exists(
            previous.release_id
        )
        return {
            "held_stopped": holds.stopped,
            "held_disabled": holds.disabled,
            "previous_version": previous.version if previous and kept else "",
            "previous_release": previous.release_id if previous and kept else "",
        }

    def _installed_snapshot(self, applied: AppliedState) -> EngineSnapshot:
        health = ""
        payload = applied.spec.payload
        name = ""
        # The release's small header, never the payload's manifest: start-up reads no
        # manifest before READY=1.
        with contextlib.suppress(Exception):
            header = self._ctx().releases.header(applied.release_id)
            if header is None and payload is not None:  # a release from before the store
                header = load_manifest(Path(payload)).header
            if header is not None and header.digest == applied.payload_digest:
                health, name = header.health or "", header.name
        if not name and payload is not None:
            name = os.path.basename(payload)
        return EngineSnapshot(
            installed=True,
            service=applied.spec.service,
            payload_name=name,
            payload_version=applied.version,
            release=applied.release_id,
            health_url=health,
            spec=applied.spec.doc,
            desired_source=applied.source,
            desired_at=applied.source_at or applied.applied_at,
        )

    async def _watch_service(self, service: str | None) -> None:
        """Mirror the service's ActiveState/SubState from systemd's signals (no polling)."""
        ctx = self._ctx()
        unit = unit_name(service) if service else None
        if self._watch is not None and self._watch.name == unit:
            return
        await self.close()
        if unit is None:
            self.daemon.set_service_state("")
            return

        def changed(activity: UnitActivity) -> None:
            self.daemon.set_service_state(f"{activity.active_state}/{activity.sub_state}")

        # The callback gets the current state first, then every change.
        self._watch = await ctx.systemd.watch_unit(unit, changed)
