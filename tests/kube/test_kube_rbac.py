"""The generated ClusterRole grants exactly the API calls the pod's code makes.

The stand-in API server enforces the manifest's rules (403 otherwise) and records the
authorization attributes of every request; the pod's drain and label code run against it,
and what they used must be the whole of what the role grants.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
from pathlib import Path

import pytest
from kubeapi import objects
from kubeapi.cluster import Cluster
from kubeapi.server import Rbac

from pxhostd.kube import api as kube_api
from pxhostd.kube.api import CALLS, KubeApi
from pxhostd.kube.drain import Drainer
from pxhostd.kube.errors import KubeApiError
from pxhostd.kube.labels import LabelController
from pxhostd.manifest.model.cluster import cluster_role
from pxhostd.manifest.params import parse_params

REPO = Path(__file__).resolve().parents[2]


def granted() -> set[tuple[str, str, str]]:
    role = cluster_role(parse_params([]))
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


class Px:
    async def action(self, operation: str, txid: str | None = None) -> str:
        return "/t/1"

    async def uninstall(self, wipe: bool = False, txid: str | None = None) -> str:
        return "/t/2"

    async def wait(self, *args: object) -> dict[str, object]:
        return {"success": True, "changed": True}

    def close(self) -> None:
        pass


def run_everything(cluster: Cluster, tmp_path: Path) -> None:
    """A drain with every kind of pod, then label control acting on one label."""
    objects.cluster(cluster.store)
    drainer = Drainer(cluster.api, objects.NODE, lambda line: None,
                      record_path=tmp_path / "drain.json")

    async def connect() -> Px:
        return Px()

    labels = LabelController(cluster.api, objects.NODE, connect,  # type: ignore[arg-type]
                             lambda line: None)

    async def scenario() -> None:
        await drainer.release(await drainer.drain("2.0.0-x", None), "done")
        task = asyncio.create_task(labels.run())
        cluster.store.update("nodes", "", objects.NODE,
                             lambda n: n["metadata"]["labels"].update({"px/service": "stop"}))
        while "service-done" not in str(cluster.store.get("nodes", "", objects.NODE)):
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_the_role_grants_exactly_what_the_code_uses(cluster: Cluster, tmp_path: Path) -> None:
    run_everything(cluster, tmp_path)
    assert all(cluster.server.rbac.allows(a) for a in cluster.server.requests)
    assert cluster.server.used() == granted()
    assert {(p.group, p.resource, p.verb) for p in CALLS.values()} == granted()


def test_a_call_outside_the_role_is_forbidden(cluster: Cluster, tmp_path: Path) -> None:
    """The server really enforces the role: without pods/eviction a drain is refused."""
    cluster.server.rbac = Rbac([r for r in cluster.server.rbac.rules
                                if r["resources"] != ["pods/eviction"]])
    objects.cluster(cluster.store)
    drainer = Drainer(cluster.api, objects.NODE, lambda line: None,
                      record_path=tmp_path / "drain.json")
    with pytest.raises(KubeApiError) as caught:
        asyncio.run(drainer.drain("2.0.0-x", None))
    assert caught.value.status == 403
    assert not cluster.store.get("nodes", "", objects.NODE)["spec"].get("unschedulable")


def test_every_api_method_is_in_the_table() -> None:
    methods = {name for name, _ in inspect.getmembers(KubeApi, inspect.isfunction)
               if not name.startswith("_")} - {"close"}
    assert methods == set(CALLS)


def test_only_the_api_module_talks_to_the_kubernetes_client() -> None:
    offenders = []
    for path in sorted((REPO / "pxhostd").rglob("*.py")):
        if path == Path(kube_api.__file__):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(n == "kubernetes" or n.startswith("kubernetes.") for n in names):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
