"""Which pods on this node a drain must evict: those that mount Portworx volumes.

A pod counts when one of its volumes is a Portworx volume: inline (`portworxVolume`) or a
PersistentVolumeClaim bound to a PersistentVolume of Portworx's provisioners (in-tree
`kubernetes.io/portworx-volume`, CSI `pxd.portworx.com`). Never evicted: DaemonSet pods
(the DaemonSet would put them straight back, and this pod is one), mirror (static) pods
(the Eviction API cannot remove them) and pods that have already finished. Without
`--drain-all` only controller-managed pods go (as px-oci-mon did): a bare pod evicted is a
pod lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Obj = Mapping[str, Any]
IN_TREE_PROVISIONER = "kubernetes.io/portworx-volume"
CSI_DRIVER = "pxd.portworx.com"
PORTWORX_PROVISIONERS = frozenset({IN_TREE_PROVISIONER, CSI_DRIVER})
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
PROVISIONED_BY = ("pv.kubernetes.io/provisioned-by", "volume.kubernetes.io/provisioned-by")

#: (namespace, claim name) -> the bound PersistentVolume, or None (unbound or gone).
PvOfClaim = Callable[[str, str], "Obj | None"]


@dataclass(frozen=True, order=True)
class PodRef:
    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def is_portworx_pv(pv: Obj) -> bool:
    spec = pv.get("spec") or {}
    if spec.get("portworxVolume"):
        return True
    if (spec.get("csi") or {}).get("driver") == CSI_DRIVER:
        return True
    annotations = (pv.get("metadata") or {}).get("annotations") or {}
    return any(annotations.get(key) in PORTWORX_PROVISIONERS for key in PROVISIONED_BY)


def _owners(pod: Obj) -> list[Obj]:
    return list((pod.get("metadata") or {}).get("ownerReferences") or [])


def controller_of(pod: Obj) -> Obj | None:
    return next((o for o in _owners(pod) if o.get("controller")), None)


def _evictable(pod: Obj, drain_all: bool) -> bool:
    meta = pod.get("metadata") or {}
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return False
    controller = controller_of(pod)
    if controller is not None and controller.get("kind") == "DaemonSet":
        return False
    return drain_all or controller is not None


def uses_portworx(pod: Obj, pv_of_claim: PvOfClaim) -> bool:
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        if volume.get("portworxVolume"):
            return True
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            pv = pv_of_claim(namespace, str(claim))
            if pv is not None and is_portworx_pv(pv):
                return True
    return False


def pods_to_evict(pods: Iterable[Obj], pv_of_claim: PvOfClaim, drain_all: bool) -> list[PodRef]:
    """The pods a drain evicts, sorted."""
    chosen = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if _evictable(pod, drain_all) and uses_portworx(pod, pv_of_claim):
            chosen.append(PodRef(str(meta.get("namespace") or "default"), str(meta["name"]),
                                 str(meta.get("uid") or "")))
    return sorted(chosen)
