"""A booted Docker node running a single-node Swarm, the pod images loaded: for the Swarm tests.

The node boots from the `docker` variant of the node root (scripts/build-node-root) with
what runc needs on these machines (nodeharness.DOCKER_NSPAWN_ARGS); Docker's data directory
is a scratch directory of the machine's own disk (`scratch_binds`), so Docker uses its
overlay2 driver instead of copying every layer (vfs on the node's overlay root). The images
come from scripts/build-image (`make image`): the default one with payload 1.0.0, one with
2.0.0 and one with a broken 3.0.0; `docker load -i`, no registry.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nodeharness import (
    DOCKER_NSPAWN_ARGS,
    REPO_ROOT,
    Node,
    NodeError,
    build_node_root,
    wait_for,
)

from pxhostd import __version__

STACK = "portworx"
SERVICE = f"{STACK}_portworx"
STACK_FILE = "/root/portworx-stack.yml"
IMAGE = f"portworx/pxhostd:{__version__}"
#: tag -> (payload version, extra build.py flags)
IMAGES = {
    IMAGE: ("1.0.0", ""),
    "portworx/pxhostd:payload-2.0.0": ("2.0.0", ""),
    "portworx/pxhostd:payload-broken": ("3.0.0", "--broken"),
}
BOUND = 240.0


class SwarmSetupError(NodeError):
    """The Docker node, the Swarm or an image could not be had (the test fails)."""


def build_images(out_dir: Path) -> dict[str, Path]:
    """Every test image as a docker-archive (scripts/build-image caches by content)."""
    tars: dict[str, Path] = {}
    for tag, (version, flags) in IMAGES.items():
        name = tag.rsplit(":", 1)[1]
        out = out_dir / f"pxhostd-pod-{name}.image.tar"
        argv = [str(REPO_ROOT / "scripts" / "build-image"), "--tag", tag, "--out", str(out),
                "--payload-version", version]
        if flags:
            argv += ["--payload-flags", flags]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT)
        if proc.returncode != 0:
            raise SwarmSetupError(f"scripts/build-image for {tag} failed:\n{proc.stderr[-3000:]}")
        tars[tag] = out
    return tars


@dataclass
class Swarm:
    node: Node

    def docker(self, *args: str, check: bool = True, timeout: float = 120.0) -> str:
        result = self.node.run(["docker", *args], check=check, timeout=timeout)
        return result.stdout

    def deploy(self) -> None:
        self.docker("stack", "deploy", "--resolve-image", "never", "-c", STACK_FILE, STACK)

    def remove(self) -> None:
        self.docker("stack", "rm", STACK)

    def containers(self) -> list[str]:
        """Ids of every container of the stack, running or not."""
        out = self.docker("ps", "-aq", "--filter", f"label=com.docker.swarm.service.name={SERVICE}")
        return out.split()

    def stack_processes(self) -> list[str]:
        """Processes on the node that belong to a container: the pod, its shim, its probe."""
        out = self.node.run(["ps", "-eo", "pid=,args="]).stdout
        marks = ("pxhostd-pod", "containerd-shim", "pxhostctl probe")
        return [line.strip() for line in out.splitlines() if any(m in line for m in marks)]

    def healthy_task(self, image: str) -> dict[str, str] | None:
        """The running container of the stack if it is healthy and runs `image`."""
        out = self.docker("ps", "--filter", f"label=com.docker.swarm.service.name={SERVICE}",
                          "--format", "{{json .}}")
        for line in out.splitlines():
            info: dict[str, str] = json.loads(line)
            if "(healthy)" in info.get("Status", "") and info.get("Image", "").startswith(image):
                return info
        return None

    def wait_healthy(self, image: str = IMAGE, timeout: float = BOUND) -> dict[str, str]:
        found = wait_for(lambda: self.healthy_task(image), lambda t: t is not None,
                         timeout=timeout, interval=0.5,
                         what=f"a healthy task of {SERVICE} running {image}")
        assert found is not None
        return found

    def wait_gone(self, timeout: float = 60.0) -> None:
        wait_for(lambda: (self.containers(), self.stack_processes()),
                 lambda state: state == ([], []), timeout=timeout, interval=0.2,
                 what=f"no container and no process of {STACK} left")

    def service_logs(self) -> str:
        result = self.node.run(["docker", "service", "logs", "--raw", SERVICE], check=False)
        return result.stdout + result.stderr


def _setup(node: Node, deb: Path, tars: dict[str, Path]) -> None:
    node.wait_active("docker")
    node.install_deb(deb)
    node.wait_active("pxhostd")
    node.run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"], timeout=120)
    for tag, tar in tars.items():
        target = f"/var/lib/pxnode/images/{tar.name}"
        node.copy_in(tar, target, mode=0o644)
        out = node.run(["docker", "load", "-i", target], timeout=300).stdout
        loaded = [line.split(":", 1)[1].strip() for line in out.splitlines()
                  if line.startswith("Loaded image:")]
        if len(loaded) != 1 or loaded[0].removeprefix("localhost/") != tag:
            raise SwarmSetupError(f"docker load of {tar} did not load {tag}: {out}")
        if loaded[0] != tag:
            # podman saves its local images as localhost/NAME (docs/swarm.md, "Images").
            node.run(["docker", "tag", loaded[0], tag])
        node.run(["rm", "-f", target])


@contextmanager
def swarm_node(deb: Path, tars: dict[str, Path]) -> Iterator[Swarm]:
    """A booted Docker node with pxhostd from the .deb, a Swarm, the images loaded."""
    node = Node(build_node_root("docker"), nspawn_args=DOCKER_NSPAWN_ARGS,
                scratch_binds=("/var/lib/docker",))
    try:
        node.start()
        _setup(node, deb, tars)
        yield Swarm(node)
    finally:
        node.stop()


def stack_file(node: Node, *params: str) -> str:
    """`pxhostctl spec --platform swarm PARAMS` run on the node (its installed pxhostctl)."""
    node.run(["pxhostctl", "spec", "--platform", "swarm", *params, "-o", STACK_FILE])
    return node.read_file(STACK_FILE)

