"""Which pods a drain picks (pxhostd.kube.volumes), on plain objects."""

from __future__ import annotations

from kubeapi import objects

from pxhostd.kube.volumes import is_portworx_pv, pods_to_evict


def test_portworx_volumes_are_recognised() -> None:
    assert is_portworx_pv(objects.pv("a", kind="in-tree"))
    assert is_portworx_pv(objects.pv("b", kind="csi"))
    assert not is_portworx_pv(objects.pv("c", kind="other"))
    provisioned = objects.pv("d", kind="other")
    provisioned["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] = \
        "pxd.portworx.com"
    assert is_portworx_pv(provisioned)


def test_pods_to_evict() -> None:
    pvs = {("apps", "px"): objects.pv("px", kind="csi"),
           ("apps", "plain"): objects.pv("plain", kind="other")}
    pods = [objects.pod("apps", "a", claims=("px",)),
            objects.pod("apps", "b", claims=("plain",)),
            objects.pod("apps", "c", claims=("px",), owner="DaemonSet"),
            objects.pod("apps", "d", claims=("px",), owner=None),
            objects.pod("apps", "e", claims=("missing",)),
            objects.pod("apps", "f", inline_px=True, phase="Failed")]
    mirror = objects.pod("apps", "g", claims=("px",))
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "x"}
    pods.append(mirror)

    def pv_of(namespace: str, claim: str) -> dict[str, object] | None:
        return pvs.get((namespace, claim))

    assert [str(p) for p in pods_to_evict(pods, pv_of, drain_all=False)] == ["apps/a"]
    assert [str(p) for p in pods_to_evict(pods, pv_of, drain_all=True)] == ["apps/a", "apps/d"]
