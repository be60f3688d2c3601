"""The DaemonSet(s) that run pxhostd's thin pod on every storage node."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pxhostd.log import is_secret_name
from pxhostd.manifest.model import names as n
from pxhostd.manifest.model.kubeescape import escape_container
from pxhostd.manifest.params import ManifestParams

Obj = dict[str, Any]


@dataclass(frozen=True)
class HostMount:
    """One hostPath volume; the reason for each is in docs/manifest-generator.md."""

    name: str
    host_path: str
    mount_path: str
    path_type: str
    read_only: bool = False
    propagation: str | None = None
    #: Passed on to the storage service as a bind mount (PXHOSTD_SERVICE_MOUNTS); the
    #: others are the pod's own.
    for_service: bool = False


def host_mounts(p: ManifestParams) -> tuple[HostMount, ...]:
    return (
        HostMount("etc-pwx", "/etc/pwx", "/etc/pwx", "DirectoryOrCreate"),
        HostMount("opt-pwx", "/opt/pwx", "/opt/pwx", "DirectoryOrCreate"),
        HostMount("systemd-units", "/etc/systemd/system", "/etc/systemd/system", "Directory"),
        HostMount("host-proc-ns", "/proc/1/ns", "/host_proc/1/ns", "Directory", read_only=True),
        # At the same path inside, so the service sees the kubelet's paths as they are.
        HostMount("kubelet", p.kubelet_root, p.kubelet_root, "Directory",
                  propagation="Bidirectional", for_service=True),
        HostMount("var-lib-osd", "/var/lib/osd", "/var/lib/osd", "DirectoryOrCreate",
                  propagation="Bidirectional", for_service=True),
        # Read-write: the pod takes the host lock (/run/pxhostd/host.lock) there.
        HostMount("run-pxhostd", "/run/pxhostd", "/run/pxhostd", "DirectoryOrCreate"),
        HostMount("dbus", "/run/dbus", "/run/dbus", "Directory", read_only=True),
    )


def payload_args(p: ManifestParams, *, zero_storage: bool = False) -> list[str]:
    """The pod's args in the px-runc installer convention (`-c cluster -k kvdb -s drive ...`)."""
    args = ["-c", p.cluster]
    args += ["-k", ",".join(p.kvdb)] if p.kvdb else ["-b"]
    if p.data_iface is not None:
        args += ["-d", p.data_iface]
    if p.mgmt_iface is not None:
        args += ["-m", p.mgmt_iface]
    if zero_storage:
        args.append("-z")
    elif p.drives:
        for drive in p.drives:
            args += ["-s", drive]
        if p.force:
            args.append("-f")
    else:
        args += ["-A", "-f"] if p.force else ["-a"]
    if p.journal is not None and not zero_storage:
        args += ["-j", p.journal]
    if p.secret_type is not None:
        args += ["-secret_type", p.secret_type]
    for flag, value in (("-ca", p.etcd_ca), ("-cert", p.etcd_cert), ("-key", p.etcd_key)):
        if value is not None:
            args += [flag, value]
    args += ["-x", "kubernetes"]
    return args


def _secret_ref(key: str) -> Obj:
    return {"secretKeyRef": {"name": n.SECRET, "key": key}}


def pod_env(p: ManifestParams) -> list[Obj]:
    service_mounts = ":".join(m.mount_path for m in host_mounts(p) if m.for_service)
    env: list[Obj] = [
        {"name": n.ENV_NODE_NAME, "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": n.ENV_SERVICE_MOUNTS, "value": service_mounts},
    ]
    for name, key, value in (
        (n.ENV_KVDB_USERPWD, n.KEY_KVDB_USERPWD, p.etcd_userpwd),
        (n.ENV_TOKEN, n.KEY_TOKEN, p.token),
        (n.ENV_ACL_TOKEN, n.KEY_ACL_TOKEN, p.acl_token),
    ):
        if value is not None:
            env.append({"name": name, "valueFrom": _secret_ref(key)})
    for name, value in p.env:
        if is_secret_name(name):
            env.append({"name": name, "valueFrom": _secret_ref(n.KEY_ENV_PREFIX + name)})
        else:
            env.append({"name": name, "value": value})
    return env


def _node_terms(*, control_plane: bool | None) -> list[Obj]:
    """Node selector terms: px/enabled != false, and where control-plane nodes belong.

    control_plane: None = any node, False = no control-plane node, True = only those.
    Terms are ORed, expressions within a term ANDed.
    """
    enabled = {"key": n.ENABLED_LABEL, "operator": "NotIn", "values": ["false"]}
    if control_plane is None:
        return [{"matchExpressions": [enabled]}]
    if control_plane is False:
        absent = [{"key": label, "operator": "DoesNotExist"} for label in n.CONTROL_PLANE_LABELS]
        return [{"matchExpressions": [enabled, *absent]}]
    return [
        {"matchExpressions": [enabled, {"key": label, "operator": "Exists"}]}
        for label in n.CONTROL_PLANE_LABELS
    ]


def _control_plane_tolerations() -> list[Obj]:
    return [
        {"key": label, "operator": "Exists", "effect": "NoSchedule"}
        for label in n.CONTROL_PLANE_LABELS
    ]


def _container(p: ManifestParams, args: list[str]) -> Obj:
    """The pod's container; every `$` the kubelet would expand is escaped (kubeescape)."""
    mounts: list[Obj] = []
    for m in host_mounts(p):
        mount: Obj = {"name": m.name, "mountPath": m.mount_path}
        if m.read_only:
            mount["readOnly"] = True
        if m.propagation is not None:
            mount["mountPropagation"] = m.propagation
        mounts.append(mount)
    return escape_container({
        "name": n.CONTAINER,
        "image": p.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(n.ENTRYPOINT),
        "args": args,
        "env": pod_env(p),
        "readinessProbe": {
            "exec": {"command": list(n.PROBE_COMMAND)},
            "periodSeconds": 5,
            "timeoutSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 2,
        },
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        "securityContext": {"privileged": True},
        "volumeMounts": mounts,
    })


def _volumes(p: ManifestParams) -> list[Obj]:
    return [
        {"name": m.name, "hostPath": {"path": m.host_path, "type": m.path_type}}
        for m in host_mounts(p)
    ]


def daemonset(
    p: ManifestParams, *, name: str, control_plane: bool | None, zero_storage: bool = False
) -> Obj:
    labels = {"name": name, **n.COMMON_LABELS}
    pod_spec: Obj = {
        "serviceAccountName": n.SERVICE_ACCOUNT,
        "hostNetwork": True,
        "hostPID": True,
        # The entrypoint drops service-link variables anyway; keep them out of the pod.
        "enableServiceLinks": False,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "priorityClassName": "system-node-critical",
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 10,
        "nodeSelector": dict(n.OS_SELECTOR),
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": _node_terms(control_plane=control_plane)
                }
            }
        },
        "containers": [_container(p, payload_args(p, zero_storage=zero_storage))],
        "volumes": _volumes(p),
    }
    if control_plane is not False:
        pod_spec["tolerations"] = _control_plane_tolerations()
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": p.namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"name": name}},
            "minReadySeconds": 0,
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def daemonsets(p: ManifestParams) -> list[Obj]:
    """One DaemonSet; with z, storage nodes and zero-storage control-plane nodes apart."""
    if p.zero_storage:
        return [
            daemonset(p, name=n.DAEMONSET, control_plane=False),
            daemonset(p, name=n.DAEMONSET_CONTROL_PLANE, control_plane=True, zero_storage=True),
        ]
    return [daemonset(p, name=n.DAEMONSET, control_plane=None if p.masters else False)]
