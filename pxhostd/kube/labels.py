"""Node-label control: `kubectl label node N px/service=restart` without a shell on N.

The pod watches its own Node: the first watch has no resourceVersion, so it starts with
the node as it is (ADDED); each later one goes on from the last version seen; when the
server says that version expired (410 Gone) it starts over from the current state; any
other failure is retried with backoff; it never gives up. On each state of the node:

- `px/service` in {start, stop, restart, enable, disable}: that pxhostd operation, once per
  change of the label. What was done is recorded on the Node in the annotation
  `SERVICE_DONE` (value and result), so a restarted pod does not do it again; removing the
  label forgets it, so setting the same value again later acts again.
- `px/enabled` in {uninstall, remove, rm}: pxhostd's Uninstall (`/etc/pwx` kept), then the
  label is set to `false`, so the DaemonSet's node affinity takes the pod off the node. The
  result goes to the annotation `ENABLED_DONE`.
- `px/enabled=false`: nothing here; the DaemonSet's affinity removes the pod, and a pod
  going away never stops storage.
- anything else: logged once per value, ignored.

Every action goes through pxhostd's D-Bus interface, like `pxhostctl`, so it is serialised
with every other operation, and kept in pxhostd's history with the transaction id
`label:<node>:<label>=<value>:<random>`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pxhostd.bus.client import BUSY_WAIT, Connect
from pxhostd.errors import Busy, PxError
from pxhostd.kube.api import KubeApi, Obj, pointer
from pxhostd.kube.drain import Say, guarded
from pxhostd.kube.errors import KubeApiError
from pxhostd.kube.threads import in_thread

SERVICE_LABEL = "px/service"
ENABLED_LABEL = "px/enabled"
SERVICE_DONE = "pxhostd.portworx.com/service-done"
ENABLED_DONE = "pxhostd.portworx.com/enabled-done"
#: px/service value -> pxhostd operation.
SERVICE_ACTIONS = {"start": "Start", "stop": "Stop", "restart": "Restart",
                   "enable": "Enable", "disable": "Disable"}
UNINSTALL_VALUES = frozenset({"uninstall", "remove", "rm"})
QUIET_VALUES = frozenset({"true", "false"})
#: The server ends each watch after this long (seconds); the next one goes on from the
#: last resourceVersion seen.
WATCH_TIMEOUT = 300
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
#: Bound on one action's transaction (a Busy daemon is waited out as long as the pod's
#: own submission waits, bus.client.BUSY_WAIT).
ACTION_TIMEOUT = 1800.0
_log = logging.getLogger(__name__)


def _labels(node: Obj) -> dict[str, str]:
    return dict((node.get("metadata") or {}).get("labels") or {})


def _annotations(node: Obj) -> dict[str, str]:
    return dict((node.get("metadata") or {}).get("annotations") or {})


def done_value(node: Obj, key: str) -> str | None:
    raw = _annotations(node).get(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw).get("value")
    except (ValueError, AttributeError):
        return None
    return str(value) if value is not None else None


def annotation_ops(node: Obj, key: str, value: str | None) -> list[Obj]:
    """JSON Patch ops that set (or, for None, remove) one annotation."""
    annotations = (node.get("metadata") or {}).get("annotations")
    if value is None:
        if not annotations or key not in annotations:
            return []
        return [{"op": "remove", "path": pointer("metadata", "annotations", key)}]
    ops: list[Obj] = []
    if annotations is None:
        ops.append({"op": "add", "path": pointer("metadata", "annotations"), "value": {}})
    ops.append({"op": "add", "path": pointer("metadata", "annotations", key), "value": value})
    return ops


@dataclass
class LabelController:
    api: KubeApi
    node: str
    connect: Connect
    say: Say
    #: Values already reported as unknown (each is logged once).
    unknown: set[tuple[str, str]] = field(default_factory=set)
    #: How many watches were resumed after 410 Gone (for the log and the tests).
    resumed: int = 0
    #: An event arrived since the last failure (else a repeated 410 backs off too).
    progressed: bool = False

    async def run(self) -> None:
        """Follow the node until cancelled."""
        delay = BACKOFF_FIRST
        while True:
            try:
                # No resourceVersion: the watch starts with the node as it is now (ADDED),
                # then its changes; so a version that expired is never asked for again.
                await self._follow("")
            except KubeApiError as exc:
                if exc.status == 410:
                    self.resumed += 1
                    self.say(f"labels: watch of node {self.node} expired (410 Gone); "
                             "watching again from its current state")
                    if self.progressed:
                        self.progressed = False
                        delay = BACKOFF_FIRST
                        continue
                _log.warning("labels: %s; trying again in %.0f s", exc, delay)
            except Exception:  # never give up: log it, wait, watch again
                _log.exception("labels: unexpected failure; trying again in %.0f s", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _follow(self, resource_version: str) -> None:
        """Watch from `resource_version`, handling each new state, watch after watch."""
        loop = asyncio.get_running_loop()
        while True:
            queue: asyncio.Queue[tuple[str, Obj]] = asyncio.Queue()

            on_event = functools.partial(_deliver, loop, queue)
            watcher = asyncio.ensure_future(in_thread(
                self.api.watch_node, self.node, resource_version, WATCH_TIMEOUT, on_event))
            try:
                while not (watcher.done() and queue.empty()):
                    getter = asyncio.ensure_future(queue.get())
                    await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
                    if not getter.done():
                        getter.cancel()
                        continue
                    kind, obj = getter.result()
                    self.progressed = True
                    if kind in ("ADDED", "MODIFIED"):
                        resource_version = str(obj["metadata"]["resourceVersion"])
                        await self.handle(obj)
                    elif kind == "DELETED":
                        _log.warning("labels: node %s was deleted", self.node)
                watcher.result()  # a failed watch raises here (410: re-read the node)
            finally:
                watcher.cancel()

    async def handle(self, node: Obj) -> Obj:
        """Act on the node's labels; the node as last written (or as given)."""
        labels = _labels(node)
        node = await self._service(node, labels.get(SERVICE_LABEL))
        return await self._enabled(node, labels.get(ENABLED_LABEL))

    async def _service(self, node: Obj, value: str | None) -> Obj:
        done = done_value(node, SERVICE_DONE)
        if value is None:
            if done is None:
                return node
            return await self._patch(node, annotation_ops(node, SERVICE_DONE, None))
        if value not in SERVICE_ACTIONS:
            self._unknown(SERVICE_LABEL, value)
            return node
        if done == value:
            return node
        result = await self._act(SERVICE_LABEL, value, SERVICE_ACTIONS[value])
        return await self._patch(node, annotation_ops(node, SERVICE_DONE, result))

    async def _enabled(self, node: Obj, value: str | None) -> Obj:
        if value is None or value in QUIET_VALUES:
            return node
        if value not in UNINSTALL_VALUES:
            self._unknown(ENABLED_LABEL, value)
            return node
        result = await self._act(ENABLED_LABEL, value, "Uninstall")
        ops = [*annotation_ops(node, ENABLED_DONE, result),
               {"op": "replace", "path": pointer("metadata", "labels", ENABLED_LABEL),
                "value": "false"}]
        node = await self._patch(node, ops)
        self.say(f"labels: node {self.node} relabelled {ENABLED_LABEL}=false")
        return node

    def _unknown(self, label: str, value: str) -> None:
        if (label, value) not in self.unknown:
            self.unknown.add((label, value))
            self.say(f"labels: ignoring unknown value {label}={value!r}")

    async def _act(self, label: str, value: str, operation: str) -> str:
        """Run the operation through pxhostd; the annotation's JSON (value and result)."""
        txid = f"label:{self.node[:48]}:{label}={value}:{uuid.uuid4().hex[:8]}"
        self.say(f"labels: {label}={value}: {operation} (id {txid})")
        try:
            result = await self._transaction(operation, txid)
        except PxError as exc:
            outcome = f"failed: {exc.name}: {exc}"
        else:
            if result.get("success"):
                outcome = "done" if result.get("changed") else "done (nothing changed)"
            else:
                name = str(result.get("error_name", "")).rsplit(".", 1)[-1] or "Failed"
                outcome = f"failed: {name}: {result.get('error_message', '')}"
        self.say(f"labels: {label}={value}: {outcome}")
        return json.dumps({"value": value, "result": outcome, "id": txid,
                           "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                          sort_keys=True)

    async def _transaction(self, operation: str, txid: str) -> dict[str, Any]:
        client = await self.connect()
        try:
            deadline = time.monotonic() + BUSY_WAIT
            while True:
                try:
                    if operation == "Uninstall":
                        path = await client.uninstall(False, txid)
                    else:
                        path = await client.action(operation, txid)
                    break
                except Busy:
                    if time.monotonic() >= deadline:
                        raise
                    await asyncio.sleep(2.0)
            return await client.wait(path, None, ACTION_TIMEOUT)
        finally:
            client.close()

    async def _patch(self, node: Obj, ops: list[Obj]) -> Obj:
        """Apply ops guarded by the node's resourceVersion; on 409 re-read and re-derive
        only the annotation/label writes (the action itself is never repeated)."""
        if not ops:
            return node
        for _ in range(10):
            try:
                return await in_thread(self.api.patch_node, self.node, guarded(node, ops))
            except KubeApiError as exc:
                if exc.status != 409:
                    raise
            fresh = await in_thread(self.api.get_node, self.node)
            ops = _rebase(fresh, ops)
            node = fresh
        raise KubeApiError(f"patch node {self.node}: kept conflicting with other writers",
                           status=409)


def _deliver(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[tuple[str, Obj]],
             kind: str, obj: Obj) -> None:
    """Hand one watch event from the watch's thread to the loop."""
    loop.call_soon_threadsafe(queue.put_nowait, (kind, obj))


def _rebase(node: Obj, ops: list[Obj]) -> list[Obj]:
    """The same writes against a newer node (annotations map created if it is missing)."""
    out: list[Obj] = []
    has_annotations = (node.get("metadata") or {}).get("annotations") is not None
    annotations = pointer("metadata", "annotations")
    for op in ops:
        if op["path"] == annotations and op["op"] == "add":
            if not has_annotations:
                out.append(op)
            continue
        if op["op"] == "remove" and op["path"].startswith(annotations + "/"):
            key = op["path"][len(annotations) + 1:].replace("~1", "/").replace("~0", "~")
            if key not in ((node.get("metadata") or {}).get("annotations") or {}):
                continue
        out.append(op)
    return out
