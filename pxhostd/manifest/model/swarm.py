"""The Docker Swarm output: one compose file for `docker stack deploy -c FILE STACK`.

One global service on the host network runs `pxhostd-pod --host-access=bus` with only the
three host paths it needs (the system bus socket, /opt/pwx, /run/pxhostd); the host has
pxhostd from its package. Secrets are external Docker secrets with fixed names (created by
the administrator, never written into the file), read by the pod from /run/secrets.

Every value reaches the file through the YAML serializer. Two more expansions happen after
YAML and are escaped here: `docker stack deploy` interpolates `$VAR`/`${VAR}` in every
value (`$$` is a literal `$`), and Swarm expands Go templates (`{{...}}`) in environment
values (`{{"{{"}}` is a literal `{{`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pxhostd import __version__
from pxhostd.log import is_secret_name
from pxhostd.manifest.model import names as n
from pxhostd.manifest.model.daemonset import payload_args
from pxhostd.manifest.model.generate import render_commented
from pxhostd.manifest.params import ManifestParams
from pxhostd.pod.dockersecrets import ENV_SECRET_PREFIX

Obj = dict[str, Any]

#: Compose file format understood by `docker stack deploy` since Docker 19.03.
COMPOSE_VERSION = "3.8"
SERVICE = "portworx"
#: Generator field -> external Docker secret name (= file under /run/secrets).
SECRET_NAMES: Mapping[str, str] = {
    "token": "portworx-token",
    "etcd_userpwd": "portworx-kvdb-userpwd",
    "acl_token": "portworx-acltoken",
}
#: The three host paths of the bus mode; Swarm refuses a missing bind source, so the
#: pxhostd package creates each of them (units/pxhostd.tmpfiles).
BIND_PATHS = ("/run/dbus/system_bus_socket", "/opt/pwx", "/run/pxhostd")
#: The task's health: the host runs this task's own submitted spec (`probe --pod`), so a
#: task whose install failed or was rolled back is unhealthy and an update rolls back.
HEALTH_TEST = ("pxhostctl", "probe", "--pod")
#: Swarm kills a task that turns unhealthy (it has no "unready"), and only then does an
#: update with a broken payload fail and roll back, so the checks are frequent. Killing a
#: task during a long first install is harmless: the install is pxhostd's transaction, it
#: goes on, and the next task waits for it and finds its spec applied.
HEALTH = {"interval": "5s", "timeout": "5s", "retries": 3, "start_period": "30s"}
#: After each node's task is updated Swarm watches it this long before the next node.
MONITOR = "30s"
#: The pod exits 0 within 2 s of SIGTERM; storage is not touched.
STOP_GRACE = "10s"


def compose_escape(value: str) -> str:
    """A literal value for `docker stack deploy`: every `$` doubled (no interpolation)."""
    return value.replace("$", "$$")


def template_escape(value: str) -> str:
    """A literal value for Swarm's Go templates in env values: `{{` becomes `{{"{{"}}`."""
    return value.replace("{{", '{{"{{"}}')


def secret_names(p: ManifestParams) -> list[str]:
    """The external Docker secrets the stack uses, in a fixed order."""
    found = [name for field, name in SECRET_NAMES.items() if getattr(p, field) is not None]
    found += [ENV_SECRET_PREFIX + key for key, _ in p.env if is_secret_name(key)]
    return found


def pod_command(p: ManifestParams) -> list[str]:
    """The pod's arguments: the bus mode, then the service's args as on Kubernetes."""
    args = payload_args(p)
    if args[-2:] == ["-x", "kubernetes"]:  # the pod ignores -x; no scheduler to name
        args = args[:-2]
    return ["--host-access=bus", *args]


def pod_environment(p: ManifestParams) -> Obj:
    env: Obj = {n.ENV_NODE_NAME: "{{.Node.Hostname}}"}  # a Swarm template, on purpose
    for key, value in p.env:
        if not is_secret_name(key):
            env[key] = compose_escape(template_escape(value))
    return env


def service(p: ManifestParams) -> Obj:
    secrets = [
        {"source": name, "target": name, "uid": "0", "gid": "0", "mode": 0o400}
        for name in secret_names(p)
    ]
    svc: Obj = {
        "image": compose_escape(p.image),
        "entrypoint": list(n.ENTRYPOINT),
        "command": [compose_escape(arg) for arg in pod_command(p)],
        "environment": pod_environment(p),
        "networks": ["hostnet"],
        "volumes": [{"type": "bind", "source": path, "target": path} for path in BIND_PATHS],
        "healthcheck": {"test": ["CMD", *HEALTH_TEST], **HEALTH},
        "stop_signal": "SIGTERM",
        "stop_grace_period": STOP_GRACE,
        "deploy": {
            "mode": "global",
            "restart_policy": {"condition": "any", "delay": "5s"},
            "update_config": {
                "parallelism": 1, "delay": "0s", "order": "stop-first",
                "failure_action": "rollback", "monitor": MONITOR,
            },
            "rollback_config": {
                "parallelism": 1, "delay": "0s", "order": "stop-first",
                "failure_action": "pause", "monitor": MONITOR,
            },
            "placement": {"constraints": ["node.platform.os == linux"]},
            "labels": dict(n.COMMON_LABELS),
        },
    }
    if secrets:
        svc["secrets"] = secrets
    return svc


def compose(p: ManifestParams) -> Obj:
    doc: Obj = {
        "version": COMPOSE_VERSION,
        "services": {SERVICE: service(p)},
        "networks": {"hostnet": {"external": True, "name": "host"}},
    }
    names = secret_names(p)
    if names:
        doc["secrets"] = {name: {"external": True} for name in names}
    return doc


def header_lines(p: ManifestParams) -> list[str]:
    lines = [
        f"pxhostd {__version__}: Docker Swarm stack for pxhostd's node monitor (generated; "
        "edit the parameters, not this file).",
        "First install the pxhostd package on every node (docs/swarm.md).",
    ]
    names = secret_names(p)
    if names:
        lines.append("Create these secrets first (values are never written here), e.g.:")
        lines += [f"  printf %s VALUE | docker secret create {name} -" for name in names]
    lines.append("Deploy with: docker stack deploy -c <this file> portworx")
    lines += [f"WARNING: {w}" for w in p.warnings]
    return lines


def render_compose(p: ManifestParams) -> str:
    return render_commented(header_lines(p), compose(p))
