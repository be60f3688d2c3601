"""Node-label control (pxhostd.kube.labels) with the real client and the stand-in server.

pxhostd's D-Bus side is a recording stand-in here (the same calls PxClient makes); the
node end-to-end test drives the real daemon.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kubeapi import objects
from kubeapi.cluster import Cluster

from pxhostd.kube.labels import ENABLED_DONE, SERVICE_DONE, LabelController

BOUND = 30.0  # seconds a condition may take before the test fails


@dataclass
class RecordingPx:
    """What the controller asks of pxhostd: operation names, in order."""

    calls: list[str] = field(default_factory=list)
    closed: int = 0

    async def action(self, operation: str, txid: str | None = None) -> str:
        self.calls.append(operation)
        return f"/t/{len(self.calls)}"

    async def uninstall(self, wipe: bool = False, txid: str | None = None) -> str:
        self.calls.append(f"Uninstall(wipe={wipe})")
        return f"/t/{len(self.calls)}"

    async def wait(self, path: str, on_progress: Any = None, timeout: Any = None
                   ) -> dict[str, Any]:
        return {"success": True, "changed": True, "message": "ok"}

    def close(self) -> None:
        self.closed += 1


def label(cluster: Cluster, key: str, value: str | None) -> None:
    """What `kubectl label node pxnode key=value` (or `key-`) does."""
    def change(node: dict[str, Any]) -> None:
        labels = node["metadata"]["labels"]
        if value is None:
            labels.pop(key, None)
        else:
            labels[key] = value

    cluster.store.update("nodes", "", objects.NODE, change)


def node(cluster: Cluster) -> dict[str, Any]:
    return cluster.store.get("nodes", "", objects.NODE)


async def until(probe: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    while not probe():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def settle(cluster: Cluster) -> None:
    """Wait until the controller has seen the store's latest version of the node (its
    watch is the only reader, so a quiet watch means every event was handled)."""
    await asyncio.sleep(0.5)


def run_with(cluster: Cluster, px: RecordingPx, lines: list[str],
             body: Callable[[LabelController], Awaitable[None]]) -> LabelController:
    async def connect() -> Any:
        return px

    controller = LabelController(cluster.api, objects.NODE, connect, lines.append)

    async def scenario() -> None:
        task = asyncio.create_task(controller.run())
        try:
            await body(controller)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    return controller


def done(cluster: Cluster, key: str) -> dict[str, Any] | None:
    raw = node(cluster)["metadata"].get("annotations", {}).get(key)
    return None if raw is None else dict(json.loads(raw))


def test_each_service_value_acts_exactly_once_per_change(cluster: Cluster) -> None:
    cluster.store.create(objects.node())
    px = RecordingPx()
    lines: list[str] = []

    async def body(_: LabelController) -> None:
        for n, (value, op) in enumerate([("stop", "Stop"), ("start", "Start"),
                                         ("restart", "Restart"), ("disable", "Disable"),
                                         ("enable", "Enable")], start=1):
            label(cluster, "px/service", value)
            await until(lambda n=n, v=value: len(px.calls) >= n
                        and (done(cluster, SERVICE_DONE) or {}).get("value") == v,
                        f"px/service={value}")
            assert px.calls[-1] == op
        # Unrelated changes to the node (and our own annotation writes) repeat nothing.
        label(cluster, "topology.kubernetes.io/zone", "z1")
        await settle(cluster)
        assert px.calls == ["Stop", "Start", "Restart", "Disable", "Enable"]
        # The same value again after the label was removed is a new change.
        label(cluster, "px/service", None)
        await until(lambda: done(cluster, SERVICE_DONE) is None, "the record to be forgotten")
        label(cluster, "px/service", "restart")
        await until(lambda: px.calls[-1:] == ["Restart"] and len(px.calls) == 6, "restart again")

    run_with(cluster, px, lines, body)
    assert done(cluster, SERVICE_DONE)["result"] == "done"  # type: ignore[index]
    assert px.closed == len(px.calls)


def test_a_restarted_pod_does_not_repeat_the_last_action(cluster: Cluster) -> None:
    cluster.store.create(objects.node(labels={"px/service": "restart"}))
    px = RecordingPx()

    async def first(_: LabelController) -> None:
        await until(lambda: done(cluster, SERVICE_DONE) is not None, "the first restart")

    run_with(cluster, px, [], first)
    assert px.calls == ["Restart"]

    async def second(_: LabelController) -> None:
        await settle(cluster)

    run_with(cluster, px, [], second)
    assert px.calls == ["Restart"]


def test_enabled_uninstall_uninstalls_and_relabels_false(cluster: Cluster) -> None:
    cluster.store.create(objects.node())
    px = RecordingPx()
    lines: list[str] = []

    async def body(_: LabelController) -> None:
        label(cluster, "px/enabled", "remove")
        await until(lambda: node(cluster)["metadata"]["labels"].get("px/enabled") == "false",
                    "px/enabled=false")
        await settle(cluster)

    run_with(cluster, px, lines, body)
    assert px.calls == ["Uninstall(wipe=False)"]  # /etc/pwx kept
    assert done(cluster, ENABLED_DONE)["value"] == "remove"  # type: ignore[index]
    assert any("relabelled px/enabled=false" in line for line in lines)


def test_unknown_values_are_logged_once_and_ignored(cluster: Cluster) -> None:
    cluster.store.create(objects.node(labels={"px/service": "reboot", "px/enabled": "maybe"}))
    px = RecordingPx()
    lines: list[str] = []

    async def body(_: LabelController) -> None:
        await until(lambda: len([x for x in lines if "unknown" in x]) == 2, "two notes")
        label(cluster, "topology.kubernetes.io/zone", "z1")
        label(cluster, "topology.kubernetes.io/zone", "z2")
        await settle(cluster)

    run_with(cluster, px, lines, body)
    unknown = [x for x in lines if "unknown" in x]
    assert len(unknown) == 2, lines
    assert any("px/service='reboot'" in x for x in unknown)
    assert any("px/enabled='maybe'" in x for x in unknown)
    assert px.calls == []


def test_an_expired_watch_is_resumed(cluster: Cluster) -> None:
    cluster.store.create(objects.node())
    px = RecordingPx()
    lines: list[str] = []

    async def body(controller: LabelController) -> None:
        def watches() -> int:
            return sum("watch" in p for _, p, _ in cluster.server.log)

        for n in (1, 2):
            await until(lambda n=n: watches() == n, f"watch {n} open")
            await asyncio.sleep(0.2)  # the server has entered the stream
            cluster.store.expire_watches()  # 410 Gone into the open watch
            await until(lambda n=n: controller.resumed == n, f"expiry {n} noticed")
        # A change made while the watch was being restarted is still seen.
        label(cluster, "px/service", "stop")
        await until(lambda: px.calls == ["Stop"], "the stop after the expiry")

    controller = run_with(cluster, px, lines, body)
    assert controller.resumed == 2
    assert sum("410 Gone" in line for line in lines) == 2
