"""Object names, labels and the pod's environment contract, in one place."""

from __future__ import annotations

#: Name of the main DaemonSet, its pods' `name` label and the container (the old names,
#: so scripts that look for `name=portworx` pods keep working).
DAEMONSET = "portworx"
#: Second DaemonSet for zero-storage control-plane nodes (parameter z).
DAEMONSET_CONTROL_PLANE = "portworx-control-plane"
CONTAINER = "portworx"
SERVICE_ACCOUNT = "portworx"
CLUSTER_ROLE = "portworx-pxhostd"
CLUSTER_ROLE_BINDING = "portworx-pxhostd"
SECRET = "portworx-secrets"
#: The old REST service name; clients address the payload's API (9001) through it.
SERVICE = "portworx-service"
REST_PORT = 9001

#: Label every pxhostd pod carries; the Service selects on it.
PART_OF = {"app.kubernetes.io/part-of": "portworx"}
COMMON_LABELS = {**PART_OF, "app.kubernetes.io/name": "pxhostd"}

#: Node label honoured by the DaemonSet affinity (old semantics: `false` keeps the pod off;
#: uninstall/remove/rm still schedule it so the pod can uninstall, then it relabels false).
ENABLED_LABEL = "px/enabled"
#: Linux nodes only (the pod enters the host's mount namespace and drives systemd).
OS_SELECTOR = {"kubernetes.io/os": "linux"}
#: A namespace of our own must admit a privileged hostPID pod (Pod Security Admission).
NAMESPACE_LABELS = {"pod-security.kubernetes.io/enforce": "privileged"}
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")

#: The pod entrypoint (the image's: tini as a child subreaper reaps orphans, since under
#: hostPID the pod is not PID 1, and forwards SIGTERM to pxhostd-pod) and the probe.
ENTRYPOINT = ("tini", "-s", "--", "pxhostd-pod")
#: `--pod`: ready only when the host runs this pod's spec (docs/status-file.md).
PROBE_COMMAND = ("pxhostctl", "probe", "--pod")

#: Environment the pod reads besides its args: secrets arrive through these names (from the
#: Secret, never inline) and the pod hands them to the payload without logging them.
ENV_KVDB_USERPWD = "PXHOSTD_KVDB_USERPWD"
ENV_TOKEN = "PXHOSTD_TOKEN"
ENV_ACL_TOKEN = "PXHOSTD_ACLTOKEN"
ENV_NODE_NAME = "PXHOSTD_NODE_NAME"
#: The mount points that are the service's (`:`-separated); the pod passes on only these.
ENV_SERVICE_MOUNTS = "PXHOSTD_SERVICE_MOUNTS"

#: Keys in the Secret.
KEY_KVDB_USERPWD = "kvdb-userpwd"
KEY_TOKEN = "token"
KEY_ACL_TOKEN = "acltoken"
KEY_ENV_PREFIX = "env."
