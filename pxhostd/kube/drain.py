"""Drain the node before a disruptive upgrade, and undo the cordon only if it is ours.

Order (each step safe to repeat, so a restarted pod resumes from the host record):
1. read the node; save the record (was it already cordoned?) before anything changes;
2. cordon: `spec.unschedulable=true`, guarded by the resourceVersion just read (a 409 means
   someone changed the node meanwhile: read again, and record again if it is now cordoned);
3. evict the pods that mount Portworx volumes (`volumes.pods_to_evict`) through the
   policy/v1 Eviction API; a 429 (a PodDisruptionBudget says not now) is retried with
   backoff; 404 means already gone;
4. wait, bounded, until none of those pods is left on the node;
5. then the caller lets pxhostd apply the change, and calls `release`, which uncordons only
   if the record says the cordon is ours, and removes the record.
A drain that runs out of time releases the node at once and raises DrainTimeout: nothing
was applied, the service runs as it did.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pxhostd.kube import record as records
from pxhostd.kube.api import KubeApi, Obj, pointer
from pxhostd.kube.errors import DrainTimeout, KubeApiError
from pxhostd.kube.threads import in_thread
from pxhostd.kube.volumes import PodRef, pods_to_evict

#: Default bound on evicting and waiting for the pods to be gone (seconds).
DRAIN_TIMEOUT = 600.0
#: Backoff between eviction attempts refused with 429, and between checks that pods left.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0
POLL_INTERVAL = 1.0
#: Attempts at a guarded patch that keeps meeting 409 Conflict.
CONFLICT_RETRIES = 10

Say = Callable[[str], None]
_log = logging.getLogger(__name__)


def unschedulable(node: Obj) -> bool:
    return bool((node.get("spec") or {}).get("unschedulable"))


def guarded(node: Obj, ops: list[Obj]) -> list[Obj]:
    """`ops` plus the precondition that the node is still at the version read."""
    rv = str((node.get("metadata") or {}).get("resourceVersion") or "")
    return [{"op": "replace", "path": pointer("metadata", "resourceVersion"), "value": rv}, *ops]


def set_unschedulable(value: bool) -> list[Obj]:
    return [{"op": "add", "path": pointer("spec", "unschedulable"), "value": value}]


@dataclass
class Drainer:
    api: KubeApi
    node: str
    say: Say
    drain_all: bool = False
    timeout: float = DRAIN_TIMEOUT
    record_path: Path = records.DRAIN_RECORD

    # -- the steps ------------------------------------------------------------------------

    async def drain(self, target: str, resumed: records.DrainRecord | None) -> records.DrainRecord:
        """Record, cordon, evict, wait. On DrainTimeout (or any failure) the node is
        released again before the error goes on."""
        rec = resumed if resumed is not None else await self._record(target)
        if resumed is not None:
            rec = replace(resumed, target=target, phase="draining")
            await asyncio.to_thread(records.save, rec, self.record_path)
        try:
            rec = await self._cordon(rec)
            await self._evict_and_wait()
        except asyncio.CancelledError:
            raise  # the pod is stopping: the record stays, the next pod resumes from it
        except Exception:
            await self.release(rec, "the drain did not finish")
            raise
        rec = replace(rec, phase="applying")
        await asyncio.to_thread(records.save, rec, self.record_path)
        return rec

    async def release(self, rec: records.DrainRecord, why: str) -> None:
        """Uncordon if the cordon is the drain's own; then forget the record."""
        if rec.cordoned_by_us:
            await self._patch_until_applied(
                lambda node: set_unschedulable(False) if unschedulable(node) else None
            )
            self.say(f"drain: node {self.node} uncordoned ({why})")
        else:
            self.say(f"drain: node {self.node} stays cordoned (it was before the drain)")
        await asyncio.to_thread(records.clear, self.record_path)

    # -- inside ---------------------------------------------------------------------------

    async def _record(self, target: str) -> records.DrainRecord:
        node = await in_thread(self.api.get_node, self.node)
        rec = records.new_record(self.node, unschedulable(node), target)
        await asyncio.to_thread(records.save, rec, self.record_path)
        return rec

    async def _cordon(self, rec: records.DrainRecord) -> records.DrainRecord:
        conflicted = False
        for _ in range(CONFLICT_RETRIES):
            node = await in_thread(self.api.get_node, self.node)
            if unschedulable(node):
                if conflicted and rec.cordoned_by_us:
                    # Someone cordoned the node between our read and our patch: that
                    # cordon is theirs, and stays after the drain.
                    rec = replace(rec, was_cordoned=True)
                    await asyncio.to_thread(records.save, rec, self.record_path)
                self.say(f"drain: node {self.node} is cordoned")
                return rec
            try:
                await in_thread(self.api.patch_node, self.node,
                                guarded(node, set_unschedulable(True)))
            except KubeApiError as exc:
                if exc.status == 409:
                    conflicted = True
                    continue
                raise
            self.say(f"drain: node {self.node} cordoned")
            return rec
        raise KubeApiError(f"cordon node {self.node}: kept conflicting with other writers",
                           status=409)

    async def _patch_until_applied(self, ops_for: Callable[[Obj], list[Obj] | None]) -> None:
        for _ in range(CONFLICT_RETRIES):
            node = await in_thread(self.api.get_node, self.node)
            ops = ops_for(node)
            if ops is None:
                return
            try:
                await in_thread(self.api.patch_node, self.node, guarded(node, ops))
                return
            except KubeApiError as exc:
                if exc.status != 409:
                    raise
        raise KubeApiError(f"patch node {self.node}: kept conflicting with other writers",
                           status=409)

    async def _find(self) -> list[PodRef]:
        def find() -> list[PodRef]:
            cache: dict[tuple[str, str], Obj | None] = {}

            def pv_of_claim(namespace: str, claim: str) -> Obj | None:
                key = (namespace, claim)
                if key not in cache:
                    cache[key] = self._bound_pv(namespace, claim)
                return cache[key]

            return pods_to_evict(self.api.list_pods_on_node(self.node), pv_of_claim,
                                 self.drain_all)

        return await in_thread(find)

    def _bound_pv(self, namespace: str, claim: str) -> Obj | None:
        try:
            pvc = self.api.get_pvc(namespace, claim)
            name = (pvc.get("spec") or {}).get("volumeName")
            return self.api.get_pv(str(name)) if name else None
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def _evict_and_wait(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        chosen = await self._find()
        if not chosen:
            self.say("drain: no pod on this node uses Portworx volumes")
            return
        self.say(f"drain: evicting {len(chosen)} pod(s): {', '.join(map(str, chosen))}")
        pending = list(chosen)
        delay = BACKOFF_FIRST
        refused: dict[PodRef, str] = {}
        while pending:
            for pod in list(pending):
                try:
                    await in_thread(self.api.evict, pod.namespace, pod.name)
                except KubeApiError as exc:
                    if exc.status == 429:
                        refused[pod] = str(exc)
                        continue
                    if exc.status != 404:
                        raise
                    self.say(f"drain: pod {pod} already gone")
                else:
                    self.say(f"drain: evicted pod {pod}")
                pending.remove(pod)
                refused.pop(pod, None)
            if not pending:
                break
            if loop.time() + delay > deadline:
                await self._timed_out(pending, refused)
            _log.info("drain: %d eviction(s) refused for now (429); again in %.1f s",
                      len(pending), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)
        await self._wait_gone(chosen, deadline)

    async def _wait_gone(self, chosen: list[PodRef], deadline: float) -> None:
        loop = asyncio.get_running_loop()
        wanted = {p.uid: p for p in chosen}
        while True:
            left = [wanted[uid] for uid in await self._uids_on_node() if uid in wanted]
            if not left:
                self.say(f"drain: {len(chosen)} pod(s) gone from node {self.node}")
                return
            if loop.time() + POLL_INTERVAL > deadline:
                await self._timed_out(left, {})
            await asyncio.sleep(POLL_INTERVAL)

    async def _uids_on_node(self) -> list[str]:
        pods = await in_thread(self.api.list_pods_on_node, self.node)
        return [str((p.get("metadata") or {}).get("uid") or "") for p in pods]

    async def _timed_out(self, left: list[PodRef], refused: dict[PodRef, Any]) -> None:
        names = ", ".join(map(str, sorted(left)))
        why = f"; last refusal: {next(iter(refused.values()))}" if refused else ""
        raise DrainTimeout(
            f"drain of node {self.node} did not finish within {self.timeout:g} s: "
            f"still there: {names}{why}"
        )
