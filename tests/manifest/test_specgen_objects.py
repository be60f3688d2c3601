"""The generated objects: schema-valid for current Kubernetes, and saying what the pod needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from specgen_helpers import (
    arg_after,
    by_kind,
    container,
    env_entry,
    load_docs,
    one,
    schema_versions,
    validate_all,
)

from pxhostd import __version__
from pxhostd.errors import InvalidSpec
from pxhostd.manifest.model import build_objects, render_yaml
from pxhostd.manifest.model import names as n
from pxhostd.manifest.params import parse_params

REPO = Path(__file__).resolve().parents[2]

FULL = [
    ("c", "prod-1"), ("k", "etcd:https://10.0.0.1:2379,etcd:https://10.0.0.2:2379"),
    ("s", "/dev/sdb,/dev/sdc"), ("f", "true"), ("d", "eth1"), ("m", "eth0"), ("j", "/dev/sdj"),
    ("kbver", "1.31.2"), ("mas", "true"), ("pwd", "root:pw"), ("ca", "/etc/pwx/ca.pem"),
    ("cert", "/etc/pwx/cert.pem"), ("key", "/etc/pwx/key.pem"), ("acl", "acl-123"),
    ("t", "tok-456"), ("e", "PX_HTTP_PROXY=http://proxy:3128,REGISTRY_PASS=hunter2"),
    ("osft", "true"), ("px", "registry.example/px/pxhostd:2.0"), ("st", "k8s"),
    ("ns", "portworx"), ("type", "oci"),
]

VARIANTS = {
    "defaults": [],
    "full": FULL,
    "zero-storage": [("c", "px"), ("k", "etcd://e:2379"), ("z", "true"), ("s", "/dev/sdb")],
    "masterless-openshift": [("c", "px"), ("osft", "true"), ("mas", "false")],
}


def docs_for(pairs: list[tuple[str, str]]) -> list[dict[str, object]]:
    return load_docs(render_yaml(parse_params(pairs)))


def test_schema_versions_cover_the_three_newest() -> None:
    versions = schema_versions()
    assert len(versions) >= 3
    newest = [tuple(int(x) for x in v.split(".")) for v in versions[-3:]]
    assert newest == sorted(newest) and len(set(newest)) == 3


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_manifests_validate_against_the_kubernetes_schema(variant: str) -> None:
    docs = docs_for(VARIANTS[variant])
    validate_all(docs)


def test_yaml_text_equals_the_objects() -> None:
    for pairs in VARIANTS.values():
        p = parse_params(pairs)
        assert load_docs(render_yaml(p)) == build_objects(p)


def test_committed_daemonset_example_is_what_the_generator_produces() -> None:
    committed = (REPO / "container" / "daemonset.yaml").read_text(encoding="utf-8")
    assert committed == render_yaml(parse_params([])), (
        "container/daemonset.yaml is stale: regenerate it with "
        "`python -m pxhostd.manifest.cli -o container/daemonset.yaml`"
    )


def test_object_kinds_and_order() -> None:
    kinds = [d["kind"] for d in docs_for(FULL)]
    assert kinds == ["Namespace", "ServiceAccount", "Secret", "ClusterRole",
                     "ClusterRoleBinding", "Service", "DaemonSet"]
    assert [d["kind"] for d in docs_for([])] == ["ServiceAccount", "ClusterRole",
                                                 "ClusterRoleBinding", "Service", "DaemonSet"]


def test_a_namespace_of_our_own_comes_with_the_manifest() -> None:
    docs = docs_for([("ns", "portworx")])
    ns = one(docs, "Namespace")
    assert ns["metadata"]["name"] == "portworx"
    # A privileged hostPID pod must be admitted there (Pod Security Admission).
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    cluster_scoped = ("Namespace", "ClusterRole", "ClusterRoleBinding")
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] not in cluster_scoped
            } == {"portworx"}
    assert by_kind(docs_for([]), "Namespace") == []  # kube-system always exists


def test_header_records_version_and_parameters_without_secrets() -> None:
    text = render_yaml(parse_params(FULL))
    header = text.split("\n---\n", 1)[0]
    (line,) = [ln for ln in header.splitlines() if ln.startswith("# Parameters: ")]
    assert "pxhostd " + __version__ in header
    for shown in ('c="prod-1"', 's="/dev/sdb,/dev/sdc"', 'f="true"', 'ns="portworx"',
                  'pwd="<redacted>"', 't="<redacted>"', 'acl="<redacted>"',
                  'e="PX_HTTP_PROXY=http://proxy:3128,REGISTRY_PASS=<redacted>"'):
        assert shown in line, shown
    for secret in ("root:pw", "tok-456", "acl-123", "hunter2"):
        assert secret not in header
    assert "# Parameters: (all defaults)" in render_yaml(parse_params([]))


def test_kubelet_root_is_a_parameter() -> None:
    ds = one(docs_for([("kubelet", "/data/kubelet")]), "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    (vol,) = [v for v in pod["volumes"] if v["name"] == "kubelet"]
    (mount,) = [m for m in container(ds)["volumeMounts"] if m["name"] == "kubelet"]
    assert vol["hostPath"] == {"path": "/data/kubelet", "type": "Directory"}
    assert mount["mountPath"] == "/data/kubelet"
    assert env_entry(ds, n.ENV_SERVICE_MOUNTS)["value"] == "/data/kubelet:/var/lib/osd"
    with pytest.raises(InvalidSpec, match="kubelet: expected a normalised"):
        parse_params([("kubelet", "/data/../kubelet")])


def test_daemonset_essentials() -> None:
    ds = one(docs_for([]), "DaemonSet", n.DAEMONSET)
    assert ds["apiVersion"] == "apps/v1"
    assert ds["metadata"]["namespace"] == "kube-system"
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxUnavailable": 1}}
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["hostPID"] is True
    assert pod["terminationGracePeriodSeconds"] == 10
    assert pod["serviceAccountName"] == n.SERVICE_ACCOUNT
    c = container(ds)
    assert c["command"] == ["tini", "-s", "--", "pxhostd-pod"]
    assert c["securityContext"] == {"privileged": True}
    assert c["readinessProbe"]["exec"]["command"] == ["pxhostctl", "probe", "--pod"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    service_mounts = env_entry(ds, n.ENV_SERVICE_MOUNTS)["value"].split(":")
    assert service_mounts == ["/var/lib/kubelet", "/var/lib/osd"]
    assert "livenessProbe" not in c  # a pod restart cannot heal the payload (see docs)
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_host_mounts() -> None:
    ds = one(docs_for([]), "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    volumes = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container(ds)["volumeMounts"]}
    assert set(volumes) == set(mounts)
    pairs = {(volumes[name], m["mountPath"]) for name, m in mounts.items()}
    assert pairs == {
        ("/etc/pwx", "/etc/pwx"), ("/opt/pwx", "/opt/pwx"),
        ("/etc/systemd/system", "/etc/systemd/system"), ("/proc/1/ns", "/host_proc/1/ns"),
        ("/var/lib/kubelet", "/var/lib/kubelet"), ("/var/lib/osd", "/var/lib/osd"),
        ("/run/pxhostd", "/run/pxhostd"), ("/run/dbus", "/run/dbus"),
    }
    assert mounts["kubelet"]["mountPropagation"] == "Bidirectional"
    assert mounts["host-proc-ns"]["readOnly"] is True
    assert "readOnly" not in mounts["run-pxhostd"], "the pod takes the host lock there"
    assert "/var/run/docker.sock" not in volumes.values()


def test_args_follow_the_px_runc_convention() -> None:
    ds = one(docs_for(FULL), "DaemonSet")
    args = container(ds)["args"]
    assert arg_after(args, "-c") == ["prod-1"]
    assert arg_after(args, "-k") == ["etcd:https://10.0.0.1:2379,etcd:https://10.0.0.2:2379"]
    assert arg_after(args, "-s") == ["/dev/sdb", "/dev/sdc"]
    assert "-f" in args and "-a" not in args and "-A" not in args
    assert arg_after(args, "-d") == ["eth1"] and arg_after(args, "-m") == ["eth0"]
    assert arg_after(args, "-j") == ["/dev/sdj"]
    assert arg_after(args, "-secret_type") == ["k8s"]
    assert arg_after(args, "-ca") == ["/etc/pwx/ca.pem"]
    assert arg_after(args, "-cert") == ["/etc/pwx/cert.pem"]
    assert arg_after(args, "-key") == ["/etc/pwx/key.pem"]
    assert args[-2:] == ["-x", "kubernetes"]
    assert container(ds)["image"] == "registry.example/px/pxhostd:2.0"


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([], ["-a"]),
        ([("f", "true")], ["-A", "-f"]),
        ([("f", "false")], ["-a"]),
        ([("s", "/dev/sdb")], ["-s", "/dev/sdb"]),
    ],
)
def test_drive_selection_args(pairs: list[tuple[str, str]], expected: list[str]) -> None:
    args = container(one(docs_for(pairs), "DaemonSet"))["args"]
    drive_flags = [a for a in args if a in ("-a", "-A", "-f", "-s", "/dev/sdb")]
    assert drive_flags == expected


def test_no_kvdb_means_the_built_in_kvdb() -> None:
    args = container(one(docs_for([]), "DaemonSet"))["args"]
    assert "-b" in args and "-k" not in args


def test_secrets_live_only_in_the_secret() -> None:
    text = render_yaml(parse_params(FULL))
    docs = load_docs(text)
    secret = one(docs, "Secret", n.SECRET)
    assert secret["stringData"] == {
        "kvdb-userpwd": "root:pw", "token": "tok-456", "acltoken": "acl-123",
        "env.REGISTRY_PASS": "hunter2",
    }
    ds = one(docs, "DaemonSet")
    others = [d for d in docs if d is not secret]
    for value in ("root:pw", "tok-456", "acl-123", "hunter2"):
        assert value not in yaml.safe_dump_all(others)
        assert text.count(value) == 1
    for env_name, key in ((n.ENV_KVDB_USERPWD, "kvdb-userpwd"), (n.ENV_TOKEN, "token"),
                          (n.ENV_ACL_TOKEN, "acltoken"), ("REGISTRY_PASS", "env.REGISTRY_PASS")):
        assert env_entry(ds, env_name) == {
            "name": env_name, "valueFrom": {"secretKeyRef": {"name": n.SECRET, "key": key}}
        }
    assert env_entry(ds, "PX_HTTP_PROXY") == {"name": "PX_HTTP_PROXY", "value": "http://proxy:3128"}
    assert env_entry(ds, n.ENV_NODE_NAME)["valueFrom"] == {
        "fieldRef": {"fieldPath": "spec.nodeName"}
    }


POD_GRANTS = {
    ("", "nodes", "get"), ("", "nodes", "watch"), ("", "nodes", "patch"),
    ("", "pods", "list"), ("", "persistentvolumeclaims", "get"),
    ("", "persistentvolumes", "get"), ("", "pods/eviction", "create"),
}


def grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(r["apiGroups"][0], res, verb)
            for r in role["rules"] for res in r["resources"] for verb in r["verbs"]}


def test_rbac_is_only_what_the_pod_uses() -> None:
    """The drain and node-label calls (tests/kube/test_kube_rbac.py holds them together
    with the code's calls); everything else goes over the system bus."""
    docs = docs_for([])
    role = one(docs, "ClusterRole")
    assert grants(role) == POD_GRANTS
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_openshift_adds_only_the_privileged_scc() -> None:
    docs = docs_for([("osft", "true")])
    role = one(docs, "ClusterRole")
    assert grants(role) == POD_GRANTS | {("security.openshift.io", "securitycontextconstraints",
                                          "use")}
    assert role["rules"][-1] == {
        "apiGroups": ["security.openshift.io"], "resources": ["securitycontextconstraints"],
        "verbs": ["use"], "resourceNames": ["privileged"],
    }
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": n.SERVICE_ACCOUNT, "namespace": "kube-system"}
    ]


def test_service_selects_every_pxhostd_pod() -> None:
    docs = docs_for(VARIANTS["zero-storage"])
    svc = one(docs, "Service", n.SERVICE)
    assert svc["spec"]["ports"][0]["port"] == 9001
    selector = svc["spec"]["selector"].items()
    for ds in by_kind(docs, "DaemonSet"):
        assert selector <= ds["spec"]["template"]["metadata"]["labels"].items()


def _terms(ds: dict[str, object]) -> list[list[dict[str, object]]]:
    aff = ds["spec"]["template"]["spec"]["affinity"]  # type: ignore[index]
    terms = aff["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    return [t["matchExpressions"] for t in terms["nodeSelectorTerms"]]


ENABLED = {"key": "px/enabled", "operator": "NotIn", "values": ["false"]}


def test_affinity_honours_px_enabled_and_masters() -> None:
    workers = one(docs_for([]), "DaemonSet")
    assert _terms(workers) == [[
        ENABLED,
        {"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"},
        {"key": "node-role.kubernetes.io/master", "operator": "DoesNotExist"},
    ]]
    assert "tolerations" not in workers["spec"]["template"]["spec"]
    everywhere = one(docs_for([("mas", "true")]), "DaemonSet")
    assert _terms(everywhere) == [[ENABLED]]
    tolerated = {t["key"] for t in everywhere["spec"]["template"]["spec"]["tolerations"]}
    assert tolerated == {"node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"}


def test_zero_storage_control_plane_gets_its_own_daemonset() -> None:
    docs = docs_for(VARIANTS["zero-storage"])
    workers = one(docs, "DaemonSet", n.DAEMONSET)
    masters = one(docs, "DaemonSet", n.DAEMONSET_CONTROL_PLANE)
    assert "-z" not in container(workers)["args"]
    assert arg_after(container(workers)["args"], "-s") == ["/dev/sdb"]
    m_args = container(masters)["args"]
    assert "-z" in m_args and "-s" not in m_args
    assert all(ENABLED in term for term in _terms(masters))
    assert {term[1]["operator"] for term in _terms(masters)} == {"Exists"}
    assert workers["spec"]["selector"] != masters["spec"]["selector"]


def test_header_carries_warnings_as_comments_only() -> None:
    p = parse_params([("stork", "true"), ("x\n---\nkind: Evil", "1")], strict=False)
    text = render_yaml(p)
    header = text.split("\n---\n", 1)[0].splitlines()
    assert all(line.startswith("# ") for line in header)
    assert any("Stork scheduler extender" in line for line in header)
    assert [d["kind"] for d in load_docs(text)].count("Evil") == 0
