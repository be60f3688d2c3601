"""Turn the pod's own command line, environment and mounts into the desired spec.

As with px-oci-mon, the pod's arguments go to the storage service, except the pod's own
options (see `OWN_OPTIONS`); its environment becomes the service's, minus what belongs to
the container, Kubernetes or the pod itself (`DROPPED_ENV`); its mounts become the
service's bind mounts, minus its private ones. What Kubernetes injects on its own
(service links, KUBERNETES_*) is dropped so that a Service created elsewhere in the
namespace never changes the spec, and so never restarts storage on every node at once.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pxhostd.errors import InvalidSpec
from pxhostd.log import REDACTED, is_secret_name, redact_env
from pxhostd.pod.busaccess import HostAccess, parse_host_access
from pxhostd.pod.mounts import (
    PRIVATE_MOUNTS,
    MountEntry,
    declared_mounts,
    pod_mounts_to_spec_mounts,
)
from pxhostd.spec import rules

DEFAULT_ENDPOINT = ("127.0.0.1", 9015)

#: Mounts of the pod that never go to the service: the container's and Kubernetes' own,
#: the host hand-off paths (mounts.PRIVATE_MOUNTS) and the pod's D-Bus socket directory.
POD_PRIVATE_MOUNTS = (*PRIVATE_MOUNTS, "/run/dbus", "/var/run/dbus", "/var/run/pxhostd")

#: Environment variables of the pod that are not the service's (exact names).
DROPPED_ENV = frozenset({
    "PATH", "HOME", "HOSTNAME", "TERM", "PWD", "OLDPWD", "SHLVL", "_", "container",
    "LANG", "LANGUAGE", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID",
    "DBUS_SYSTEM_BUS_ADDRESS", "DBUS_SESSION_BUS_ADDRESS",
})
#: ... and by prefix: Kubernetes' own, pxhostd's own (the pod's settings), the image's
#: Python and locale settings (Python itself sets LC_CTYPE when it coerces the C locale).
DROPPED_ENV_PREFIXES = ("KUBERNETES_", "PXHOSTD_", "PYTHON", "LC_")
#: Kubernetes service links (enableServiceLinks): <SVC>_SERVICE_HOST, <SVC>_SERVICE_PORT*,
#: <SVC>_PORT_<n>_<PROTO>[_PROTO|_PORT|_ADDR], and <SVC>_PORT=tcp://... (matched by value).
_SERVICE_LINK_NAME = re.compile(
    r"[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT_[0-9]+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)"
)
_SERVICE_LINK_PORT = re.compile(r"[A-Z0-9_]+_PORT")
_SERVICE_LINK_VALUE = re.compile(r"(tcp|udp|sctp)://\S+")

#: Secrets the generated DaemonSet passes from its Secret (pod name -> the service's name).
#: They reach the service only through its root-only environment file (the daemon writes
#: the spec's env there, never into the unit), so never its arguments, `ps` or a log.
SECRET_ENV: Mapping[str, str] = {
    "PXHOSTD_TOKEN": "PX_TOKEN",
    "PXHOSTD_KVDB_USERPWD": "PX_KVDB_USERPWD",
    "PXHOSTD_ACLTOKEN": "PX_ACLTOKEN",
}
#: The mount points that are the service's, `:`-separated (the generator sets it; a spec
#: mount cannot hold `:`). Without it, see `spec_mounts`.
SERVICE_MOUNTS_ENV = "PXHOSTD_SERVICE_MOUNTS"

#: Payload options whose value is a secret (px-runc's token and etcd credentials), besides
#: any option whose name looks secret (log.is_secret_name).
SECRET_ARG_OPTIONS = frozenset({"-t", "--token", "-userpwd", "--userpwd", "-pwd", "--pwd"})

_log = logging.getLogger(__name__)


class UsageError(InvalidSpec):
    """The pod's own options are wrong (an InvalidSpec: the pod's arguments are its spec)."""

    name = "PodUsageError"


@dataclass(frozen=True)
class PodOptions:
    endpoint: tuple[str, int] = DEFAULT_ENDPOINT
    payload: str | None = None
    service: str | None = None
    uninstall: bool = False
    wipe: bool = False
    debug: bool = False
    #: Drain before a disruptive upgrade: every pod with Portworx volumes, not only
    #: controller-managed ones (px-oci-mon's --drain-all); and the drain's time bound.
    drain_all: bool = False
    drain_timeout: float = 600.0
    #: `--host-access`: nsenter (the DaemonSet pod, default) or bus (Docker Swarm).
    host_access: HostAccess = HostAccess.NSENTER
    #: Everything that is not the pod's own: the storage service's arguments.
    args: tuple[str, ...] = ()
    #: Old px-oci-mon options that are accepted and have no effect any more.
    ignored: tuple[str, ...] = field(default=())


def parse_endpoint(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"--endpoint: {text!r} must be ADDRESS:PORT (e.g. 127.0.0.1:9015)")
    return host.strip("[]"), int(port)


#: The pod's own options: name -> takes a value. Everything else goes to the service.
OWN_OPTIONS: Mapping[str, bool] = {
    "--endpoint": True,
    "--payload": True,
    "--service": True,
    "--uninstall": False,
    "--wipe": False,
    "--debug": False,
    "--drain-all": False,
    "--drain-timeout": True,
    "--host-access": True,
    # px-oci-mon's, accepted for old DaemonSets and ignored (see docs/pod.md):
    "--sync": False,  # pxhostd never moves a payload under a running service
    "--log": True,  # the pod logs to stdout (kubectl logs); the daemon to the journal
    "-x": True,  # `-x kubernetes`: the scheduler the monitor ran under
}
_IGNORED = frozenset({"--sync", "--log", "-x"})
#: Longest drain the pod accepts (seconds).
MAX_DRAIN_TIMEOUT = 86400.0


def split_own_options(argv: Sequence[str]) -> tuple[dict[str, str | bool], list[str], list[str]]:
    """(own options, service args, ignored legacy options); `--` ends own options."""
    own: dict[str, str | bool] = {}
    rest: list[str] = []
    ignored: list[str] = []
    i = 0
    while i < len(argv):
        item = argv[i]
        if item == "--":
            rest.extend(argv[i + 1 :])
            break
        name, eq, inline = item.partition("=")
        if name in OWN_OPTIONS and (eq == "" or OWN_OPTIONS[name]):
            if OWN_OPTIONS[name]:
                if eq:
                    value = inline
                elif i + 1 < len(argv):
                    i += 1
                    value = argv[i]
                else:
                    raise UsageError(f"{name} needs a value")
            else:
                value = ""
            if name in _IGNORED:
                ignored.append(name if name != "-x" else f"-x {value}")
            else:
                own[name] = value if OWN_OPTIONS[name] else True
        else:
            rest.append(item)
        i += 1
    return own, rest, ignored


def parse_pod_args(argv: Sequence[str]) -> PodOptions:
    own, rest, ignored = split_own_options(argv)
    endpoint = parse_endpoint(str(own["--endpoint"])) if "--endpoint" in own else DEFAULT_ENDPOINT
    payload = str(own["--payload"]) if "--payload" in own else None
    if payload is not None:
        payload = rules.check_abs_path("--payload", payload, UsageError)
    wipe = bool(own.get("--wipe", False))
    uninstall = bool(own.get("--uninstall", False))
    if wipe and not uninstall:
        raise UsageError("--wipe only goes with --uninstall")
    drain_timeout = PodOptions.drain_timeout
    if "--drain-timeout" in own:
        drain_timeout = parse_drain_timeout(str(own["--drain-timeout"]))
    try:
        host_access = parse_host_access(str(own.get("--host-access", HostAccess.NSENTER.value)))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return PodOptions(
        drain_all=bool(own.get("--drain-all", False)),
        drain_timeout=drain_timeout,
        host_access=host_access,
        endpoint=endpoint,
        payload=payload,
        service=str(own["--service"]) if "--service" in own else None,
        uninstall=uninstall,
        wipe=wipe,
        debug=bool(own.get("--debug", False)),
        args=tuple(rest),
        ignored=tuple(ignored),
    )


def parse_drain_timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_DRAIN_TIMEOUT:
        raise UsageError(f"--drain-timeout: {text!r} must be seconds, more than 0 and at most "
                         f"{MAX_DRAIN_TIMEOUT:g}")
    return value


# -- environment ---------------------------------------------------------------------------


def is_dropped_env(name: str, value: str) -> bool:
    if name in DROPPED_ENV or name.startswith(DROPPED_ENV_PREFIXES):
        return True
    if _SERVICE_LINK_NAME.fullmatch(name):
        return True
    return bool(_SERVICE_LINK_PORT.fullmatch(name) and _SERVICE_LINK_VALUE.fullmatch(value))


def spec_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The service's environment from the pod's (names the spec cannot carry are left out).

    The secrets of SECRET_ENV are passed on under their service names; a pod that also
    sets one of those names itself is refused (which value would win is not guessable).
    """
    env: dict[str, str] = {}
    for pod_name, service_name in SECRET_ENV.items():
        if pod_name in environ:
            if service_name in environ:
                raise InvalidSpec(f"env: {service_name} is set both directly and through "
                                  f"{pod_name}; keep one")
            env[service_name] = environ[pod_name]
    for name, value in sorted(environ.items()):
        if is_dropped_env(name, value):
            continue
        try:
            rules.check_env_name("env", name, InvalidSpec)
        except InvalidSpec:
            _log.warning("environment variable %r is not a valid name; not passed on", name[:64])
            continue
        env[name] = value
    return env


# -- mounts --------------------------------------------------------------------------------


def declared_service_mounts(environ: Mapping[str, str]) -> list[str] | None:
    """The mount points named in PXHOSTD_SERVICE_MOUNTS; None when it is not set."""
    raw = environ.get(SERVICE_MOUNTS_ENV)
    if raw is None:
        return None
    points: list[str] = []
    for item in raw.split(":"):
        if not item:
            continue
        point = rules.check_abs_path(SERVICE_MOUNTS_ENV, item, UsageError)
        if point not in points:
            points.append(point)
    return points


def spec_mounts(
    pod: Iterable[MountEntry],
    host: Sequence[MountEntry] | None,
    declared: Sequence[str] | None = None,
) -> list[str]:
    """The service's mounts: exactly the declared mount points, each with its host path.

    A runtime adds mounts of its own (`/run/.containerenv`, `/etc/hosts`, a kubelet's
    `/dev/termination-log` and service-account token, ...) from paths that live only as long
    as the container; none of them may reach the unit. So with a declaration only the
    declared points are taken. Without one (a DaemonSet of an older generator), only
    mounts at their own host path are taken: a runtime's injections never are (they come
    from its per-container storage), hostPath volumes at the same path are.
    """
    if declared is not None:
        return declared_mounts(pod, declared, host_entries=host)
    candidates = pod_mounts_to_spec_mounts(pod, POD_PRIVATE_MOUNTS, host_entries=host)
    kept = [m for m in candidates if _at_its_host_path(m)]
    if kept != candidates:
        _log.info("mounts left out (not mounted at their host path): %s",
                  [m for m in candidates if m not in kept])
    _log.warning("%s is not set: passing on the pod's same-path hostPath mounts %s; set it to "
                 "say which mounts are the service's", SERVICE_MOUNTS_ENV, kept)
    return kept


def _at_its_host_path(mount: str) -> bool:
    src, _, rest = mount.partition(":")
    return src == rest.partition(":")[0]


# -- the spec ------------------------------------------------------------------------------


def build_spec(
    options: PodOptions, payload: str, env: Mapping[str, str], mounts: Sequence[str]
) -> dict[str, Any]:
    """The plain spec dict the daemon's Install takes (validate with spec_from_dict)."""
    spec: dict[str, Any] = {"payload": payload}
    if options.service:
        spec["service"] = options.service
    spec["args"] = list(options.args)
    spec["env"] = dict(env)
    spec["mounts"] = list(mounts)
    return spec


def _secret_option(name: str) -> bool:
    return name in SECRET_ARG_OPTIONS or (name.startswith("-") and is_secret_name(name))


def redact_args(args: Sequence[str]) -> list[str]:
    """Arguments fit for logs: values of secret options and of secret `-e NAME=VALUE`."""
    shown: list[str] = []
    hide_next = False
    env_next = False
    for arg in args:
        if hide_next:
            shown.append(REDACTED)
            hide_next = False
            continue
        if env_next:
            env_next = False
            name, eq, _ = arg.partition("=")
            shown.append(f"{name}={REDACTED}" if eq and is_secret_name(name) else arg)
            continue
        name, eq, _ = arg.partition("=")
        if name.startswith("-") and _secret_option(name):
            if eq:
                shown.append(f"{name}={REDACTED}")
            else:
                shown.append(arg)
                hide_next = True
            continue
        if arg in ("-e", "--env"):
            env_next = True
        shown.append(arg)
    return shown


def describe_spec(spec: Mapping[str, Any]) -> list[str]:
    """Log lines that show the spec without any secret value."""
    env = redact_env(sorted(dict(spec.get("env") or {}).items()))
    lines = [
        f"spec: service {spec.get('service', 'portworx')}, payload {spec.get('payload')}",
        f"spec: args {redact_args(list(spec.get('args') or []))}",
        f"spec: env {env}",
        f"spec: mounts {list(spec.get('mounts') or [])}",
    ]
    return lines


def argparse_help() -> str:
    """Usage text for --help (the parsing itself is split_own_options)."""
    parser = argparse.ArgumentParser(
        prog="pxhostd-pod",
        description=(
            "The pxhostd DaemonSet pod: makes sure the host's pxhostd is installed and "
            "current, submits the desired spec built from this pod's arguments, environment "
            "and mounts, then stays up serving the legacy health endpoint. Arguments that "
            "are not listed here are the storage service's; `--` ends the pod's own options."
        ),
        add_help=False,
    )
    parser.add_argument("--endpoint", metavar="ADDR:PORT",
                        help="legacy health endpoint (default 127.0.0.1:9015)")
    parser.add_argument("--payload", metavar="DIR",
                        help="host path of the payload directory (default: the image's)")
    parser.add_argument("--service", metavar="NAME", help="unit name (default portworx)")
    parser.add_argument("--host-access", metavar="MODE", choices=("nsenter", "bus"),
                        help="nsenter (default: a privileged hostPID pod that installs the "
                             "host daemon) or bus (Docker Swarm: only the system bus socket, "
                             "/opt/pwx and /run/pxhostd; pxhostd from the host's package)")
    parser.add_argument("--uninstall", action="store_true",
                        help="uninstall the service (explicit request) and exit")
    parser.add_argument("--wipe", action="store_true",
                        help="with --uninstall: also remove /etc/pwx")
    parser.add_argument("--debug", action="store_true", help="debug logging")
    parser.add_argument("--drain-all", action="store_true",
                        help="a drain before a disruptive upgrade evicts every pod with "
                        "Portworx volumes, not only controller-managed ones")
    parser.add_argument("--drain-timeout", metavar="SECONDS",
                        help="bound on such a drain (default 600)")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--help", action="store_true", help="this text")
    return parser.format_help() + (
        "\nAccepted and ignored (px-oci-mon): --sync, --log FILE, -x SCHEDULER\n"
    )
