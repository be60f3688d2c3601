"""Issue: the pod under a real container runtime.

The image built by `make image` (scripts/build-image) is loaded into podman inside a booted
node, and the **generated** DaemonSet's pod template is run with `podman run` as a kubelet
would run it (tests/e2e/podman_pod.py says how, and what a kubelet adds). The readiness
probe is the template's exec probe, run with `podman exec`.

The tests run in order on one node, each from the state the previous one left: refusals on
a fresh node (nothing changed), first install, stop, a new container, removal, an upgrade
to a newer payload, a broken payload.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import podman_pod as pp
import pytest
from nodeharness import Node, NodeError, wait_for
from pxnode import ENV_FILE, UNIT, UNIT_FILE, invocation, service_env

TOKEN = "tok-$(PXHOSTD_NODE_NAME)-s3cret"  # a `$(...)` the kubelet must not expand
KVDB_PWD = "root:pw-$$-s3cret"
SECRETS = ("tok-", "pw-$$-s3cret", "s3cret")
#: A service argument the kubelet would expand (a cluster name may not hold `$`: a path may).
CA_PATH = "/etc/pwx/ca-$(HOSTNAME).crt"
#: The DaemonSet's parameters: the secrets, and that argument.
PARAMS = [("c", "px-pod"), ("ca", CA_PATH), ("t", TOKEN), ("pwd", KVDB_PWD)]
STATUS = "/run/pxhostd/status"


@dataclass
class Images:
    base: str
    newer: str
    broken: str


@dataclass
class PodNode:
    node: Node
    docs: list[dict[str, Any]]
    images: Images
    invocation: str = ""
    names: list[str] = field(default_factory=list)

    def run(self, name: str, image: str, **kwargs: Any) -> pp.PodRun:
        run = pp.PodRun(name, image, **kwargs)
        pp.start_pod(self.node, self.docs, run)
        self.names.append(name)
        return run

    def probe(self, name: str) -> tuple[bool, str]:
        r = self.node.run(pp.probe_argv(self.docs, name), check=False, timeout=60)
        return r.returncode == 0, (r.stdout + r.stderr).strip()

    def wait_ready(self, name: str, timeout: float = 240) -> None:
        wait_for(lambda: self.probe(name), lambda r: r[0], timeout=timeout, interval=0.5,
                 what=f"pod {name} to be ready")

    def exit_code(self, name: str, timeout: float = 120) -> int:
        out = self.node.run(["podman", "wait", name], timeout=timeout).stdout.strip()
        return int(out.splitlines()[-1])

    def logs(self, name: str) -> str:
        r = self.node.run(["podman", "logs", name], check=False)
        return r.stdout + r.stderr


def status_file(node: Node) -> dict[str, str]:
    return dict(line.split("=", 1) for line in node.read_file(STATUS).splitlines() if line)


def pod_processes(node: Node) -> list[str]:
    out = node.run(["ps", "-eo", "pid=,args="], check=False).stdout
    return [line for line in out.splitlines() if "pxhostd-pod" in line]


def host_untouched(node: Node) -> None:
    assert node.run(["dpkg", "-s", "pxhostd"], check=False).returncode != 0
    assert not node.exists(UNIT_FILE)
    assert not node.exists("/opt/pwx/pod")


@pytest.fixture(scope="module")
def images(pxhostd_deb: Path, repo_root: Path) -> Images:
    out = repo_root / "out"
    try:
        base = pp.build_image(pxhostd_deb, out / f"pxhostd-pod_{pxhostd_version(pxhostd_deb)}"
                                               ".image.tar")
        newer = pp.build_image(pxhostd_deb, out / "test-pod-newer.image.tar",
                               payload_version="1.1.0", payload_flags="--slow-start 2",
                               tag="portworx/pxhostd:test-newer")
        broken = pp.build_image(pxhostd_deb, out / "test-pod-broken.image.tar",
                                payload_version="1.2.0", payload_flags="--broken",
                                tag="portworx/pxhostd:test-broken")
    except NodeError as exc:
        pytest.fail(f"cannot build the pod image: {exc}", pytrace=False)
    return Images(str(base), str(newer), str(broken))


def pxhostd_version(deb: Path) -> str:
    match = re.fullmatch(r"pxhostd_(.+)_all\.deb", deb.name)
    assert match, deb
    return match.group(1)


@pytest.fixture(scope="module")
def pod_node(images: Images, request: pytest.FixtureRequest) -> Iterator[PodNode]:
    try:
        root = pp.podman_node_root()
    except NodeError as exc:
        pytest.fail(f"cannot build the podman node root: {exc}", pytrace=False)
    node = pp.podman_node(root)
    node.start()
    try:
        pp.prepare_node(node)
        loaded = Images(*(pp.load_image(node, Path(tar)) for tar in
                          (images.base, images.newer, images.broken)))
        yield PodNode(node, pp.generated_manifest(PARAMS), loaded)
    finally:
        if request.session.testsfailed:
            journal = node.save_diagnostics()
            print(f"node {node.name}: console {node.console_log}, journal {journal}")
        node.stop()


def test_the_image_keeps_entrypoint_stopsignal_and_healthcheck(pod_node: PodNode) -> None:
    out = pod_node.node.run(["podman", "image", "inspect", pod_node.images.base]).stdout
    (config,) = json.loads(out)
    assert config["Config"]["Entrypoint"] == ["tini", "-s", "--", "pxhostd-pod"]
    assert config["Config"]["StopSignal"] == "SIGTERM"
    # podman 4.3 shows the docker-archive's healthcheck at the top level.
    health = config.get("Healthcheck") or config["Config"].get("Healthcheck")
    assert health["Test"] == ["CMD", "pxhostctl", "probe", "--pod"], config


def test_without_host_pid_the_pod_refuses_and_changes_nothing(pod_node: PodNode) -> None:
    pod_node.run("px-nopid", pod_node.images.base, without_host_pid=True)
    assert pod_node.exit_code("px-nopid") == 1
    logs = pod_node.logs("px-nopid")
    assert "set `hostPID: true`" in logs.splitlines()[-1], logs
    # The kubelet shows the reason from /dev/termination-log.
    reason = pod_node.node.read_file(f"{pp.POD_BASE}/px-nopid/termination-log")
    assert "hostPID: true" in reason
    host_untouched(pod_node.node)


def test_a_missing_volume_is_named_and_changes_nothing(pod_node: PodNode) -> None:
    pod_node.run("px-novol", pod_node.images.base, without_volumes=("run-pxhostd", "kubelet"))
    assert pod_node.exit_code("px-novol") == 1
    last = pod_node.logs("px-novol").strip().splitlines()[-1]
    assert "MissingMounts" in last and "/run/pxhostd" in last and "/var/lib/kubelet" in last
    host_untouched(pod_node.node)


def test_fresh_node_install_probe_and_secrets_only_in_the_service_env(
    pod_node: PodNode,
) -> None:
    node = pod_node.node
    pod_node.run("px-1", pod_node.images.base)
    pod_node.wait_ready("px-1")
    assert node.run(["dpkg", "-s", "pxhostd"]).returncode == 0
    assert node.systemctl("is-active", UNIT).stdout.strip() == "active"
    pod_node.invocation = invocation(node)
    # The kubelet expanded nothing: the service got the parameters' own text.
    pid = node.unit_property(UNIT, "MainPID")
    argv = node.read_bytes(f"/proc/{pid}/cmdline").decode().split("\0")
    assert CA_PATH in argv and "px-pod" in argv, argv
    env = service_env(node)
    assert env["PX_TOKEN"] == TOKEN and env["PX_KVDB_USERPWD"] == KVDB_PWD
    # ... through the root-only environment file, and nowhere else.
    assert node.run(["stat", "-c", "%a %U", ENV_FILE]).stdout.strip() == "600 root"
    readable = {
        "unit": node.systemctl("cat", UNIT).stdout,
        "Environment": node.unit_property(UNIT, "Environment"),
        "ps": node.run(["ps", "-eo", "args="]).stdout,
        "journal": node.journal(),
        "pod log": pod_node.logs("px-1"),
        "status file": node.read_file(STATUS),
        "GetSpec as pxuser": node.run(
            ["busctl", "--system", "--json=short", "call", "com.portworx.pxhostd1",
             "/com/portworx/pxhostd1", "com.portworx.pxhostd1.Manager", "GetSpec"],
            user="pxuser").stdout,
        "Status as pxuser": node.run(["pxhostctl", "status", "--json"], user="pxuser").stdout,
    }
    for where, text in readable.items():
        for secret in (TOKEN, KVDB_PWD, "s3cret"):
            assert secret not in text, f"{secret!r} readable in {where}"
    # The service gets exactly the declared mounts; nothing the runtime injected.
    unit = node.read_file(UNIT_FILE)
    binds = sorted(re.findall(r"^BindPaths=(.*)$", unit, re.M))
    assert binds == ["/var/lib/kubelet:/var/lib/kubelet", "/var/lib/osd:/var/lib/osd"], unit
    for injected in ("containerenv", "/etc/hosts", "/etc/hostname", "resolv.conf",
                     "termination-log", "secrets", "/run/containers"):
        assert injected not in unit
    # The image's HEALTHCHECK is the same probe.
    assert node.run(["podman", "healthcheck", "run", "px-1"], check=False).returncode == 0


def test_stop_keeps_the_service_and_leaves_no_process(pod_node: PodNode) -> None:
    node = pod_node.node
    # `-t 2`: a pod that has not exited within 2 s is SIGKILLed, and exits 137.
    node.run(["podman", "stop", "-t", "2", "px-1"], timeout=60)
    assert pod_node.exit_code("px-1") == 0
    assert invocation(node) == pod_node.invocation
    assert node.systemctl("is-active", UNIT).stdout.strip() == "active"
    assert pod_processes(node) == []


def test_a_new_container_with_the_same_spec_never_restarts_storage(pod_node: PodNode) -> None:
    node = pod_node.node
    node.run(["podman", "rm", "px-1"])
    pod_node.run("px-2", pod_node.images.base)
    pod_node.wait_ready("px-2")
    assert "install: done (nothing changed)" in pod_node.logs("px-2")
    assert invocation(node) == pod_node.invocation


def test_after_the_pod_is_removed_the_service_restarts(pod_node: PodNode) -> None:
    node = pod_node.node
    node.run(["podman", "rm", "--force", "--time", "2", "px-2"], timeout=60)
    assert pod_processes(node) == []
    node.systemctl("restart", UNIT)
    node.wait_active(UNIT)
    assert invocation(node) != pod_node.invocation
    assert node.systemctl("is-active", UNIT).stdout.strip() == "active"


def test_newer_payload_probe_passes_only_once_the_new_version_runs(pod_node: PodNode) -> None:
    node = pod_node.node
    assert status_file(node)["VERSION"] == "1.0.0"
    pod_node.run("px-3", pod_node.images.newer)
    seen: list[tuple[bool, str]] = []

    def sample() -> tuple[bool, str]:
        ok, _ = pod_node.probe("px-3")
        version = status_file(node)["VERSION"]
        # Read after the probe: a version read before it could be older than the probe's.
        seen.append((ok, version))
        return ok, version

    wait_for(sample, lambda r: r[0], timeout=240, interval=0.2, what="the upgraded pod ready")
    assert all(version == "1.1.0" for ok, version in seen if ok), seen
    assert any(not ok and version == "1.0.0" for ok, version in seen), (
        "the probe was never asked while the old version still ran", seen)
    assert status_file(node)["VERSION"] == "1.1.0"
    node.run(["podman", "rm", "--force", "--time", "2", "px-3"], timeout=60)


def test_broken_payload_pod_stays_unready_previous_version_runs(pod_node: PodNode) -> None:
    node = pod_node.node
    pod_node.run("px-4", pod_node.images.broken)
    wait_for(lambda: pod_node.logs("px-4"), lambda text: "install: failed" in text,
             timeout=240, interval=0.5, what="the broken payload's install to fail")
    assert "RolledBack" in pod_node.logs("px-4")
    for _ in range(3):
        ok, reason = pod_node.probe("px-4")
        assert not ok and "submission failed" in reason, reason
    assert status_file(node)["VERSION"] == "1.1.0"
    assert node.systemctl("is-active", UNIT).stdout.strip() == "active"
    # The pod stays up (unready), so the rollout stops here instead of crash-looping.
    assert node.run(["podman", "inspect", "-f", "{{.State.Running}}", "px-4"]
                    ).stdout.strip() == "true"
