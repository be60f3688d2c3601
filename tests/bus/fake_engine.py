"""An in-memory engine for testing the D-Bus surface alone (never as proof of systemd work)."""

from __future__ import annotations

import asyncio
from typing import Any

from pxhostd.engine.api import EngineSnapshot, Outcome, ProgressFn, Request
from pxhostd.errors import NotInstalled, RolledBack


class FakeEngine:
    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.gate: asyncio.Event | None = None
        self.calls: list[Request] = []
        self.spec: dict[str, Any] | None = None
        self.fail_with: Exception | None = None

    async def start(self) -> None:
        return None

    def take_recovered(self) -> list[Any]:
        return []

    async def interrupted(self, txid: str, reason: str) -> None:
        return None

    async def close(self) -> None:
        return None

    def reload_config(self) -> None:
        return None

    def snapshot(self) -> EngineSnapshot:
        return EngineSnapshot(
            installed=self.spec is not None,
            payload_version="1.0.0" if self.spec else "",
            spec=self.spec,
        )

    async def plan(self, raw_spec: dict[str, Any] | None) -> dict[str, Any]:
        wanted = raw_spec or self.spec
        changes = [] if wanted == self.spec else ["spec changed"]
        return {"changes": changes, "service_action": "restart" if changes else "none",
                "reasons": ["spec changed"] if changes else [], "summary": "fake"}

    async def run(self, request: Request, progress: ProgressFn) -> Outcome:
        self.calls.append(request)
        progress(10, f"working on {request.operation}")
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        if request.operation == "install":
            changed = self.spec != dict(request.params)
            self.spec = dict(request.params)
            progress(90, "almost done")
            return Outcome(changed, "installed" if changed else "nothing to do")
        if self.spec is None:
            raise NotInstalled("nothing installed")
        if request.operation == "restart" and self.spec.get("args") == ["boom"]:
            raise RolledBack("v3 failed; v2 restored")
        return Outcome(True, f"{request.operation} done")
