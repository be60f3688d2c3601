"""Issue: the DaemonSet pod (pxhostd-pod) on a booted node, as a simulated pod.

The simulated pod: a process in its own mount namespace that sees only the DaemonSet's
hostPath mounts, bind-mounted from the node, on top of an image root, running the
entrypoint. The image root is an overlay over the node's own root (standing in for
debian:12 with pxhostd's runtime dependencies; the node root holds exactly those), into
which the .deb is installed with dpkg and the demo payload is built, as
container/Containerfile does. Compromises, all of them in how the pod is made, none in what
it runs: the overlay's lower layer is the node's live root rather than a separate image;
there is no PID or network namespace (a DaemonSet pod has hostPID and hostNetwork anyway);
the pod runs as a transient unit (`systemd-run`) of the node, which stands in for the
container runtime: it gives the pod a cgroup (so leftovers are visible) and keeps its
stdout (the unit's journal = `kubectl logs`). The readiness probe runs inside the pod's
mount namespace and root, as the kubelet's exec probe would.

The tests run in order on one node: a pod install takes a while, and each step starts
from the state the previous one left (missing mounts on a pristine host, first install,
SIGTERM, restart, upgrade, probe failures, uninstall).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nodeharness import Node, wait_for
from pxnode import UNIT, build_payload, invocation

BASE = "/var/lib/pxpod"
IMAGE_ROOT = f"{BASE}/root"
PAYLOAD_VERSION = "1.0.0"
HOST_PAYLOAD = f"/opt/pwx/pod/payloads/portworx-demo-{PAYLOAD_VERSION}"
SECRET = "s3cr3t-hunter2"

#: DaemonSet hostPath volumes: node path -> (pod path, readOnly), as the DaemonSet mounts
#: them (docs/pod.md lists why each is there).
HOST_PATHS = {
    "/etc/pwx": ("/etc/pwx", False),
    "/opt/pwx": ("/opt/pwx", False),
    "/etc/systemd/system": ("/etc/systemd/system", False),
    "/proc/1/ns": ("/host_proc/1/ns", True),
    "/run/pxhostd": ("/run/pxhostd", False),
    "/run/dbus": ("/run/dbus", True),
    "/var/lib/kubelet": ("/var/lib/kubelet", False),
    "/var/lib/osd": ("/var/lib/osd", False),
}

#: What a container runtime and the kubelet put in the pod's environment, plus the
#: DaemonSet's own env.
POD_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOSTNAME": "pxnode",
    "HOME": "/root",
    "KUBERNETES_SERVICE_HOST": "10.96.0.1",
    "KUBERNETES_SERVICE_PORT": "443",
    "PORTWORX_SERVICE_SERVICE_HOST": "10.96.0.20",
    "PORTWORX_SERVICE_PORT": "tcp://10.96.0.20:9001",
    "PORTWORX_SERVICE_PORT_9001_TCP_ADDR": "10.96.0.20",
    "PXHOSTD_NODE_NAME": "pxnode",
    "PX_TEST": "one",
    "REGISTRY_PASS": SECRET,
}
POD_ARGS = ["-c", "cluster-pod", "-x", "kubernetes", "-t", SECRET]

BUILD_IMAGE = f"""#!/bin/bash
# Build the pod image root like container/Containerfile: the .deb installed, the payload built.
set -euo pipefail
deb=$1
mkdir -p {BASE}/layer {IMAGE_ROOT}
mount -t tmpfs -o mode=0755 pxpod-layer {BASE}/layer
mkdir -p {BASE}/layer/upper {BASE}/layer/work
mount -t overlay pxpod-image \\
    -o lowerdir=/,upperdir={BASE}/layer/upper,workdir={BASE}/layer/work {IMAGE_ROOT}
mkdir -p {IMAGE_ROOT}/usr/share/pxhostd-pod/packages
cp "$deb" {IMAGE_ROOT}/usr/share/pxhostd-pod/packages/
chroot {IMAGE_ROOT} dpkg -i "/usr/share/pxhostd-pod/packages/$(basename "$deb")"
chroot {IMAGE_ROOT} python3 /usr/share/pxhostd/demo-payload/build.py \\
    /usr/share/pxhostd-pod/payload --version {PAYLOAD_VERSION}
"""

VOLUMES = "\n".join(
    f"volume {src} {dst} {'ro' if ro else 'rw'}" for src, (dst, ro) in HOST_PATHS.items()
)

ENTER_POD = f"""#!/bin/bash
# In a fresh mount namespace: mount the DaemonSet's volumes into the image root, chroot,
# and exec the entrypoint with exactly the pod's environment.
# usage: enter-pod SKIP [NAME=VALUE ...] -- ARGS   (SKIP: comma list of pod paths left out)
set -euo pipefail
R={IMAGE_ROOT}
skip=",$1,"; shift
podenv=()
while [ "$1" != "--" ]; do podenv+=("$1"); shift; done
shift
# The node's /proc with its submounts: systemd-nspawn gives each node its own boot id by
# mounting over /proc/sys/kernel/random/boot_id; a fresh procfs would show the machine's.
mount --rbind /proc "$R/proc"
mount --rbind /dev "$R/dev"
mount -t tmpfs tmpfs "$R/tmp"
volume() {{  # hostPath (DirectoryOrCreate, as the kubelet does) -> mountPath [ro]
    case "$skip" in *",$2,"*) return 0 ;; esac
    mkdir -p "$1" "$R$2"
    mount --bind "$1" "$R$2"
    if [ "$3" = ro ]; then mount -o remount,bind,ro "$R$2"; fi
}}
{VOLUMES}
exec chroot "$R" /usr/bin/env -i "${{podenv[@]}}" /usr/bin/tini -s -- /usr/bin/pxhostd-pod "$@"
"""


@dataclass
class PodSim:
    node: Node
    count: int = 0
    units: list[str] = field(default_factory=list)

    def start(self, *args: str, skip: tuple[str, ...] = (), env: dict[str, str] | None = None
              ) -> str:
        """Start a pod (a transient unit of the node); return its unit name."""
        self.count += 1
        unit = f"pxpod-{self.count}.service"
        pod_env = [f"{k}={v}" for k, v in (POD_ENV if env is None else env).items()]
        self.node.run(
            ["systemd-run", f"--unit={unit}", "--quiet", "--property=RemainAfterExit=yes",
             f"--description=simulated pxhostd pod {self.count}",
             "--", "unshare", "--mount", "--propagation", "private", "--",
             f"{BASE}/enter-pod", ",".join(skip) or "-", *pod_env, "--", *args]
        )
        self.units.append(unit)
        return unit

    def log(self, unit: str) -> str:
        return self.node.run(
            ["journalctl", "--no-pager", "-q", "-o", "cat", "-u", unit], check=False
        ).stdout

    def wait_log(self, unit: str, text: str, timeout: float = 240) -> str:
        return wait_for(lambda: self.log(unit), lambda out: text in out or self.exited(unit),
                        timeout=timeout, what=f"{text!r} in the log of {unit}")

    def props(self, unit: str) -> dict[str, str]:
        out = self.node.run(
            ["systemctl", "show", unit, "-p", "MainPID", "-p", "ExecMainStatus",
             "-p", "ExecMainCode", "-p", "ActiveState"]
        ).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def leftovers(self, unit: str) -> list[str]:
        """Processes still in the pod's cgroup (after its main process exited: orphans)."""
        cgroup = self.node.unit_property(unit, "ControlGroup")
        if not cgroup:
            return []  # systemd removed the emptied cgroup
        out = self.node.run(["cat", f"/sys/fs/cgroup{cgroup}/cgroup.procs"], check=False)
        return out.stdout.split()

    def exited(self, unit: str) -> bool:
        return self.props(unit)["MainPID"] == "0"

    def wait_exit(self, unit: str, timeout: float = 60) -> dict[str, str]:
        return wait_for(lambda: self.props(unit), lambda p: p["MainPID"] == "0",
                        timeout=timeout, what=f"{unit} to exit")

    def main_pid(self, unit: str) -> int:
        return int(self.props(unit)["MainPID"])

    def probe(self, unit: str, *extra: str) -> tuple[int, str]:
        """`pxhostctl probe` inside the pod's mount namespace and root (the exec probe)."""
        pid = self.main_pid(unit)
        result = self.node.run(
            ["nsenter", "-t", str(pid), "-m", "-r", "--", "/usr/bin/pxhostctl", "probe",
             *extra],
            check=False,
        )
        return result.returncode, result.stdout.strip()

    def sigterm(self, unit: str) -> None:
        self.node.run(["systemctl", "kill", "--kill-who=main", "--signal=TERM", unit])

    def cleanup(self) -> None:
        for unit in self.units:
            self.node.run(["systemctl", "stop", unit], check=False)
            self.node.run(["systemctl", "reset-failed", unit], check=False)


def health(node: Node) -> tuple[int, str]:
    out = node.run(
        ["curl", "-s", "--max-time", "8", "-w", "\n%{http_code}", "http://127.0.0.1:9015/health"],
        check=False,
    ).stdout
    body, _, code = out.rpartition("\n")
    return int(code or 0), body


def propagation(node: Node) -> str:
    return node.run(["findmnt", "-no", "PROPAGATION", "/"]).stdout.strip()


def host_has_pxhostd(node: Node) -> bool:
    return node.run(["dpkg-query", "-W", "pxhostd"], check=False).returncode == 0


def status_file(node: Node) -> dict[str, str]:
    text = node.run(["cat", "/run/pxhostd/status"], check=False).stdout
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def pods(
    node_root: Path, pxhostd_deb: Path, request: pytest.FixtureRequest
) -> Iterator[PodSim]:
    failed_before = request.session.testsfailed
    node = Node(node_root).start()
    sim = PodSim(node)
    try:
        node.copy_in(pxhostd_deb, f"{BASE}/{pxhostd_deb.name}")
        node.write_file(f"{BASE}/build-image", BUILD_IMAGE, mode=0o755)
        node.write_file(f"{BASE}/enter-pod", ENTER_POD, mode=0o755)
        node.run([f"{BASE}/build-image", f"{BASE}/{pxhostd_deb.name}"], timeout=180)
        # Show the old px-init step: the host's / starts private.
        node.run(["mount", "--make-private", "/"])
        yield sim
    finally:
        if request.session.testsfailed > failed_before and node.running:
            print(f"node {node.name}: journal {node.save_diagnostics()}")
        sim.cleanup()
        node.stop()


def test_missing_mounts_one_message_host_untouched(pods: PodSim) -> None:
    node = pods.node
    unit = pods.start(*POD_ARGS, skip=("/run/dbus", "/opt/pwx", "/host_proc/1/ns"))
    props = pods.wait_exit(unit)
    assert props["ExecMainStatus"] == "1"
    log = pods.log(unit)
    lines = [line for line in log.splitlines() if "MissingMounts" in line]
    assert len(lines) == 1, log
    for path in ("/opt/pwx", "/host_proc/1/ns", "/run/dbus"):
        assert path in lines[0]
    for path in ("/etc/pwx", "/etc/systemd/system", "/run/pxhostd"):
        assert f" {path}," not in lines[0] and not lines[0].endswith(path)
    assert not host_has_pxhostd(node)
    assert propagation(node) == "private"
    assert not node.exists("/opt/pwx/pod")
    assert pods.leftovers(unit) == []


def test_bad_machine_id_refused_before_any_change(pods: PodSim) -> None:
    node = pods.node
    node.write_file(f"{BASE}/empty-machine-id", "")
    node.run(["mount", "--bind", f"{BASE}/empty-machine-id", "/etc/machine-id"])
    try:
        unit = pods.start(*POD_ARGS)
        props = pods.wait_exit(unit)
    finally:
        node.run(["umount", "/etc/machine-id"])
    assert props["ExecMainStatus"] == "1"
    assert "machine-id is empty" in pods.log(unit)
    assert not host_has_pxhostd(node)
    assert propagation(node) == "private"
    assert not node.exists("/opt/pwx/pod")


def test_first_start_installs_daemon_and_service(pods: PodSim) -> None:
    node = pods.node
    # Hold the install step (a stand-in for an earlier pod's install still running) so the
    # health endpoint can be asked while nothing is installed.
    node.run(["systemd-run", "--unit=pxhostd-pod-install.service", "--quiet",
              "sleep", "600"])
    unit = pods.start(*POD_ARGS)
    pods.wait_log(unit, "waiting for it")
    assert health(node) == (503, "Node status UNKNOWN\n")
    assert not host_has_pxhostd(node)
    node.run(["systemctl", "stop", "pxhostd-pod-install.service"])

    log = pods.wait_log(unit, "install: done")
    assert "install: done (changed)" in log, log
    node.wait_active("pxhostd")
    node.wait_active(UNIT)
    machine_id = node.read_file("/etc/machine-id").strip()
    assert f"host machine-id {machine_id}" in log
    assert "made / a shared mount" in log
    assert "host apt-get: Setting up pxhostd" in log
    assert propagation(node) == "shared"
    assert "ignoring old option -x kubernetes" in log
    assert SECRET not in log
    assert SECRET not in node.journal("pxhostd")

    code, reason = wait_for(lambda: pods.probe(unit), lambda r: r[0] == 0, timeout=60,
                            what="the readiness probe to pass")
    assert reason.startswith("ready")
    code, body = health(node)
    assert code == 200
    assert json.loads(body)["version"] == PAYLOAD_VERSION

    spec = json.loads(node.read_file("/var/lib/pxhostd/applied.json"))["spec"]
    assert spec["payload"] == HOST_PAYLOAD
    assert spec["args"] == ["-c", "cluster-pod", "-t", SECRET]
    assert spec["env"] == {"PX_TEST": "one", "REGISTRY_PASS": SECRET}
    assert sorted(spec["mounts"]) == ["/var/lib/kubelet:/var/lib/kubelet",
                                      "/var/lib/osd:/var/lib/osd"]
    assert pods.props(unit)["MainPID"] != "0"  # it stays up


def test_sigterm_exits_zero_fast_and_storage_keeps_running(pods: PodSim) -> None:
    node = pods.node
    unit = pods.units[-1]
    before = invocation(node)
    started = time.monotonic()
    pods.sigterm(unit)
    # The kubelet's grace period is the contract: exit 0 within 2 s of SIGTERM.
    props = pods.wait_exit(unit, timeout=2.0)
    assert time.monotonic() - started < 2.0
    assert (props["ExecMainCode"], props["ExecMainStatus"]) == ("1", "0")  # CLD_EXITED, 0
    assert pods.leftovers(unit) == []  # no orphan left in the pod's cgroup
    assert node.run(["systemctl", "is-active", UNIT], check=False).stdout.strip() == "active"
    assert invocation(node) == before
    assert "stopped; the storage service keeps running" in pods.log(unit)


def test_restart_with_same_spec_does_not_restart_service(pods: PodSim) -> None:
    node = pods.node
    before = invocation(node)
    unit = pods.start(*POD_ARGS)
    log = pods.wait_log(unit, "install: done")
    assert "install: done (nothing changed)" in log, log
    assert "host daemon: pxhostd" in log and "up to date" in log
    assert "(already there)" in log
    wait_for(lambda: pods.probe(unit), lambda r: r[0] == 0, timeout=60, what="ready")
    assert invocation(node) == before


def test_health_answers_installing_then_relays(pods: PodSim, tmp_path: Path) -> None:
    node = pods.node
    pods.sigterm(pods.units[-1])
    pods.wait_exit(pods.units[-1])
    slow = build_payload(node, tmp_path, "slow", "2.0.0", "--slow-start", "4")
    unit = pods.start("--payload", slow, *POD_ARGS)
    wait_for(lambda: health(node), lambda r: r == (503, "Node status INSTALLING\n"),
             timeout=120, interval=0.1, what="9015 to say INSTALLING during the upgrade")
    log = pods.wait_log(unit, "install: done")
    assert "install: done (changed)" in log, log
    _code, body = wait_for(lambda: health(node), lambda r: r[0] == 200, timeout=60,
                          what="9015 to relay the payload's node health")
    assert json.loads(body)["version"] == "2.0.0"
    wait_for(lambda: pods.probe(unit), lambda r: r[0] == 0, timeout=60, what="ready")


def test_stale_heartbeat_fails_probe(pods: PodSim) -> None:
    node = pods.node
    unit = pods.units[-1]
    assert pods.probe(unit)[0] == 0
    node.run(["systemctl", "kill", "--kill-who=main", "--signal=SIGSTOP", "pxhostd"])
    try:
        _code, reason = wait_for(lambda: pods.probe(unit, "--max-age", "2"),
                                lambda r: r[0] != 0, timeout=30, what="the probe to fail")
        assert "heartbeat" in reason
        assert status_file(node)["READY"] == "1"  # the file alone still says ready
    finally:
        node.run(["systemctl", "kill", "--kill-who=main", "--signal=SIGCONT", "pxhostd"])
    wait_for(lambda: pods.probe(unit), lambda r: r[0] == 0, timeout=60, what="ready again")


def test_service_failure_shows_not_ready(pods: PodSim) -> None:
    node = pods.node
    unit = pods.units[-1]
    assert status_file(node)["READY"] == "1"
    node.run(["systemctl", "stop", UNIT])
    wait_for(lambda: status_file(node), lambda s: s.get("READY") == "0", timeout=1.0,
             interval=0.05, what="READY=0 in the status file within a second")
    code, reason = pods.probe(unit)
    assert code == 9 and reason.startswith("not ready")  # pxhostctl(1): 9 = not ready
    assert health(node)[0] == 503


def test_uninstall_only_on_explicit_request(pods: PodSim) -> None:
    node = pods.node
    pods.sigterm(pods.units[-1])
    pods.wait_exit(pods.units[-1])
    assert node.exists(f"/etc/systemd/system/{UNIT}")  # a pod going away removed nothing
    unit = pods.start("--uninstall")
    props = pods.wait_exit(unit, timeout=300)
    log = pods.log(unit)
    assert props["ExecMainStatus"] == "0", log
    assert "uninstall: done" in log
    assert not node.exists(f"/etc/systemd/system/{UNIT}")
    assert node.exists("/etc/pwx")  # kept without --wipe
