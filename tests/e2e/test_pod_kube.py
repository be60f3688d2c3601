"""Issue: drain before a disruptive upgrade, and node-label control, on a booted node.

The pod is simulated as in test_pod.py (its own mount namespace over an image root, the
DaemonSet's hostPaths, a transient unit standing in for the container runtime), plus the
service account volume Kubernetes mounts at /var/run/secrets/kubernetes.io/serviceaccount.
There is no kube-apiserver here: the stand-in API server (tests/kubeapi/) runs in the test
process and listens on a Unix socket inside the node's root; a forwarder on the node's
private loopback (127.0.0.1:6443) carries the pod's TLS connections to it, so the pod uses
its ordinary in-cluster configuration. The real pxhostd on the node does every operation.

The tests run in order on one node, each from the state the previous one left: first
install (no drain), labels, a disruptive upgrade, an administrator's cordon, a drain that
a PodDisruptionBudget blocks until its timeout, and a pod killed mid-drain.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubeapi import objects
from kubeapi.server import KubeApiServer, Rbac, make_service_account
from kubeapi.store import Store
from nodeharness import Node, wait_for
from pxnode import BUILD, UNIT, invocation, pxhostctl
from test_pod import BASE, BUILD_IMAGE, ENTER_POD, POD_ENV, PodSim, health

from pxhostd.manifest.model.cluster import cluster_role
from pxhostd.manifest.params import parse_params

KUBE = "/var/lib/pxkube"
#: Where Kubernetes mounts it: /var/run/secrets/..., which is /run/secrets/... in a Debian
#: image (/var/run -> /run); enter-pod mounts below the image root, so it names the target.
SA_IN_POD = "/run/secrets/kubernetes.io/serviceaccount"
API_PORT = 6443  # on the node's private loopback
RECORD = "/opt/pwx/pod/drain.json"
#: The pod with its service account volume (read-only, as Kubernetes mounts it).
ENTER_KUBE_POD = ENTER_POD.replace(
    "exec chroot", f"volume {KUBE}/serviceaccount {SA_IN_POD} ro\nexec chroot", 1)
KUBE_ENV = {**POD_ENV, "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(API_PORT), "PXHOSTD_NODE_NAME": objects.NODE}
ARGS = ["-c", "cluster-kube"]

FORWARD = f"""\
import asyncio

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()

async def handle(reader, writer):
    up_reader, up_writer = await asyncio.open_unix_connection("{KUBE}/api.sock")
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer),
                         return_exceptions=True)

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", {API_PORT})
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


@dataclass
class Env:
    node: Node
    pods: PodSim
    store: Store
    server: KubeApiServer
    tmp: Path

    def start(self, *args: str) -> str:
        return self.pods.start(*args, *ARGS, env=KUBE_ENV)

    def stop_pods(self) -> None:
        for unit in self.pods.units:
            if not self.pods.exited(unit):
                self.pods.sigterm(unit)
                self.pods.wait_exit(unit)

    def payload(self, version: str, drain: bool = True) -> str:
        """A demo payload on the node; with `drain: on-upgrade` in its manifest."""
        out = self.tmp / f"payload-{version}"
        subprocess.run([sys.executable, str(BUILD), str(out), "--version", version],
                       check=True, capture_output=True)
        if drain:
            with (out / "payload.yaml").open("a") as f:
                f.write("drain: on-upgrade\n")
        path = f"/var/lib/pxtest/payloads/{version}"
        self.node.copy_in(out, path)
        return path

    def node_obj(self) -> dict[str, Any]:
        return self.store.get("nodes", "", objects.NODE)

    def cordoned(self) -> bool:
        return bool(self.node_obj()["spec"].get("unschedulable"))

    def label(self, key: str, value: str | None) -> None:
        def change(n: dict[str, Any]) -> None:
            if value is None:
                n["metadata"]["labels"].pop(key, None)
            else:
                n["metadata"]["labels"][key] = value
        self.store.update("nodes", "", objects.NODE, change)

    def seed_apps(self, suffix: str) -> list[str]:
        """Pods on the node: Portworx-volume ones (to evict) and others; the evicted names."""
        s = self.store
        s.create(objects.pod("apps", f"db-{suffix}", claims=("data-intree",),
                             labels={"app": "db"}))
        s.create(objects.pod("apps", f"csi-{suffix}", claims=("data-csi",),
                             owner="StatefulSet"))
        s.create(objects.pod("apps", f"web-{suffix}", claims=("data-plain",)))
        s.create(objects.pod("apps", f"bare-{suffix}", claims=("data-csi",), owner=None))
        return sorted([f"apps/csi-{suffix}", f"apps/db-{suffix}"])

    def service_version(self) -> str:
        return str(json.loads(pxhostctl(self.node, "status", "--json", check=False).stdout)
                   .get("payload_version"))

    def history_ids(self) -> list[str]:
        out = pxhostctl(self.node, "history", "--json").stdout
        return [str(e.get("txid", "")) for e in json.loads(out)]


@pytest.fixture(scope="module")
def env(node_root: Path, pxhostd_deb: Path, request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    failed_before = request.session.testsfailed
    tmp = tmp_path_factory.mktemp("kube")
    node = Node(node_root).start()
    sim = PodSim(node)
    store = Store(termination_seconds=0.5)
    account = make_service_account(tmp / "serviceaccount")
    server = KubeApiServer(store, Rbac(cluster_role(parse_params([]))["rules"]), account)
    try:
        node.copy_in(pxhostd_deb, f"{BASE}/{pxhostd_deb.name}")
        node.write_file(f"{BASE}/build-image", BUILD_IMAGE, mode=0o755)
        node.write_file(f"{BASE}/enter-pod", ENTER_KUBE_POD, mode=0o755)
        node.run([f"{BASE}/build-image", f"{BASE}/{pxhostd_deb.name}"], timeout=180)
        node.run(["mkdir", "-p", f"{KUBE}/serviceaccount"])
        for name in ("token", "ca.crt", "namespace"):
            node.copy_in(account.directory / name, f"{KUBE}/serviceaccount/{name}")
        assert node.merged is not None
        with server.serving_unix(node.merged / KUBE.lstrip("/") / "api.sock"):
            node.write_file(f"{KUBE}/forward.py", FORWARD)
            node.run(["systemd-run", "--unit=pxkube-forward.service", "--quiet",
                      "python3", f"{KUBE}/forward.py"])
            objects.cluster(store)  # node, volumes, claims, a DaemonSet pod, ...
            for pod in store.list("pods")["items"]:  # ... and apps: each test seeds its own
                if pod["metadata"]["namespace"] == "apps":
                    store.delete("pods", "apps", pod["metadata"]["name"])
            yield Env(node, sim, store, server, tmp)
    finally:
        if request.session.testsfailed > failed_before and node.running:
            print(f"node {node.name}: journal {node.save_diagnostics()}")
        sim.cleanup()
        node.stop()


def test_first_install_drains_nothing_and_follows_labels(env: Env) -> None:
    unit = env.start()
    log = env.pods.wait_log(unit, "install: done")
    assert "install: done (changed)" in log, log
    assert "kubernetes: node pxnode; drain before disruptive upgrades" in log, log
    assert "drain:" not in log  # a first install never drains
    assert env.store.evictions == [] and not env.cordoned()
    env.node.wait_active(UNIT)


def test_each_service_label_acts_once_through_pxhostd(env: Env) -> None:
    node = env.node
    before = [i for i in env.history_ids() if i.startswith("label:")]
    assert before == []

    def state() -> str:
        return node.run(["systemctl", "is-active", UNIT], check=False).stdout.strip()

    def done(value: str) -> bool:
        raw = env.node_obj()["metadata"].get("annotations", {}).get(
            "pxhostd.portworx.com/service-done")
        return raw is not None and json.loads(raw)["value"] == value

    env.label("px/service", "stop")
    wait_for(lambda: done("stop"), bool, timeout=120, what="px/service=stop handled")
    assert state() == "inactive"
    env.label("px/service", "start")
    wait_for(lambda: done("start"), bool, timeout=120, what="px/service=start handled")
    node.wait_active(UNIT)
    first = invocation(node)
    env.label("px/service", "restart")
    wait_for(lambda: done("restart"), bool, timeout=120, what="px/service=restart handled")
    node.wait_active(UNIT)
    restarted = invocation(node)
    assert restarted != first
    # An expired watch is resumed, and a change after it is still acted on, once.
    watches = sum("watch=" in p for _, p, _ in env.server.log)
    env.store.expire_watches()
    wait_for(lambda: sum("watch=" in p for _, p, _ in env.server.log), lambda n: n > watches,
             timeout=60, what="a new watch after the expiry")
    env.label("px/service", "disable")
    wait_for(lambda: done("disable"), bool, timeout=120, what="px/service=disable handled")
    assert node.run(["systemctl", "is-enabled", UNIT], check=False).stdout.strip() == "disabled"
    env.label("px/service", "enable")
    wait_for(lambda: done("enable"), bool, timeout=120, what="px/service=enable handled")
    assert invocation(node) == restarted  # no second restart
    ops = [i.split(":")[2] for i in env.history_ids() if i.startswith("label:")]
    assert sorted(ops) == sorted(f"px/service={v}" for v in
                                 ("stop", "start", "restart", "disable", "enable"))
    assert "expired (410 Gone)" in env.pods.log(env.pods.units[-1])
    env.label("px/service", None)


def test_disruptive_upgrade_cordons_evicts_upgrades_uncordons(env: Env) -> None:
    # A pod with a watch open stops cleanly on SIGTERM, leaving nothing behind.
    running = env.pods.units[-1]
    env.pods.sigterm(running)
    props = env.pods.wait_exit(running)
    assert (props["ExecMainCode"], props["ExecMainStatus"]) == ("1", "0")
    assert env.pods.leftovers(running) == []
    evict = env.seed_apps("u1")
    env.store.evictions.clear()
    payload = env.payload("2.0.0")
    unit = env.start("--payload", payload)
    # The pod says it serves once the drain is released (uncordon, record cleared).
    log = env.pods.wait_log(unit, "readiness comes from the status file", timeout=300)
    assert "install: done (changed)" in log, log
    assert "declares disruptive upgrades" in log
    assert env.store.evictions == evict  # exactly the Portworx-volume pods, once each
    lines = log.splitlines()
    gone = next(i for i, line in enumerate(lines) if "pod(s) gone" in line)
    submitted = next(i for i, line in enumerate(lines) if "install: transaction" in line)
    uncordoned = next(i for i, line in enumerate(lines) if "uncordoned" in line)
    assert gone < submitted < uncordoned
    cordons = [e.obj["spec"].get("unschedulable") for e in env.store.events
               if e.key == ("nodes", "", objects.NODE)]
    assert True in cordons  # it was cordoned during the drain
    assert not env.cordoned()
    assert not env.node.exists(RECORD)
    assert env.service_version() == "2.0.0"
    wait_for(lambda: env.pods.probe(unit, "--pod"), lambda r: r[0] == 0, timeout=60,
             what="the pod to be ready after the drained upgrade")
    left = {p["metadata"]["name"] for p in env.store.list("pods")["items"]}
    assert {"web-u1", "bare-u1", "portworx-abc"} <= left


def test_an_administrators_cordon_stays_after_the_upgrade(env: Env) -> None:
    env.stop_pods()
    evict = env.seed_apps("u2")
    env.store.evictions.clear()
    env.store.update("nodes", "", objects.NODE, lambda n: n["spec"].update(unschedulable=True))
    unit = env.start("--payload", env.payload("3.0.0"))
    # The pod says it serves once the drain is released (uncordon, record cleared).
    log = env.pods.wait_log(unit, "readiness comes from the status file", timeout=300)
    assert "install: done (changed)" in log, log
    assert env.store.evictions == evict
    assert "stays cordoned (it was before the drain)" in log
    assert env.cordoned()
    assert env.service_version() == "3.0.0"
    env.store.update("nodes", "", objects.NODE, lambda n: n["spec"].pop("unschedulable"))


def test_a_blocking_pdb_times_out_named_node_uncordoned_service_unchanged(env: Env) -> None:
    env.stop_pods()
    env.seed_apps("u3")
    env.store.create(objects.pdb("apps", "db", {"app": "db"}, min_available=1))
    before = invocation(env.node)
    unit = env.start("--drain-timeout", "8", "--payload", env.payload("4.0.0"))
    env.pods.wait_log(unit, "drain: evicting")
    # The pod answers health questions while it drains.
    code, body = health(env.node)
    assert code == 200 and json.loads(body)["version"] == "3.0.0"
    log = env.pods.wait_log(unit, "install: failed", timeout=120)
    assert "install: failed: DrainTimeout: drain of node pxnode did not finish" in log, log
    assert "apps/db-u3" in log
    assert not env.cordoned()
    assert not env.node.exists(RECORD)
    assert env.service_version() == "3.0.0" and invocation(env.node) == before
    assert not env.pods.exited(unit)  # still up, serving health
    assert health(env.node)[0] == 200
    # ... but not ready: its spec is not what the host runs, so a rollout stops here.
    code, reason = env.pods.probe(unit, "--pod")
    assert code != 0, reason


def test_a_pod_killed_mid_drain_is_resumed_by_the_next(env: Env) -> None:
    env.stop_pods()
    payload = env.payload("4.0.0")
    unit = env.start("--payload", payload)
    env.pods.wait_log(unit, "drain: evicting")
    env.node.run(["systemctl", "kill", "--signal=KILL", unit])
    env.pods.wait_exit(unit)
    record = json.loads(env.node.read_file(RECORD))
    assert record["phase"] == "draining" and record["was_cordoned"] is False
    assert env.cordoned()  # the next pod carries on from here
    env.store.delete("poddisruptionbudgets", "apps", "db")
    unit = env.start("--payload", payload)
    # The pod says it serves once the drain is released (uncordon, record cleared).
    log = env.pods.wait_log(unit, "readiness comes from the status file", timeout=300)
    assert "resuming the drain" in log, log
    assert "install: done (changed)" in log
    assert "apps/db-u3" in env.store.evictions
    assert not env.cordoned()
    assert not env.node.exists(RECORD)
    assert env.service_version() == "4.0.0"


def test_enabled_uninstall_label_uninstalls_keeps_etc_pwx_relabels_false(env: Env) -> None:
    node = env.node
    node.run(["mkdir", "-p", "/etc/pwx"])
    node.write_file("/etc/pwx/config.json", "{}\n")
    assert node.exists(f"/etc/systemd/system/{UNIT}")
    env.label("px/enabled", "uninstall")
    wait_for(lambda: env.node_obj()["metadata"]["labels"].get("px/enabled"),
             lambda v: v == "false", timeout=300, what="px/enabled relabelled false")
    done = json.loads(env.node_obj()["metadata"]["annotations"][
        "pxhostd.portworx.com/enabled-done"])
    assert done["value"] == "uninstall" and done["result"].startswith("done"), done
    assert not node.exists(f"/etc/systemd/system/{UNIT}")
    assert node.read_file("/etc/pwx/config.json") == "{}\n"  # kept
    ops = [i.split(":")[2] for i in env.history_ids() if i.startswith("label:")]
    assert ops.count("px/enabled=uninstall") == 1
    assert "relabelled px/enabled=false" in env.pods.log(env.pods.units[-1])
