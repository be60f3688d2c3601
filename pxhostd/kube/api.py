"""The pod's one door to the Kubernetes API (python3-kubernetes, Debian 12's 22.6).

Every request the pod makes is a method here, and `CALLS` names the RBAC permission each one
needs: the generated ClusterRole grants exactly these (a test holds the two together), so a
new call without its rule, or a rule nothing uses, fails the tests. Objects are plain JSON
dicts, as the API sends them. Calls block (the client is synchronous): callers run them
through `threads.in_thread`.

Patches are JSON Patch (RFC 6902): the client's `patch_node` in 22.6 always sends
`application/json-patch+json`. A patch that must not race with someone else carries
`replace /metadata/resourceVersion`, so the API server answers 409 Conflict if the node
changed since it was read.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pxhostd.kube.errors import KubeApiError

Obj = dict[str, Any]
#: Where Kubernetes puts the pod's service account token and the cluster CA.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: Bound on one ordinary request (seconds); a watch gets its own, longer one.
REQUEST_TIMEOUT = 30.0


@dataclass(frozen=True, order=True)
class Permission:
    """One RBAC permission: API group, resource (with subresource), verb."""

    group: str
    resource: str
    verb: str


#: KubeApi method -> the permission it needs. The ClusterRole is built from this table.
CALLS: dict[str, Permission] = {
    "get_node": Permission("", "nodes", "get"),
    "watch_node": Permission("", "nodes", "watch"),
    "patch_node": Permission("", "nodes", "patch"),
    "list_pods_on_node": Permission("", "pods", "list"),
    "get_pvc": Permission("", "persistentvolumeclaims", "get"),
    "get_pv": Permission("", "persistentvolumes", "get"),
    "evict": Permission("", "pods/eviction", "create"),
}


def in_cluster_available(sa_dir: Path = SERVICE_ACCOUNT_DIR) -> bool:
    """True in a pod with a service account (the API's address and a token)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (sa_dir / "token").is_file()


def pointer(*parts: str) -> str:
    """A JSON Pointer (RFC 6901) from path parts: `px/enabled` becomes `px~1enabled`."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


class KubeApi:
    """The API calls the pod makes, each mapping ApiException to KubeApiError."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._client = client
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)

    @classmethod
    def in_cluster(cls, sa_dir: Path = SERVICE_ACCOUNT_DIR) -> KubeApi:
        """A client configured from the pod's service account (token + CA, in-cluster)."""
        from kubernetes import client, config

        configuration = client.Configuration()
        try:
            config.incluster_config.InClusterConfigLoader(
                token_filename=str(sa_dir / "token"), cert_filename=str(sa_dir / "ca.crt")
            ).load_and_set(configuration)
        except config.ConfigException as exc:
            raise KubeApiError(f"no in-cluster Kubernetes configuration: {exc}") from None
        return cls(client.ApiClient(configuration))

    def close(self) -> None:
        """Close the connections too (the client's own close() leaves its pool open)."""
        with contextlib.suppress(Exception):
            self.api_client.rest_client.pool_manager.clear()
        self.api_client.close()

    # -- the calls (one per entry of CALLS) -----------------------------------------------

    def get_node(self, name: str) -> Obj:
        return self._json(lambda: self.core.read_node(name, **self._raw()), f"get node {name}")

    def watch_node(
        self, name: str, resource_version: str, timeout: int, on_event: Callable[[str, Obj], None]
    ) -> None:
        """Stream watch events of one node from `resource_version` ("": from its current
        state, sent first as ADDED) until the server ends the watch (after `timeout` s); an
        expired version raises KubeApiError(410)."""
        from kubernetes import watch

        w = watch.Watch()
        try:
            for event in w.stream(
                self.core.list_node,
                field_selector=f"metadata.name={name}",
                resource_version=resource_version or None,
                timeout_seconds=timeout,
                allow_watch_bookmarks=False,
                _request_timeout=timeout + REQUEST_TIMEOUT,
            ):
                on_event(str(event["type"]), event["raw_object"])
        except self._client.ApiException as exc:
            raise _api_error(f"watch node {name}", exc) from None
        except Exception as exc:  # urllib3 and connection errors
            raise KubeApiError(f"watch node {name}: {type(exc).__name__}: {exc}") from None

    def patch_node(self, name: str, ops: list[Obj]) -> Obj:
        """Apply a JSON Patch to the node; 409 if it carries a stale resourceVersion."""
        return self._json(lambda: self.core.patch_node(name, ops, **self._raw()),
                          f"patch node {name}")

    def list_pods_on_node(self, node: str) -> list[Obj]:
        out = self._json(
            lambda: self.core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={node}", **self._raw()
            ),
            f"list pods on node {node}",
        )
        return list(out.get("items") or [])

    def get_pvc(self, namespace: str, name: str) -> Obj:
        return self._json(
            lambda: self.core.read_namespaced_persistent_volume_claim(name, namespace,
                                                                      **self._raw()),
            f"get persistentvolumeclaim {namespace}/{name}",
        )

    def get_pv(self, name: str) -> Obj:
        return self._json(lambda: self.core.read_persistent_volume(name, **self._raw()),
                          f"get persistentvolume {name}")

    def evict(self, namespace: str, name: str) -> None:
        """policy/v1 Eviction: the API server honours PodDisruptionBudgets (429 if not now)."""
        body = self._client.V1Eviction(
            api_version="policy/v1",
            kind="Eviction",
            metadata=self._client.V1ObjectMeta(name=name, namespace=namespace),
        )
        self._json(
            lambda: self.core.create_namespaced_pod_eviction(name, namespace, body,
                                                             **self._raw()),
            f"evict pod {namespace}/{name}",
        )

    # -- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def _raw() -> dict[str, Any]:
        return {"_preload_content": False, "_request_timeout": REQUEST_TIMEOUT}

    def _json(self, call: Callable[[], Any], what: str) -> Obj:
        try:
            response = call()
        except self._client.ApiException as exc:
            raise _api_error(what, exc) from None
        except Exception as exc:  # urllib3 and connection errors
            raise KubeApiError(f"{what}: {type(exc).__name__}: {exc}") from None
        try:
            data = json.loads(response.data or b"{}")
        except ValueError as exc:
            raise KubeApiError(f"{what}: the API answered no JSON: {exc}") from None
        if not isinstance(data, dict):
            raise KubeApiError(f"{what}: the API answered {type(data).__name__}, not an object")
        return data


def _api_error(what: str, exc: Any) -> KubeApiError:
    status = int(getattr(exc, "status", 0) or 0)
    message = str(getattr(exc, "reason", "") or "")
    body = getattr(exc, "body", None)
    if body:
        with contextlib.suppress(ValueError, AttributeError):
            message = str(json.loads(body).get("message") or message)
    return KubeApiError(f"{what}: {status} {message}".rstrip(), status=status)
