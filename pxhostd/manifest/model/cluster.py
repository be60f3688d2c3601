"""Companions of the DaemonSet: Namespace, ServiceAccount, RBAC, Secret, Service."""

from __future__ import annotations

from typing import Any

from pxhostd.kube.api import CALLS
from pxhostd.log import is_secret_name
from pxhostd.manifest.model import names as n
from pxhostd.manifest.params import DEFAULT_NAMESPACE, ManifestParams

Obj = dict[str, Any]


def _meta(name: str, namespace: str | None = None) -> Obj:
    meta: Obj = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = dict(n.COMMON_LABELS)
    return meta


def namespace(p: ManifestParams) -> Obj | None:
    """A namespace of our own is created with the manifest (kube-system always exists)."""
    if p.namespace == DEFAULT_NAMESPACE:
        return None
    meta = _meta(p.namespace)
    meta["labels"] = {**meta["labels"], **n.NAMESPACE_LABELS}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def service_account(p: ManifestParams) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(n.SERVICE_ACCOUNT, p.namespace),
    }


def _rule(group: str, resources: list[str], verbs: list[str], **extra: list[str]) -> Obj:
    return {"apiGroups": [group], "resources": resources, "verbs": verbs, **extra}


def pod_api_rules() -> list[Obj]:
    """Exactly the permissions of the pod's Kubernetes calls (pxhostd.kube.api.CALLS):
    its own node (get, watch its labels, patch: cordon, relabel, annotate), the pods on it
    (list, by field selector), the claims and volumes they mount (get), and Evictions
    (create, so PodDisruptionBudgets are honoured)."""
    verbs: dict[tuple[str, str], list[str]] = {}
    for perm in CALLS.values():
        verbs.setdefault((perm.group, perm.resource), []).append(perm.verb)
    return [_rule(group, [resource], sorted(v)) for (group, resource), v in verbs.items()]


def api_rules(p: ManifestParams) -> list[Obj]:
    """Only what the pod does with the API (see docs/manifest-generator.md, RBAC).

    Everything else goes to the host's pxhostd over the system bus; the API calls are the
    drain before a disruptive upgrade and node-label control (pxhostd/kube/api.py), whose
    table the rules are built from, so a call and its rule cannot drift apart.
    """
    rules = pod_api_rules()
    if p.openshift:
        rules.append(
            _rule("security.openshift.io", ["securitycontextconstraints"], ["use"],
                  resourceNames=["privileged"])
        )
    return rules


def cluster_role(p: ManifestParams) -> Obj | None:
    """The ClusterRole; none when the pod needs no grant at all."""
    rules = api_rules(p)
    if not rules:
        return None
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(n.CLUSTER_ROLE),
        "rules": rules,
    }


def cluster_role_binding(p: ManifestParams) -> Obj | None:
    if not api_rules(p):
        return None
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(n.CLUSTER_ROLE_BINDING),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": n.CLUSTER_ROLE,
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": n.SERVICE_ACCOUNT, "namespace": p.namespace}
        ],
    }


def secret_entries(p: ManifestParams) -> dict[str, str]:
    """Secret key -> value for every secret input; empty when there is none."""
    data: dict[str, str] = {}
    if p.etcd_userpwd is not None:
        data[n.KEY_KVDB_USERPWD] = p.etcd_userpwd
    if p.token is not None:
        data[n.KEY_TOKEN] = p.token
    if p.acl_token is not None:
        data[n.KEY_ACL_TOKEN] = p.acl_token
    for key, value in p.env:
        if is_secret_name(key):
            data[n.KEY_ENV_PREFIX + key] = value
    return data


def secret(p: ManifestParams) -> Obj | None:
    data = secret_entries(p)
    if not data:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(n.SECRET, p.namespace),
        "type": "Opaque",
        "stringData": data,
    }


def service(p: ManifestParams) -> Obj:
    """The old `portworx-service`: the payload's REST API (9001) on the hostNetwork pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(n.SERVICE, p.namespace),
        "spec": {
            "selector": dict(n.PART_OF),
            "ports": [
                {
                    "name": "px-api",
                    "protocol": "TCP",
                    "port": n.REST_PORT,
                    "targetPort": n.REST_PORT,
                }
            ],
        },
    }
