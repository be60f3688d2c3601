"""The generator's parameters: names (old query names and aliases), parsing and validation.

One table (`PARAMS`) drives the HTTP service, the CLI, the web form and the docs, so a
name accepted in one place is accepted everywhere. Parsing collects every problem and
raises one InvalidSpec listing them all; obsolete options become warnings, never silence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from pxhostd import __version__
from pxhostd.errors import InvalidSpec
from pxhostd.manifest import values as v
from pxhostd.manifest.values import KubeVersion, show
from pxhostd.spec import rules

#: Oldest Kubernetes minor the manifests are written for (apps/v1, policy/v1 eviction,
#: the `node-role.kubernetes.io/control-plane` taint; the `master` taint is gone).
MIN_KUBE_VERSION = (1, 25)

DEFAULT_CLUSTER = "px-cluster"
DEFAULT_NAMESPACE = "kube-system"
DEFAULT_IMAGE = f"portworx/pxhostd:{__version__}"
DEFAULT_KUBELET_ROOT = "/var/lib/kubelet"


class Status(Enum):
    SUPPORTED = "supported"
    NEW = "new"
    OBSOLETE = "obsolete"


@dataclass(frozen=True)
class ParamDef:
    """One parameter: its field in ManifestParams, every accepted name, parser and help."""

    field: str
    short: str
    aliases: tuple[str, ...]
    cli: str
    parse: Callable[[str, str], Any]
    help: str
    status: Status = Status.SUPPORTED
    is_list: bool = False
    is_bool: bool = False
    secret: bool = False
    form: bool = True
    #: A fixed set of values (the form shows a choice); empty: free text.
    choices: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.short, *self.aliases, self.cli)


def _type(name: str, value: str) -> str:
    word = value.strip().lower()
    if word in ("oci", "runc"):
        return "oci"
    if word.startswith("dock"):
        raise ValueError(
            f"{name}: the docker install type is no longer supported; pxhostd runs the "
            "payload as an OCI bundle under the host's systemd (type=oci, the default)"
        )
    raise ValueError(f"{name}: expected oci (or its old name runc), got {show(value)}")


PLATFORMS = ("kubernetes", "swarm")


def _platform(name: str, value: str) -> str:
    word = value.strip().lower()
    if word in ("kubernetes", "k8s"):
        return "kubernetes"
    if word in ("swarm", "docker-swarm"):
        return "swarm"
    raise ValueError(f"{name}: expected kubernetes or swarm, got {show(value)}")


PARAMS: tuple[ParamDef, ...] = (
    ParamDef("platform", "platform", (), "platform", _platform,
             "kubernetes (default: the DaemonSet manifests) or swarm (a compose file for "
             "docker stack deploy; see pxhostd-specgen(1))", status=Status.NEW, choices=PLATFORMS),
    ParamDef("cluster", "c", ("cluster",), "cluster", v.parse_cluster_name,
             f"Portworx cluster name: letters, digits, '-', '_', '.', at most 63 (default "
             f"{DEFAULT_CLUSTER})"),
    ParamDef("kvdb", "k", ("kvdb",), "kvdb", v.parse_kvdb_urls,
             "kvdb endpoints, comma separated: etcd://host:2379, etcd:https://host:2379, "
             "consul:http://host:8500 (empty: Portworx's built-in kvdb)", is_list=True),
    ParamDef("drives", "s", ("drives",), "drives", v.parse_path_list,
             "storage devices, comma separated (/dev/sdb,/dev/sdc); empty: all unused drives",
             is_list=True),
    ParamDef("data_iface", "d", ("diface", "dataiface"), "data-iface", v.parse_iface,
             "network interface for data traffic"),
    ParamDef("mgmt_iface", "m", ("miface", "mgmtiface"), "mgmt-iface", v.parse_iface,
             "network interface for management traffic"),
    ParamDef("journal", "j", ("journalDev",), "journal", v.parse_journal,
             "journal device (absolute path) or auto"),
    ParamDef("kube_version", "kbver", ("k8sVersion", "kubever"), "kube-version",
             v.parse_kube_version,
             "Kubernetes version of the cluster (checked against the supported range)"),
    ParamDef("masters", "mas", ("master",), "masters", v.parse_bool,
             "also run on control-plane (master) nodes", is_bool=True),
    ParamDef("zero_storage", "z", ("zeroStorage",), "zero-storage-masters", v.parse_bool,
             "control-plane nodes join without storage (a second DaemonSet with -z)",
             is_bool=True),
    ParamDef("force", "f", ("force",), "force", v.parse_bool,
             "use drives even if they hold a filesystem (-f; with no drives: -A -f)",
             is_bool=True),
    ParamDef("etcd_userpwd", "pwd", ("etcdPasswd", "userpwd"), "etcd-userpwd", v.parse_userpwd,
             "etcd user:password (goes into a Secret)", secret=True),
    ParamDef("etcd_ca", "ca", ("etcdCa",), "etcd-ca", v.parse_abs_path,
             "path on the host of the etcd CA certificate"),
    ParamDef("etcd_cert", "cert", ("etcdCert",), "etcd-cert", v.parse_abs_path,
             "path on the host of the etcd client certificate"),
    ParamDef("etcd_key", "key", ("etcdKey",), "etcd-key", v.parse_abs_path,
             "path on the host of the etcd client key"),
    ParamDef("acl_token", "acl", ("acltoken",), "acl-token", v.parse_secret,
             "Consul ACL token (goes into a Secret)", secret=True),
    ParamDef("token", "t", ("token",), "token", v.parse_secret,
             "Portworx join token (goes into a Secret)", secret=True),
    ParamDef("env", "e", ("env",), "env", v.parse_env_list,
             "extra environment, comma separated NAME=VALUE (secret-looking names go into "
             "the Secret)", is_list=True),
    ParamDef("openshift", "osft", ("openshift",), "openshift", v.parse_bool,
             "OpenShift: let the service account use the privileged SCC", is_bool=True),
    ParamDef("image", "px", ("pximage",), "image", v.parse_image,
             f"pod image with pxhostd and the payload (default {DEFAULT_IMAGE})"),
    ParamDef("secret_type", "st", ("secretType",), "secret-type", v.parse_secret_type,
             "Portworx secret store (k8s, vault, aws-kms, ...)"),
    ParamDef("namespace", "ns", ("namespace",), "namespace", v.parse_dns_label,
             f"namespace of the DaemonSet (default {DEFAULT_NAMESPACE})", status=Status.NEW),
    ParamDef("kubelet_root", "kubelet", ("kubeletDir",), "kubelet-root", v.parse_host_dir,
             f"the kubelet's root directory on the nodes (default {DEFAULT_KUBELET_ROOT}); "
             "passed on to the service", status=Status.NEW),
    ParamDef("runtime_type", "type", ("installType",), "type", _type,
             "install type: oci (default; runc is the same); docker is no longer supported",
             form=False),
    ParamDef("stork", "stork", (), "stork", v.parse_bool,
             "obsolete: the Stork scheduler extender is not generated", status=Status.OBSOLETE,
             is_bool=True, form=False),
    ParamDef("coreos", "coreos", ("co",), "coreos", v.parse_bool,
             "obsolete: only affected the docker install type", status=Status.OBSOLETE,
             is_bool=True, form=False),
)

BY_NAME: dict[str, ParamDef] = {name: p for p in PARAMS for name in p.names}
BY_FIELD: dict[str, ParamDef] = {p.field: p for p in PARAMS}


@dataclass(frozen=True)
class ManifestParams:
    """Everything the manifests depend on, validated and typed."""

    platform: str = "kubernetes"
    cluster: str = DEFAULT_CLUSTER
    kvdb: tuple[str, ...] = ()
    drives: tuple[str, ...] = ()
    data_iface: str | None = None
    mgmt_iface: str | None = None
    journal: str | None = None
    kube_version: KubeVersion | None = None
    masters: bool = False
    zero_storage: bool = False
    force: bool = False
    etcd_userpwd: str | None = None
    etcd_ca: str | None = None
    etcd_cert: str | None = None
    etcd_key: str | None = None
    acl_token: str | None = None
    token: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    openshift: bool = False
    image: str = DEFAULT_IMAGE
    secret_type: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    kubelet_root: str = DEFAULT_KUBELET_ROOT
    runtime_type: str = "oci"
    stork: bool = False
    coreos: bool = False
    #: Messages about obsolete or ignored input; shown in the YAML header, HTTP headers, stderr.
    warnings: tuple[str, ...] = field(default=(), compare=False)


#: Environment names the generator sets itself (the pod's secret hand-over and node name).
RESERVED_ENV_PREFIX = "PXHOSTD_"

_STORK_WARNING = (
    "stork: the Stork scheduler extender is not generated: kube-scheduler policy files "
    "were removed from Kubernetes (1.23); install Stork from its own manifests if needed"
)
_PVC_CONTROLLER_WARNING = (
    "{name}: the portworx-pvc-controller Deployment is not generated: the in-tree Portworx "
    "volume plugin is superseded by CSI on current Kubernetes; install the Portworx CSI driver"
)
#: Parameters that mean something only on Kubernetes: with platform=swarm, a warning.
_KUBERNETES_ONLY = ("namespace", "kube_version", "masters", "zero_storage", "openshift")
_COREOS_WARNING = (
    "coreos: ignored: it only chose a kernel-header mount for the retired docker install type"
)


class InvalidParams(InvalidSpec):
    """Bad generator parameters: the one message, and each problem by the field it is about.

    `by_field` maps a ManifestParams field to its messages (what the web form shows next to
    that field); problems about no single field (unknown names) are only in the message.
    """

    def __init__(self, problems: Sequence[tuple[str | None, str]]) -> None:
        super().__init__("invalid parameters:\n  " + "\n  ".join(m for _, m in problems))
        self.by_field: dict[str, list[str]] = {}
        for key, message in problems:
            if key is not None:
                self.by_field.setdefault(key, []).append(message)


#: (field or None, message): one problem found while parsing.
Problem = tuple[str | None, str]


def parse_params(pairs: Iterable[tuple[str, str]], *, strict: bool = True) -> ManifestParams:
    """Turn (name, value) pairs from a query string or CLI into ManifestParams.

    Empty values mean "not given" (an HTML form sends every field). A parameter given
    twice is an error, except list parameters whose values are joined. Unknown names are
    an error in strict mode and a warning otherwise. Every problem is collected into one
    InvalidParams.
    """
    errors: list[Problem] = []
    warnings: list[str] = []
    seen: dict[str, str] = {}
    values: dict[str, Any] = {}
    unknown: list[str] = []
    for name, raw in pairs:
        param = BY_NAME.get(name)
        if param is None:
            unknown.append(name)
            continue
        if raw == "":
            continue
        label = name if name == param.short else f"{name} ({param.short})"
        if param.field in seen and not param.is_list:
            errors.append(
                (param.field, f"{label}: given more than once (also as {seen[param.field]})")
            )
            continue
        seen[param.field] = name
        try:
            parsed = param.parse(label, raw)
        except ValueError as exc:
            errors.append((param.field, str(exc)))
            continue
        if param.is_list:
            values[param.field] = [*values.get(param.field, []), *parsed]
        else:
            values[param.field] = parsed
    if unknown:
        names = ", ".join(show(n, 30) + _nearest(n) for n in unknown)
        if strict:
            errors.append((None, f"unknown parameter(s): {names}"))
        else:
            warnings.append(f"ignored unknown parameter(s): {names}")
    _check_combinations(values, errors, warnings)
    if errors:
        raise InvalidParams(errors)
    fields: dict[str, Any] = {
        k: tuple(val) if isinstance(val, list) else val for k, val in values.items()
    }
    return replace(ManifestParams(**fields), warnings=tuple(warnings))


def _nearest(name: str) -> str:
    """A " (did you mean ...?)" hint for a near miss of a known name; "" otherwise."""
    close = rules.nearest(name, BY_NAME, cutoff=0.75)
    return f" (did you mean {close!r}?)" if close else ""


def _check_combinations(
    values: dict[str, Any], errors: list[Problem], warnings: list[str]
) -> None:
    version: KubeVersion | None = values.get("kube_version")
    if version is not None:
        if version.minor_version < MIN_KUBE_VERSION:
            oldest = ".".join(str(n) for n in MIN_KUBE_VERSION)
            errors.append((
                "kube_version",
                f"kbver: Kubernetes {version.major}.{version.minor} is older than the oldest "
                f"supported version {oldest}",
            ))
        if version.is_gke:
            warnings.append(_PVC_CONTROLLER_WARNING.format(name="kbver (GKE)"))
    if values.get("zero_storage") and values.get("masters") is False:
        errors.append(
            ("zero_storage", "z: zero-storage control-plane nodes need mas (masters) not set "
             "to false")
        )
    names = [key for key, _ in values.get("env", [])]
    for key in sorted({k for k in names if names.count(k) > 1}):
        errors.append(("env", f"e: environment variable {key} given more than once"))
    for key in names:
        if key.startswith(RESERVED_ENV_PREFIX) or key == "PATH":
            errors.append(("env", f"e: environment variable {key} is reserved for the pod itself"))
    if values.get("platform") == "swarm":
        for key in _KUBERNETES_ONLY:
            if key in values:
                warnings.append(
                    f"{BY_FIELD[key].short}: only for Kubernetes; ignored for Docker Swarm (the "
                    "service runs on every node; use placement constraints to choose)"
                )
    if values.get("stork"):
        warnings.append(_STORK_WARNING)
    if values.get("openshift"):
        warnings.append(_PVC_CONTROLLER_WARNING.format(name="osft"))
    if values.get("coreos"):
        warnings.append(_COREOS_WARNING)
