"""The stand-in API server on an ephemeral loopback port, and the pod's real client on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubeapi.cluster import Cluster
from kubeapi.server import KubeApiServer, Rbac, make_service_account
from kubeapi.store import Store

from pxhostd.kube.api import KubeApi
from pxhostd.manifest.model.cluster import cluster_role
from pxhostd.manifest.params import parse_params


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    account = make_service_account(tmp_path / "serviceaccount")
    store = Store(termination_seconds=0.3)
    rules = cluster_role(parse_params([]))["rules"]
    server = KubeApiServer(store, Rbac(rules), account)
    with server.serving_tcp() as port:
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(port))
        api = KubeApi.in_cluster(account.directory)
        try:
            yield Cluster(store, server, api, account.directory)
        finally:
            api.close()
