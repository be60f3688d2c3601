"""Issue: the monitor as a plain global Swarm service over the host's bus (docs/swarm.md).

On a real single-node Docker Swarm inside a booted node (Debian's docker.io; the node and
its quirks in tests/e2e/swarmkit.py): pxhostd installed from the .deb and nothing else, the
pod images from scripts/build-image loaded with `docker load`, the stack file from the
node's own `pxhostctl spec --platform swarm`, the token as a Docker secret. No privileged
container, no docker.sock, no host namespace anywhere.

The tests run in order on one node, each from the state the previous one left: deploy on
a fresh node, `stack rm` and deploy again, image updates (newer payload; broken payload),
the documented uninstall.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from nodeharness import wait_for
from nodeharness.outcome import item_failed
from pxnode import ENV_FILE, UNIT, invocation, service_env
from swarmkit import IMAGE, SERVICE, STACK_FILE, Swarm, build_images, stack_file, swarm_node

SECRET = "s3cr3t-swarm-hunter2"
BIND_SOURCES = ("/opt/pwx", "/run/pxhostd", "/run/dbus/system_bus_socket")


@pytest.fixture(scope="module")
def swarm(pxhostd_deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    tars = build_images(tmp_path_factory.mktemp("images"))
    with swarm_node(pxhostd_deb, tars) as s:
        yield s


@pytest.fixture(autouse=True)
def diagnostics(swarm: Swarm, request: pytest.FixtureRequest) -> Iterator[None]:
    """On failure: the tasks, the pod's log and the node's journal (kept in a file)."""
    yield
    if item_failed(request.node) and swarm.node.running:
        tasks = swarm.node.run(["docker", "service", "ps", "--no-trunc", SERVICE],
                               check=False).stdout
        journal = swarm.node.save_diagnostics()
        print(f"--- docker service ps ---\n{tasks}\n--- service logs ---\n"
              f"{swarm.service_logs()[-4000:]}\njournal: {journal}", file=sys.stderr)


def payload_version(swarm: Swarm) -> str:
    out = swarm.node.run(["busctl", "get-property", "com.portworx.pxhostd1",
                          "/com/portworx/pxhostd1", "com.portworx.pxhostd1.Manager",
                          "PayloadVersion"]).stdout
    return out.split(" ", 1)[1].strip().strip('"')


def secret_is_nowhere_else(swarm: Swarm) -> None:
    node = swarm.node
    assert SECRET not in node.read_file(STACK_FILE)
    assert SECRET not in node.read_file(f"/etc/systemd/system/{UNIT}")
    assert SECRET not in node.run(["ps", "-eo", "args="]).stdout
    assert SECRET not in node.unit_property(UNIT, "Environment")
    assert SECRET not in swarm.docker("service", "inspect", SERVICE)
    for cid in swarm.containers():
        assert SECRET not in swarm.docker("inspect", cid)
    assert SECRET not in swarm.service_logs()
    assert SECRET not in node.journal()
    assert SECRET not in node.run(["pxhostctl", "get-spec"], user="pxuser", check=False).stdout


def test_fresh_node_with_only_the_deb_runs_the_stack(swarm: Swarm) -> None:
    node = swarm.node
    for path in BIND_SOURCES:  # made by the package: Swarm refuses a missing bind source
        assert node.exists(path), path
    assert not node.exists(f"/etc/systemd/system/{UNIT}")
    text = stack_file(node, "-c", "cluster-swarm", "-t", "x", "-e", "PX_TEST=swarm")
    assert "docker.sock" not in text and "privileged" not in text
    node.run(f"printf %s '{SECRET}' | docker secret create portworx-token -")
    swarm.deploy()
    swarm.wait_healthy()
    node.wait_active(UNIT)
    assert payload_version(swarm) == "1.0.0"
    env = service_env(node)  # the running service's own environment
    assert env.get("PX_TOKEN") == SECRET
    assert env.get("PX_TEST") == "swarm"
    assert node.run(["stat", "-c", "%a %U", ENV_FILE]).stdout.split() == ["600", "root"]
    # The pod ran over the bus: no host command, nothing Docker injected reached the unit.
    unit = node.read_file(f"/etc/systemd/system/{UNIT}")
    assert "/var/lib/docker" not in unit and "/run/secrets" not in unit
    logs = swarm.service_logs()
    assert "host access over the system bus" in logs
    assert "install: done (changed)" in logs
    secret_is_nowhere_else(swarm)
    mounts = swarm.docker("inspect", "--format", "{{json .Mounts}}", *swarm.containers())
    assert "docker.sock" not in mounts
    assert swarm.docker("inspect", "--format", "{{.HostConfig.Privileged}}",
                        *swarm.containers()).split() == ["false"]


def test_stack_rm_leaves_nothing_and_storage_keeps_running(swarm: Swarm) -> None:
    node = swarm.node
    before = invocation(node)
    swarm.remove()
    swarm.wait_gone(timeout=30)
    assert node.run(["systemctl", "is-active", UNIT]).stdout.strip() == "active"
    assert invocation(node) == before
    # Deploying again changes nothing.
    swarm.deploy()
    swarm.wait_healthy()
    assert invocation(node) == before
    assert "install: done (nothing changed)" in swarm.service_logs()


def test_image_update_to_a_newer_payload(swarm: Swarm) -> None:
    node = swarm.node
    before = invocation(node)
    swarm.docker("service", "update", "--detach", "--image",
                 "portworx/pxhostd:payload-2.0.0", SERVICE)
    swarm.wait_healthy("portworx/pxhostd:payload-2.0.0")
    wait_for(lambda: payload_version(swarm), lambda v: v == "2.0.0", timeout=60,
             what="payload 2.0.0 installed")
    node.wait_active(UNIT)
    assert invocation(node) != before
    assert service_env(node).get("PX_TOKEN") == SECRET


def test_image_update_to_a_broken_payload_keeps_the_previous_version(swarm: Swarm) -> None:
    node = swarm.node
    swarm.docker("service", "update", "--detach", "--image",
                 "portworx/pxhostd:payload-broken", SERVICE)
    # pxhostd rolls the broken release back; the task never turns healthy, Swarm kills it
    # and rolls the service back to the previous image.
    wait_for(swarm.service_logs, lambda logs: "install: failed: RolledBack" in logs,
             timeout=180, what="the broken payload rolled back by pxhostd")
    assert payload_version(swarm) == "2.0.0"
    node.wait_active(UNIT)
    restored = invocation(node)
    wait_for(lambda: swarm.docker("service", "inspect", "--format",
                                  "{{.Spec.TaskTemplate.ContainerSpec.Image}}", SERVICE),
             lambda image: image.strip().startswith("portworx/pxhostd:payload-2.0.0"),
             timeout=240, what="Swarm rolled the service back to the previous image")
    swarm.wait_healthy("portworx/pxhostd:payload-2.0.0")
    assert payload_version(swarm) == "2.0.0"
    # The rolled-back task submits the spec that runs: nothing restarts.
    assert node.run(["systemctl", "is-active", UNIT]).stdout.strip() == "active"
    assert invocation(node) == restored


def test_documented_uninstall(swarm: Swarm) -> None:
    node = swarm.node
    swarm.remove()
    swarm.wait_gone(timeout=30)
    assert node.run(["systemctl", "is-active", UNIT]).stdout.strip() == "active"
    out = swarm.docker(
        "run", "--rm", "--network", "host",
        "-v", "/run/dbus/system_bus_socket:/run/dbus/system_bus_socket",
        "-v", "/opt/pwx:/opt/pwx", "-v", "/run/pxhostd:/run/pxhostd",
        IMAGE, "--host-access=bus", "--uninstall", timeout=180,
    )
    assert "uninstall: done" in out
    assert not node.exists(f"/etc/systemd/system/{UNIT}")
    assert node.unit_property(UNIT, "LoadState") == "not-found"
    assert swarm.containers() == [] and swarm.stack_processes() == []
