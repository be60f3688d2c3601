"""What the pod entrypoint asks of Kubernetes: a drain around a disruptive upgrade, and
node-label control while it serves. Absent a service account (not in Kubernetes), both are
off and the pod says so once.

An upgrade is disruptive when the payload about to be submitted declares `drain:
on-upgrade` and pxhostd already runs a different release (first installs never drain:
nothing used the volumes yet). A drain record left on the host by an earlier pod is resumed
when the change it was for is still pending, and released (uncordon if ours) otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pxhostd.bus.client import Connect, PxClient
from pxhostd.kube import record as records
from pxhostd.kube.api import SERVICE_ACCOUNT_DIR, KubeApi, in_cluster_available
from pxhostd.kube.drain import Drainer
from pxhostd.kube.errors import KubeApiError
from pxhostd.kube.labels import LabelController
from pxhostd.payload.manifest import Manifest
from pxhostd.payload.staging import make_release_id

Say = Callable[[str], None]
_log = logging.getLogger(__name__)


def is_disruptive(manifest: Manifest, status: Mapping[str, Any]) -> bool:
    target = make_release_id(manifest.version, manifest.digest)
    current = str(status.get("release") or "")
    return manifest.drain == "on-upgrade" and bool(status.get("installed")) and \
        bool(current) and current != target


@dataclass
class KubeSide:
    api: KubeApi
    node: str
    say: Say
    drainer: Drainer

    @classmethod
    def create(
        cls, node: str | None, say: Say, *, drain_all: bool, drain_timeout: float,
        sa_dir: Path = SERVICE_ACCOUNT_DIR, record_path: Path = records.DRAIN_RECORD,
    ) -> KubeSide | None:
        if not in_cluster_available(sa_dir):
            say("kubernetes: no service account in this pod: drain and node-label control off")
            return None
        if not node:
            say("kubernetes: PXHOSTD_NODE_NAME is not set (spec.nodeName): drain and "
                "node-label control off")
            return None
        try:
            api = KubeApi.in_cluster(sa_dir)
        except KubeApiError as exc:  # e.g. no ca.crt: the pod runs on without it
            say(f"kubernetes: {str(exc).rstrip('.')}: drain and node-label control off")
            return None
        drainer = Drainer(api, node, say, drain_all=drain_all, timeout=drain_timeout,
                          record_path=record_path)
        say(f"kubernetes: node {node}; drain before disruptive upgrades and node-label "
            "control on")
        return cls(api, node, say, drainer)

    async def before_install(
        self, client: PxClient, manifest: Manifest
    ) -> records.DrainRecord | None:
        """Drain if the change is disruptive (DrainTimeout: nothing may be applied);
        the record to `after_install` with, or None when nothing was drained."""
        pending = await asyncio.to_thread(records.load, self.drainer.record_path)
        if pending is not None and pending.node != self.node:
            _log.warning("drain record for another node (%s) ignored", pending.node)
            pending = None
        status = await client.status()
        if not is_disruptive(manifest, status):
            if pending is not None:
                await self.drainer.release(pending, "the change it was for is no longer pending")
            return None
        target = make_release_id(manifest.version, manifest.digest)
        how = "resuming the drain" if pending is not None else "draining"
        self.say(f"drain: {manifest.name} {manifest.version} declares disruptive upgrades "
                 f"(drain: on-upgrade); {how} node {self.node} before upgrading "
                 f"{status.get('release')} -> {target}")
        return await self.drainer.drain(target, pending)

    async def after_install(self, rec: records.DrainRecord | None) -> None:
        if rec is not None:
            await self.drainer.release(rec, "the upgrade is done")

    async def serve_labels(self, connect: Connect) -> None:
        await LabelController(self.api, self.node, connect, self.say).run()

    def close(self) -> None:
        self.api.close()
