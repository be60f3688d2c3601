"""The drain (pxhostd.kube.drain) with the real client against the stand-in API server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kubeapi import objects
from kubeapi.cluster import Cluster

from pxhostd.kube import record as records
from pxhostd.kube.drain import Drainer
from pxhostd.kube.errors import DrainTimeout

TARGET = "2.0.0-abcdef"


def drainer(cluster: Cluster, tmp_path: Path, lines: list[str], **kw: object) -> Drainer:
    return Drainer(cluster.api, objects.NODE, lines.append, record_path=tmp_path / "drain.json",
                   **kw)  # type: ignore[arg-type]


def cordoned(cluster: Cluster) -> bool:
    return bool(cluster.store.get("nodes", "", objects.NODE)["spec"].get("unschedulable"))


def pods_left(cluster: Cluster) -> set[str]:
    return {f"{p['metadata']['namespace']}/{p['metadata']['name']}"
            for p in cluster.store.list("pods")["items"]}


def test_drain_evicts_exactly_the_portworx_pods_then_uncordons(
        cluster: Cluster, tmp_path: Path) -> None:
    expected = objects.cluster(cluster.store)
    lines: list[str] = []
    d = drainer(cluster, tmp_path, lines)

    async def scenario() -> records.DrainRecord:
        rec = await d.drain(TARGET, None)
        assert cordoned(cluster)
        assert records.load(d.record_path) == rec
        assert rec.phase == "applying" and rec.cordoned_by_us and rec.target == TARGET
        await d.release(rec, "the upgrade is done")
        return rec

    asyncio.run(scenario())
    assert sorted(cluster.store.evictions) == expected["evicted"]
    left = pods_left(cluster)
    assert not left & set(expected["evicted"])
    for kept in ("apps/web-plain", "apps/bare-px", "apps/waiting", "apps/done-px",
                 "kube-system/portworx-abc", "apps/elsewhere"):
        assert kept in left
    assert not cordoned(cluster)
    assert not d.record_path.exists()
    assert any("3 pod(s) gone" in line for line in lines), lines
    # The Eviction API, policy/v1, was what removed them: no DELETE was ever sent.
    methods = {(m, p.split("?")[0].rsplit("/", 1)[-1]) for m, p, _ in cluster.server.log}
    assert ("POST", "eviction") in methods
    assert not any(m == "DELETE" for m, _ in methods)


def test_drain_all_also_evicts_bare_pods(cluster: Cluster, tmp_path: Path) -> None:
    expected = objects.cluster(cluster.store)
    d = drainer(cluster, tmp_path, [], drain_all=True)

    async def scenario() -> None:
        await d.release(await d.drain(TARGET, None), "done")

    asyncio.run(scenario())
    assert sorted(cluster.store.evictions) == sorted(expected["evicted"] + expected["bare"])


def test_an_administrators_cordon_stays(cluster: Cluster, tmp_path: Path) -> None:
    objects.cluster(cluster.store)
    cluster.store.update("nodes", "", objects.NODE,
                         lambda n: n["spec"].update(unschedulable=True))
    lines: list[str] = []
    d = drainer(cluster, tmp_path, lines)

    async def scenario() -> None:
        rec = await d.drain(TARGET, None)
        assert rec.was_cordoned
        await d.release(rec, "done")

    asyncio.run(scenario())
    assert cordoned(cluster)
    assert any("stays cordoned" in line for line in lines)
    patches = [p for m, p, _ in cluster.server.log if m == "PATCH"]
    assert patches == []  # never touched the node


def test_a_cordon_racing_with_ours_is_kept(cluster: Cluster, tmp_path: Path) -> None:
    """An administrator cordons between our read and our patch: 409, and the cordon is
    theirs, so it stays after the drain."""
    objects.cluster(cluster.store)
    cluster.store.before_patch.append(lambda: cluster.store.update(
        "nodes", "", objects.NODE, lambda n: n["spec"].update(unschedulable=True)))
    d = drainer(cluster, tmp_path, [])

    async def scenario() -> None:
        rec = await d.drain(TARGET, None)
        assert rec.was_cordoned
        assert records.load(d.record_path) == rec
        await d.release(rec, "done")

    asyncio.run(scenario())
    assert cordoned(cluster)


def test_pdb_blocking_until_timeout_is_a_named_error_and_uncordons(
        cluster: Cluster, tmp_path: Path) -> None:
    objects.cluster(cluster.store)
    cluster.store.create(objects.pdb("apps", "db", {"app": "db-intree"}, min_available=1))
    lines: list[str] = []
    d = drainer(cluster, tmp_path, lines, timeout=3.0)
    with pytest.raises(DrainTimeout) as caught:
        asyncio.run(d.drain(TARGET, None))
    assert "apps/db-intree" in str(caught.value)
    assert "disruption budget" in str(caught.value)
    assert not cordoned(cluster)
    assert not d.record_path.exists()
    assert "apps/db-intree" in pods_left(cluster)
    attempts = [p for m, p, _ in cluster.server.log if p.endswith("/db-intree/eviction")]
    assert len(attempts) >= 2  # 429 was retried


def test_429_is_retried_until_the_budget_allows(cluster: Cluster, tmp_path: Path) -> None:
    objects.cluster(cluster.store)
    cluster.store.create(objects.pdb("apps", "db", {"app": "db-intree"}, min_available=1))
    d = drainer(cluster, tmp_path, [], timeout=120.0)

    async def scenario() -> None:
        task = asyncio.create_task(d.drain(TARGET, None))
        while not any(p.endswith("/db-intree/eviction") for _, p, _ in cluster.server.log):
            await asyncio.sleep(0.05)
        cluster.store.delete("poddisruptionbudgets", "apps", "db")
        await d.release(await task, "done")

    asyncio.run(scenario())
    assert "apps/db-intree" in cluster.store.evictions
    assert not cordoned(cluster)


def test_a_stopped_drain_keeps_its_record_and_the_next_pod_resumes(
        cluster: Cluster, tmp_path: Path) -> None:
    expected = objects.cluster(cluster.store)
    cluster.store.create(objects.pdb("apps", "db", {"app": "db-intree"}, min_available=1))
    first = drainer(cluster, tmp_path, [])

    async def stop_mid_drain() -> None:
        task = asyncio.create_task(first.drain(TARGET, None))
        while not any(p.endswith("/db-intree/eviction") for _, p, _ in cluster.server.log):
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(stop_mid_drain())
    rec = records.load(first.record_path)
    assert rec is not None and rec.phase == "draining" and rec.cordoned_by_us
    assert cordoned(cluster)  # left as it was: the next pod finishes the job
    cluster.store.delete("poddisruptionbudgets", "apps", "db")

    second = drainer(cluster, tmp_path, [])

    async def resume() -> None:
        resumed = await second.drain(TARGET, records.load(second.record_path))
        assert resumed.cordoned_by_us
        await second.release(resumed, "done")

    asyncio.run(resume())
    assert set(expected["evicted"]) <= set(cluster.store.evictions)
    assert not cordoned(cluster)
    assert not second.record_path.exists()


def test_a_record_written_before_the_cordon_resumes_right(
        cluster: Cluster, tmp_path: Path) -> None:
    """The pod died after saving the record and before cordoning: the next one cordons,
    drains, and uncordons (the record says the node was not cordoned before)."""
    objects.cluster(cluster.store)
    path = tmp_path / "drain.json"
    records.save(records.DrainRecord(objects.NODE, was_cordoned=False, target=TARGET), path)
    d = drainer(cluster, tmp_path, [])

    async def scenario() -> None:
        rec = await d.drain(TARGET, records.load(path))
        assert cordoned(cluster)
        await d.release(rec, "done")

    asyncio.run(scenario())
    assert not cordoned(cluster)
