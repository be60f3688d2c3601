"""The stand-in API server's object store: resourceVersions, watch history, evictions.

Semantics kept from kube-apiserver for what the pod uses: one cluster-wide, increasing
resourceVersion stamped on every write; a watch from version N sees every later change in
order; history older than the last compaction answers 410 Gone (`Expired`); a write that
carries a stale metadata.resourceVersion is a 409 Conflict; an eviction that would take a
PodDisruptionBudget below minAvailable is a 429; an evicted pod terminates (a deletion
timestamp, then gone after `termination_seconds`, as a kubelet would). Every object stored
is validated against the Kubernetes OpenAPI schema that kubernetes-validate ships.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes_validate

Obj = dict[str, Any]
#: The Kubernetes version whose schema objects are validated against.
SCHEMA_VERSION = "1.30.0"
#: resource (plural) -> (apiVersion, kind, namespaced)
KINDS = {
    "nodes": ("v1", "Node", False),
    "pods": ("v1", "Pod", True),
    "persistentvolumeclaims": ("v1", "PersistentVolumeClaim", True),
    "persistentvolumes": ("v1", "PersistentVolume", False),
    "poddisruptionbudgets": ("policy/v1", "PodDisruptionBudget", True),
}
Key = tuple[str, str, str]  # resource, namespace ('' if cluster-scoped), name


class ApiError(Exception):
    """An answer with a Status object: code, reason, message."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> Obj:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}


def validate(obj: Obj) -> None:
    """The object as the schema wants it; ApiError 422 (Invalid) if not."""
    try:
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise ApiError(422, "Invalid", f"{obj.get('kind')} is invalid: {exc.message}") from None


@dataclass
class Event:
    rv: int
    key: Key
    type: str
    obj: Obj


class Store:
    def __init__(self, termination_seconds: float = 0.3) -> None:
        self.cond = threading.Condition()
        self.rv = 100
        self.objects: dict[Key, Obj] = {}
        self.events: list[Event] = []
        #: Watches from a version below this answer 410 Gone.
        self.compacted = 0
        #: Bumped by `expire_watches`: open watches end with 410 Gone.
        self.epoch = 0
        self.termination_seconds = termination_seconds
        self.closed = False
        self.evictions: list[str] = []
        #: Run (once each) just before the next PATCH is applied: another writer racing.
        self.before_patch: list[Callable[[], None]] = []

    # -- writes (by the API handlers and by tests acting as kubectl / controllers) ---------

    def create(self, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        resource = _resource_of(obj)
        meta = obj.setdefault("metadata", {})
        key = (resource, meta.get("namespace", "") if KINDS[resource][2] else "", meta["name"])
        with self.cond:
            if key in self.objects:
                raise ApiError(409, "AlreadyExists", f"{resource} {meta['name']!r} already exists")
            meta.setdefault("uid", f"uid-{resource}-{key[1]}-{key[2]}-{self.rv + 1}")
            meta.setdefault("creationTimestamp", _now())
            return self._write(key, obj, "ADDED")

    def update(self, resource: str, namespace: str, name: str,
               change: Callable[[Obj], object], expect_rv: str | None = None) -> Obj:
        """Apply `change` to a copy; 409 if `expect_rv` (or the result's rv) is stale."""
        with self.cond:
            current = self.get(resource, namespace, name)
            new = copy.deepcopy(current)
            result = change(new)
            if isinstance(result, dict):  # a change may also edit `new` in place
                new = result
            cur_rv = current["metadata"]["resourceVersion"]
            wanted = expect_rv if expect_rv is not None else new["metadata"].get(
                "resourceVersion", cur_rv)
            if str(wanted) != cur_rv:
                raise ApiError(409, "Conflict",
                               f'Operation cannot be fulfilled on {resource} "{name}": the '
                               "object has been modified; please apply your changes to the "
                               "latest version and try again")
            for fixed in ("name", "namespace", "uid"):
                if new["metadata"].get(fixed) != current["metadata"].get(fixed):
                    raise ApiError(422, "Invalid", f"metadata.{fixed}: field is immutable")
            return self._write(self._key(resource, namespace, name), new, "MODIFIED")

    def delete(self, resource: str, namespace: str, name: str) -> None:
        with self.cond:
            key = self._key(resource, namespace, name)
            obj = self.objects.pop(key, None)
            if obj is None:
                return
            self.rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.events.append(Event(self.rv, key, "DELETED", obj))
            self.cond.notify_all()

    def expire_watches(self) -> None:
        """etcd compaction: history up to now is gone; open watches end with 410 Gone."""
        with self.cond:
            self.compacted = self.rv
            self.events.clear()
            self.epoch += 1
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _write(self, key: Key, obj: Obj, kind: str) -> Obj:
        resource = key[0]
        obj["apiVersion"], obj["kind"] = KINDS[resource][0], KINDS[resource][1]
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        validate(obj)
        self.objects[key] = obj
        self.events.append(Event(self.rv, key, kind, copy.deepcopy(obj)))
        self.cond.notify_all()
        return copy.deepcopy(obj)

    # -- reads ----------------------------------------------------------------------------

    def _key(self, resource: str, namespace: str, name: str) -> Key:
        return (resource, namespace if KINDS[resource][2] else "", name)

    def get(self, resource: str, namespace: str, name: str) -> Obj:
        with self.cond:
            obj = self.objects.get(self._key(resource, namespace, name))
            if obj is None:
                raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
            return copy.deepcopy(obj)

    def list(self, resource: str, match: Callable[[Obj], bool] = lambda o: True) -> Obj:
        with self.cond:
            items = [copy.deepcopy(o) for k, o in sorted(self.objects.items())
                     if k[0] == resource and match(o)]
            api_version, kind, _ = KINDS[resource]
            out = {"apiVersion": api_version, "kind": f"{kind}List",
                   "metadata": {"resourceVersion": str(self.rv)}, "items": items}
        validate(out)
        return out

    def watch_from(self, resource: str, since: int, match: Callable[[Obj], bool],
                   timeout: float) -> Iterator[tuple[str, Obj]]:
        """`since` 0 (no resourceVersion, or "0"): the current objects as ADDED, then the
        changes after them (kube-apiserver's "most recent" start); else `watch`."""
        if since:
            yield from self.watch(resource, since, match, timeout)
            return
        with self.cond:
            now = self.rv
            current = [copy.deepcopy(o) for k, o in sorted(self.objects.items())
                       if k[0] == resource and match(o)]
        for obj in current:
            yield "ADDED", obj
        yield from self.watch(resource, now, match, timeout, start_epoch=None)

    def watch(self, resource: str, since: int, match: Callable[[Obj], bool],
              timeout: float, start_epoch: int | None = None) -> Iterator[tuple[str, Obj]]:
        """Events after version `since`, until `timeout`; ('ERROR', Status 410) if expired."""
        deadline = time.monotonic() + timeout
        with self.cond:
            epoch = self.epoch if start_epoch is None else start_epoch
            if since < self.compacted:
                yield "ERROR", _gone(since, self.compacted)
                return
        position = since
        while True:
            with self.cond:
                while True:
                    if self.closed:
                        return
                    if self.epoch != epoch:
                        yield "ERROR", _gone(position, self.compacted)
                        return
                    batch = [e for e in self.events if e.rv > position and e.key[0] == resource]
                    if batch:
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    self.cond.wait(left)
            for event in batch:
                position = event.rv
                if match(event.obj):
                    yield event.type, copy.deepcopy(event.obj)

    # -- eviction (policy/v1): PodDisruptionBudgets, then a terminating pod ----------------

    def evict(self, namespace: str, name: str) -> None:
        with self.cond:
            pod = self.get("pods", namespace, name)
            if pod["metadata"].get("deletionTimestamp"):
                return  # already terminating: evicting again is accepted
            for pdb in self.objects.values():
                if pdb["kind"] != "PodDisruptionBudget" or \
                        pdb["metadata"].get("namespace") != namespace:
                    continue
                if not _selects(pdb, pod):
                    continue
                healthy = sum(1 for o in self.objects.values()
                              if o["kind"] == "Pod" and _selects(pdb, o)
                              and o["metadata"].get("namespace") == namespace
                              and not o["metadata"].get("deletionTimestamp"))
                if healthy - int(pdb["spec"].get("minAvailable", 0)) <= 0:
                    raise ApiError(429, "TooManyRequests",
                                   "Cannot evict pod as it would violate the pod's disruption "
                                   "budget.")
            self.evictions.append(f"{namespace}/{name}")

            def terminating(o: Obj) -> None:
                o["metadata"]["deletionTimestamp"] = _now()
                o["metadata"]["deletionGracePeriodSeconds"] = 0

            self.update("pods", namespace, name, terminating)
        timer = threading.Timer(self.termination_seconds, self.delete,
                                ("pods", namespace, name))
        timer.daemon = True
        timer.start()


def _selects(pdb: Obj, pod: Obj) -> bool:
    wanted = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    labels = pod["metadata"].get("labels") or {}
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def _gone(since: int, compacted: int) -> Obj:
    return ApiError(410, "Expired",
                    f"too old resource version: {since} ({compacted})").status()


def _resource_of(obj: Obj) -> str:
    for resource, (api_version, kind, _) in KINDS.items():
        if obj.get("kind") == kind and obj.get("apiVersion", api_version) == api_version:
            return resource
    raise ApiError(400, "BadRequest", f"kind {obj.get('kind')!r} is not served here")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
