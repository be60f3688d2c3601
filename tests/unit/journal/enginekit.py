"""The shipped engine (apply, uninstall, recovery) on a scratch root, with a fake systemd.

The fake keeps its state (loaded unit texts, enablement, what runs and on which release) in
a JSON file, so a child process killed by a failpoint leaves it behind for the parent, like
systemd outlives a killed pxhostd. Faults are injected by name (`fail`: "daemon-reload",
"enable", "start"). It is a fake for our own logic only; systemd's behaviour itself is
tested against real systemd (tests/usermanager, tests/e2e).

Child use: `python enginekit.py ROOT install SPEC_JSON` or `... ROOT uninstall WIPE`, with
PXHOSTD_FAILPOINTS set.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from pxhostd.engine import recovery
from pxhostd.engine.api import Outcome, Recovered
from pxhostd.engine.apply import apply
from pxhostd.engine.collect import collect
from pxhostd.engine.context import HostContext
from pxhostd.engine.holds import Holds
from pxhostd.engine.settings import EngineSettings
from pxhostd.engine.state import DesiredSource
from pxhostd.engine.uninstall import uninstall
from pxhostd.errors import SystemdError
from pxhostd.failpoints import DISABLED, Failpoints
from pxhostd.hostfs import atomic_write
from pxhostd.paths import Paths
from pxhostd.spec.validate import spec_from_dict
from pxhostd.systemd.errors import NoSuchUnit
from pxhostd.systemd.unit import (
    ActiveState,
    JobResult,
    JobResultKind,
    LoadState,
    UnitActivity,
    UnitFileState,
    UnitState,
)
from pxhostd.systemd.watch import UnitWatch

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD = REPO_ROOT / "container" / "demo-payload" / "build.py"
SETTINGS = EngineSettings(activation_timeout=5.0, settle_seconds=0.0, journal_lines=0)


def build_payload(dest: Path, version: str) -> Path:
    subprocess.run([sys.executable, str(BUILD), str(dest), "--version", version],
                   check=True, capture_output=True)
    return dest


class FakeSystemd:
    """The systemd calls the engine makes, on a JSON state file."""

    def __init__(self, paths: Paths, state_file: Path) -> None:
        self.paths = paths
        self.state_file = state_file

    # -- the state --------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            doc = {}
        doc.setdefault("units", {})
        doc.setdefault("fail", [])
        doc.setdefault("calls", [])
        doc.setdefault("foreign", {})
        return doc

    def save(self, doc: dict[str, Any]) -> None:
        atomic_write(self.state_file, json.dumps(doc, sort_keys=True, indent=1))

    def _unit(self, doc: dict[str, Any], name: str) -> dict[str, Any]:
        unit: dict[str, Any] = doc["units"].setdefault(name, {
            "loaded": None, "enabled": False, "active": False, "invocation": "",
            "release": None, "starts": 0,
        })
        return unit

    def _call(self, what: str) -> dict[str, Any]:
        doc = self.load()
        doc["calls"].append(what)
        if what.split()[0] in doc["fail"]:
            self.save(doc)
            raise SystemdError(f"{what} failed (injected)")
        return doc

    # -- the Systemd surface the engine uses (file work off the event loop, as systemd's
    # -- own work is in another process) ------------------------------------------------

    async def unit_state(self, name: str, timeout: float = 0) -> UnitState:
        return await asyncio.to_thread(self._unit_state, name)

    def _unit_state(self, name: str) -> UnitState:
        doc = self.load()
        unit = doc["units"].get(name)
        foreign = doc["foreign"].get(name)
        on_disk = self.paths.unit_dir / name
        if foreign:
            load, fragment = LoadState.LOADED, foreign
        elif unit and unit["loaded"] is not None:
            load, fragment = LoadState.LOADED, str(on_disk)
        else:
            load, fragment = LoadState.NOT_FOUND, ""
        active = bool(unit and unit["active"])
        return UnitState(
            name=name, load_state=load,
            active_state=ActiveState.ACTIVE if active else ActiveState.INACTIVE,
            sub_state="running" if active else "dead", result="success",
            invocation_id=unit["invocation"] if unit else "", main_pid=0, exec_main_status=0,
            unit_file_state=UnitFileState.parse(
                "enabled" if unit and unit["enabled"] else "disabled"),
            need_daemon_reload=False, fragment_path=fragment, status_text="",
            n_restarts=0, condition_result=True,
        )

    async def load_unit(self, name: str, timeout: float = 0) -> str:
        return "/org/freedesktop/systemd1/unit/" + name

    async def daemon_reload(self, timeout: float = 0) -> None:
        await asyncio.to_thread(self._daemon_reload)

    def _daemon_reload(self) -> None:
        doc = self._call("daemon-reload")
        for name in sorted({*doc["units"], *self._unit_files()}):
            path = self.paths.unit_dir / name
            self._unit(doc, name)["loaded"] = path.read_text() if path.exists() else None
        self.save(doc)

    def _unit_files(self) -> list[str]:
        d = self.paths.unit_dir
        return sorted(p.name for p in d.glob("*.service")) if d.is_dir() else []

    async def enable_unit_files(self, names: list[str], *_a: Any, **_k: Any) -> list[str]:
        return await asyncio.to_thread(self._set_enabled, names, True)

    async def disable_unit_files(self, names: list[str], *_a: Any, **_k: Any) -> list[str]:
        return await asyncio.to_thread(self._set_enabled, names, False)

    def _set_enabled(self, names: list[str], enabled: bool) -> list[str]:
        doc = self._call(("enable " if enabled else "disable ") + " ".join(names))
        for name in names:
            self._unit(doc, name)["enabled"] = enabled
        self.save(doc)
        return list(names)

    def _run(self, verb: str, name: str) -> UnitState:
        doc = self._call(f"{verb} {name}")
        unit = self._unit(doc, name)
        if unit["loaded"] is None:
            raise NoSuchUnit(f"Unit {name} not found.")
        unit.update(active=True, invocation=uuid.uuid4().hex, starts=unit["starts"] + 1,
                    release=os.readlink(self.paths.current_link)
                    if os.path.islink(self.paths.current_link) else None)
        self.save(doc)
        return self._unit_state(name)

    # The verified jobs (pxhostd.systemd.verify) run on these, as on the real client: a
    # start of an active unit is a no-op, a restart starts a new invocation.

    async def start_unit(self, name: str, timeout: float = 0) -> JobResult:
        if not (await self.unit_state(name)).is_active:
            await asyncio.to_thread(self._run, "start", name)
        return JobResult(name, "/job/start", JobResultKind.DONE)

    async def restart_unit(self, name: str, timeout: float = 0) -> JobResult:
        await asyncio.to_thread(self._run, "start", name)
        return JobResult(name, "/job/restart", JobResultKind.DONE)

    async def unit_call(self, name: str, path: str, member: str) -> None:
        """Ref/Unref: nothing unloads in the fake."""

    async def state_hint(self, name: str) -> str:
        return (await self.unit_state(name)).describe()

    async def watch_unit(self, name: str, *_a: Any, **_k: Any) -> UnitWatch:
        """A watch that sees the state as it is now; the fake's state changes only in
        calls the engine makes itself, never behind its back."""

        async def closed(_watch: UnitWatch) -> None:
            return None

        state = await self.unit_state(name)
        watch = UnitWatch(name, await self.load_unit(name), None, closed)
        watch.initial(UnitActivity(state.active_state, state.sub_state))
        return watch

    async def stop_unit(self, name: str, timeout: float = 0) -> None:
        await asyncio.to_thread(self._stop, name)

    def _stop(self, name: str) -> None:
        doc = self._call(f"stop {name}")
        self._unit(doc, name).update(active=False, release=None)
        self.save(doc)

    async def reset_failed_unit(self, name: str, timeout: float = 0) -> None:
        await asyncio.to_thread(self._call, f"reset-failed {name}")


def context(root: Path, failpoints: Failpoints = DISABLED) -> HostContext:
    paths = Paths().under(root)
    systemd = FakeSystemd(paths, root / "fake-systemd.json")
    return HostContext.create(paths, SETTINGS, failpoints, systemd)  # type: ignore[arg-type]


def systemd_of(ctx: HostContext) -> FakeSystemd:
    assert isinstance(ctx.systemd, FakeSystemd)
    return ctx.systemd


async def install(ctx: HostContext, spec: dict[str, Any], txid: str = "tx") -> Outcome:
    """Apply, then the collection the daemon runs after reporting (as HostEngine does)."""
    try:
        return await apply(ctx, spec_from_dict(spec), txid, lambda _p, _m: None, Holds(),
                           DesiredSource("test"))
    finally:
        await collected(ctx)


async def collected(ctx: HostContext) -> None:
    if ctx.collect_pending:
        keep, ctx.collect_pending, ctx.collect_keep = ctx.collect_keep, False, None
        await collect(ctx, keep)


async def remove(ctx: HostContext, wipe: bool, txid: str = "tx-rm") -> Outcome:
    return await uninstall(ctx, wipe, txid, lambda _p, _m: None)


async def recover(ctx: HostContext) -> Recovered | None:
    try:
        return await recovery.recover(ctx)
    finally:
        await collected(ctx)


def main(root: Path, op: str, arg: str) -> None:
    ctx = context(root, Failpoints.from_env())
    if op == "install":
        asyncio.run(install(ctx, json.loads(arg)))
    else:
        asyncio.run(remove(ctx, arg == "wipe"))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
