"""Kubernetes objects for the stand-in API server, as a cluster would hold them."""

from __future__ import annotations

from typing import Any

from kubeapi.store import Obj

NODE = "pxnode"


def node(name: str = NODE, *, labels: dict[str, str] | None = None,
         unschedulable: bool = False) -> Obj:
    spec: Obj = {"podCIDR": "10.244.1.0/24"}
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name,
                     "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": spec,
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def pv(name: str, *, kind: str) -> Obj:
    """kind: 'in-tree' (portworxVolume), 'csi' (pxd.portworx.com) or 'other' (hostPath)."""
    spec: Obj = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}
    annotations: dict[str, str] = {}
    if kind == "in-tree":
        spec["portworxVolume"] = {"volumeID": name}
        annotations["pv.kubernetes.io/provisioned-by"] = "kubernetes.io/portworx-volume"
    elif kind == "csi":
        spec["csi"] = {"driver": "pxd.portworx.com", "volumeHandle": name}
    else:
        spec["hostPath"] = {"path": f"/srv/{name}"}
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": annotations}, "spec": spec}


def pvc(namespace: str, name: str, volume: str | None) -> Obj:
    spec: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    if volume:
        spec["volumeName"] = volume
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec,
            "status": {"phase": "Bound" if volume else "Pending"}}


def pod(namespace: str, name: str, *, claims: tuple[str, ...] = (),
        owner: str | None = "ReplicaSet", node_name: str = NODE,
        labels: dict[str, str] | None = None, phase: str = "Running",
        inline_px: bool = False) -> Obj:
    volumes: list[Any] = [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}}
                          for i, c in enumerate(claims)]
    if inline_px:
        volumes.append({"name": "inline", "portworxVolume": {"volumeID": f"{name}-inline"}})
    meta: Obj = {"name": name, "namespace": namespace, "labels": labels or {"app": name}}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner, "name": f"{name}-owner",
                                    "uid": f"owner-{name}", "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": node_name, "volumes": volumes,
                     "containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
            "status": {"phase": phase}}


def pdb(namespace: str, name: str, match: dict[str, str], min_available: int) -> Obj:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": match}}}


def cluster(store: Any) -> dict[str, list[str]]:
    """A node with one pod of each kind; returns which pods a drain must (not) evict."""
    store.create(node())
    for name, kind in (("px-intree", "in-tree"), ("px-csi", "csi"), ("plain", "other")):
        store.create(pv(name, kind=kind))
    store.create(pvc("apps", "data-intree", "px-intree"))
    store.create(pvc("apps", "data-csi", "px-csi"))
    store.create(pvc("apps", "data-plain", "plain"))
    store.create(pvc("apps", "data-unbound", None))
    store.create(pod("apps", "db-intree", claims=("data-intree",)))
    store.create(pod("apps", "db-csi", claims=("data-csi", "data-plain"), owner="StatefulSet"))
    store.create(pod("apps", "inline", inline_px=True))
    store.create(pod("apps", "web-plain", claims=("data-plain",)))
    store.create(pod("apps", "waiting", claims=("data-unbound",)))
    store.create(pod("apps", "bare-px", claims=("data-intree",), owner=None))
    store.create(pod("apps", "done-px", claims=("data-csi",), phase="Succeeded"))
    store.create(pod("kube-system", "portworx-abc", claims=("data-intree",), owner="DaemonSet"))
    store.create(pod("apps", "elsewhere", claims=("data-csi",), node_name="othernode"))
    return {
        "evicted": ["apps/db-csi", "apps/db-intree", "apps/inline"],
        "bare": ["apps/bare-px"],
    }
