"""The generated DaemonSet's pod run by podman inside a booted node, as a kubelet would.

`podman kube play` (4.3.1) ignores `hostPID` and `readinessProbe`, so the pod template is
translated into `podman run` here: privileged, hostPID, hostNetwork, every hostPath volume
with its path, readOnly and propagation, command, args and env after the kubelet's
`$(VAR)`/`$$` expansion (env from the generated Secret resolved), the hostPath types
honoured (DirectoryOrCreate made, Directory required), plus what a kubelet adds: its own
`/etc/hosts`, `/dev/termination-log`, the service-account directory (without a token: no
API server runs in the node) and `KUBERNETES_SERVICE_*`.
The readiness probe is the template's exec command, run with `podman exec`.

Machine quirks (docs/testing.md): the node boots with cgroup2 inside and podman's storage on
a plain directory; `--pids-limit=0` (no pids controller in a node); nspawn's boot-id
overmount is undone so the pod and the host read the same boot id, as on a real host.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubelet_expand import container_as_run
from nodeharness import REPO_ROOT, Node, NodeError, build_node_root

from pxhostd.manifest.model import render_yaml
from pxhostd.manifest.params import parse_params

Obj = dict[str, Any]
BUILD_IMAGE = REPO_ROOT / "scripts" / "build-image"
NODE_STORAGE = "/var/lib/containers"
POD_BASE = "/var/lib/pxpod"
#: The kubelet's root on the test nodes (the generator's default).
KUBELET_ROOT = "/var/lib/kubelet"
PROPAGATION = {"Bidirectional": "rshared", "HostToContainer": "rslave", "None": "rprivate"}


def podman_node_root() -> Path:
    return build_node_root("podman")


def build_image(deb: Path, out: Path, *, payload_version: str = "1.0.0",
                payload_flags: str = "", tag: str | None = None) -> Path:
    """`scripts/build-image` (cached by its inputs); the docker-archive's path."""
    argv = [str(BUILD_IMAGE), "--deb", str(deb), "--payload-version", payload_version,
            "--payload-flags", payload_flags, "--out", str(out)]
    if tag:
        argv += ["--tag", tag]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise NodeError(f"scripts/build-image failed (exit {proc.returncode}):\n"
                        f"{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def podman_node(root: Path, **kwargs: Any) -> Node:
    """An unstarted node that can run podman (start it, or use `with`)."""
    return Node(root, unified_cgroup=True, scratch_binds=[NODE_STORAGE], **kwargs)


def prepare_node(node: Node) -> None:
    """What a kubelet node has before the DaemonSet's pod arrives."""
    node.run("while mountpoint -q /proc/sys/kernel/random/boot_id; do "
             "umount /proc/sys/kernel/random/boot_id; done")
    node.run(["mkdir", "-p", KUBELET_ROOT + "/pods", POD_BASE])


def load_image(node: Node, tar: Path) -> str:
    """`podman load` the archive in the node; the image's name."""
    node_path = f"{POD_BASE}/{tar.name}"
    node.copy_in(tar, node_path)
    out = node.run(["podman", "load", "--quiet", "-i", node_path], timeout=300).stdout
    node.run(["rm", "-f", node_path])
    name = out.strip().splitlines()[-1].split("Loaded image:", 1)[-1].strip()
    return name.split(",")[0].strip()


def generated_manifest(pairs: list[tuple[str, str]]) -> list[Obj]:
    docs = [d for d in yaml.safe_load_all(render_yaml(parse_params(pairs))) if d]
    return docs


def only(docs: list[Obj], kind: str) -> Obj:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


@dataclass
class PodRun:
    """How one pod is run; `without_*` leave out what a broken DaemonSet would."""

    name: str
    image: str
    without_host_pid: bool = False
    without_volumes: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)


def translate(docs: list[Obj], run: PodRun, node: Node) -> list[str]:
    """`podman run` argv for the generated DaemonSet's pod (creates the kubelet's files)."""
    ds = only(docs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    secrets = [d for d in docs if d["kind"] == "Secret"]
    secret_data = secrets[0]["stringData"] if secrets else {}
    as_run = container_as_run(container, secret_data, node_name=node.name)
    pod_dir = f"{POD_BASE}/{run.name}"
    node.run(["mkdir", "-p", f"{pod_dir}/serviceaccount"])
    node.write_file(f"{pod_dir}/termination-log", "")
    node.write_file(f"{pod_dir}/etc-hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{node.name}\n")
    # No token: no API server runs here, so the pod's Kubernetes side (drain, node labels;
    # tested against an API of its own in tests/kube) says it is off, as in a cluster
    # with automountServiceAccountToken: false. The directory is still injected.
    node.write_file(f"{pod_dir}/serviceaccount/namespace", ds["metadata"]["namespace"])
    env = {**as_run["env"], "KUBERNETES_SERVICE_HOST": "10.96.0.1",
           "KUBERNETES_SERVICE_PORT": "443", "KUBERNETES_SERVICE_PORT_HTTPS": "443",
           **run.extra_env}
    env_lines = []
    for name, value in env.items():
        assert "\n" not in value, f"env {name}: podman's --env-file cannot carry a newline"
        env_lines.append(f"{name}={value}\n")
    env_file = f"{pod_dir}/env"
    node.write_file(env_file, "".join(env_lines), mode=0o600)

    argv = ["podman", "run", "--detach", "--name", run.name, "--pids-limit=0",
            "--log-driver=k8s-file", "--env-file", env_file,
            "--stop-timeout", str(pod.get("terminationGracePeriodSeconds", 30))]
    if container.get("securityContext", {}).get("privileged"):
        argv.append("--privileged")
    if pod.get("hostPID") and not run.without_host_pid:
        argv.append("--pid=host")
    if pod.get("hostNetwork"):
        argv.append("--network=host")
    volumes = {v["name"]: v["hostPath"] for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        if mount["name"] in run.without_volumes:
            continue
        host = volumes[mount["name"]]
        if host.get("type") == "DirectoryOrCreate":
            node.run(["mkdir", "-p", host["path"]])
        elif host.get("type") == "Directory":
            node.run(["test", "-d", host["path"]])  # the kubelet refuses to start otherwise
        options = ["ro" if mount.get("readOnly") else "rw"]
        options.append(PROPAGATION[mount.get("mountPropagation", "None")])
        argv += ["-v", f"{host['path']}:{mount['mountPath']}:{','.join(options)}"]
    # What a kubelet adds to every container.
    argv += ["-v", f"{pod_dir}/termination-log:/dev/termination-log:rw",
             "-v", f"{pod_dir}/etc-hosts:/etc/hosts:rw",
             "-v", f"{pod_dir}/serviceaccount:/var/run/secrets/kubernetes.io/serviceaccount:ro"]
    command = as_run["command"]
    argv += ["--entrypoint", command[0], run.image, *command[1:], *as_run["args"]]
    return argv


def probe_argv(docs: list[Obj], name: str) -> list[str]:
    """The template's readinessProbe, as the kubelet runs it: exec in the container."""
    (container,) = only(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"]
    return ["podman", "exec", name, *container["readinessProbe"]["exec"]["command"]]


def start_pod(node: Node, docs: list[Obj], run: PodRun) -> None:
    node.run(translate(docs, run, node), timeout=120)


def shell_words(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
