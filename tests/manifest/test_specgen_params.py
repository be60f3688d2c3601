"""Parameter parsing: names and aliases, booleans, versions, lists, strictness, obsolete options."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pxhostd.errors import InvalidSpec
from pxhostd.manifest.params import (
    BY_NAME,
    DEFAULT_CLUSTER,
    DEFAULT_IMAGE,
    DEFAULT_NAMESPACE,
    MIN_KUBE_VERSION,
    PARAMS,
    Status,
    parse_params,
)
from pxhostd.manifest.values import KubeVersion, parse_bool, parse_kube_version, show


def parse(**kv: str) -> object:
    return parse_params(list(kv.items()))


def error_of(pairs: list[tuple[str, str]], *, strict: bool = True) -> str:
    with pytest.raises(InvalidSpec) as info:
        parse_params(pairs, strict=strict)
    return str(info.value)


# --- names -------------------------------------------------------------------------------------


def test_every_name_belongs_to_exactly_one_parameter() -> None:
    seen: dict[str, str] = {}
    for param in PARAMS:
        for name in set(param.names):
            assert name not in seen, f"{name} used by {seen[name]} and {param.field}"
            seen[name] = param.field
    assert seen == {name: p.field for name, p in BY_NAME.items()}


# The names px-spec-websvc accepted (query names and their deprecated long aliases).
OLD_NAMES = {
    "c": "cluster", "cluster": "cluster", "k": "kvdb", "kvdb": "kvdb", "s": "drives",
    "drives": "drives", "d": "data_iface", "diface": "data_iface", "m": "mgmt_iface",
    "miface": "mgmt_iface", "kbver": "kube_version", "k8sVersion": "kube_version",
    "mas": "masters", "master": "masters", "z": "zero_storage", "zeroStorage": "zero_storage",
    "f": "force", "force": "force", "pwd": "etcd_userpwd", "etcdPasswd": "etcd_userpwd",
    "ca": "etcd_ca", "etcdCa": "etcd_ca", "cert": "etcd_cert", "etcdCert": "etcd_cert",
    "key": "etcd_key", "etcdKey": "etcd_key", "acl": "acl_token", "acltoken": "acl_token",
    "t": "token", "token": "token", "e": "env", "env": "env", "osft": "openshift",
    "openshift": "openshift", "px": "image", "pximage": "image", "st": "secret_type",
    "secretType": "secret_type", "j": "journal", "journalDev": "journal", "stork": "stork",
    "type": "runtime_type", "installType": "runtime_type", "coreos": "coreos",
}


@pytest.mark.parametrize(("name", "field"), sorted(OLD_NAMES.items()))
def test_old_names_are_accepted(name: str, field: str) -> None:
    assert BY_NAME[name].field == field


def test_defaults() -> None:
    p = parse_params([])
    assert (p.cluster, p.namespace, p.image) == (DEFAULT_CLUSTER, DEFAULT_NAMESPACE, DEFAULT_IMAGE)
    assert p.kvdb == () and p.drives == () and p.warnings == ()
    assert not (p.masters or p.zero_storage or p.force or p.openshift or p.stork)


def test_short_and_long_alias_give_the_same_result() -> None:
    short = parse_params([("c", "px1"), ("k", "etcd://a:2379"), ("d", "eth1"), ("mas", "yes")])
    long = parse_params(
        [("cluster", "px1"), ("kvdb", "etcd://a:2379"), ("diface", "eth1"), ("master", "yes")]
    )
    assert short == long
    assert short.cluster == "px1" and short.data_iface == "eth1" and short.masters is True


def test_empty_values_mean_not_given() -> None:
    assert parse_params([("c", ""), ("f", ""), ("s", "")]) == parse_params([])


def test_the_same_parameter_twice_is_an_error() -> None:
    message = error_of([("c", "a"), ("cluster", "b")])
    assert "cluster (c): given more than once (also as c)" in message


def test_list_parameters_given_twice_are_joined() -> None:
    p = parse_params([("s", "/dev/sdb"), ("drives", "/dev/sdc,/dev/sdd")])
    assert p.drives == ("/dev/sdb", "/dev/sdc", "/dev/sdd")


# --- strictness ----------------------------------------------------------------------------------


def test_unknown_names_are_rejected_in_strict_mode() -> None:
    message = error_of([("c", "a"), ("bogus", "1"), ("Cluster", "x")])
    assert 'unknown parameter(s): "bogus", "Cluster"' in message


@pytest.mark.parametrize(("typo", "meant"), [
    ("kbvr", "kbver"), ("Cluster", "cluster"), ("drive", "drives"), ("namespce", "namespace"),
    ("k8sversion", "k8sVersion"), ("zeroStorag", "zeroStorage"),
])
def test_unknown_names_suggest_the_nearest_known_one(typo: str, meant: str) -> None:
    assert f"{show(typo, 30)} (did you mean {meant!r}?)" in error_of([(typo, "1")])
    lenient = parse_params([(typo, "1")], strict=False)
    assert lenient.warnings == (
        f"ignored unknown parameter(s): {show(typo, 30)} (did you mean {meant!r}?)",)


def test_far_off_names_suggest_nothing() -> None:
    assert "did you mean" not in error_of([("colour", "blue"), ("bogus", "1")])


def test_unknown_names_are_warnings_when_not_strict() -> None:
    p = parse_params([("c", "a"), ("bogus\n---", "1")], strict=False)
    assert p.cluster == "a"
    assert p.warnings == ('ignored unknown parameter(s): "bogus\\n---"',)


def test_all_problems_are_reported_together() -> None:
    message = error_of([("f", "maybe"), ("kbver", "1.x"), ("d", "eth 0"), ("nope", "")])
    for part in ("f: expected a boolean", "kbver: expected a Kubernetes version",
                 "d: expected a network interface name", 'unknown parameter(s): "nope"'):
        assert part in message


# --- booleans ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["true", "TRUE", "1", "yes", "Yes", "on", "y", "t"])
def test_true_words(text: str) -> None:
    assert parse_bool("f", text) is True


@pytest.mark.parametrize("text", ["false", "False", "0", "no", "NO", "off", "n", "f"])
def test_false_words(text: str) -> None:
    assert parse_bool("f", text) is False


@pytest.mark.parametrize("text", ["maybe", "2", "tru", "yes please", "-1", "{{true}}"])
def test_garbage_booleans_are_errors(text: str) -> None:
    with pytest.raises(ValueError, match="f: expected a boolean"):
        parse_bool("f", text)


def test_false_is_false_unlike_the_old_service() -> None:
    # px-spec-websvc tested `len(p.Force) != 0`, so f=false forced drives.
    p = parse_params([("f", "false"), ("mas", "no"), ("osft", "0"), ("stork", "false")])
    assert (p.force, p.masters, p.openshift, p.stork) == (False, False, False, False)
    assert p.warnings == ()


# --- versions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.30", KubeVersion(1, 30, 0, "")),
        ("v1.30.2", KubeVersion(1, 30, 2, "")),
        ("1.27.3-gke.100", KubeVersion(1, 27, 3, "-gke.100")),
        ("1.29.1+k3s1", KubeVersion(1, 29, 1, "+k3s1")),
        (" 1.31.0 ", KubeVersion(1, 31, 0, "")),
    ],
)
def test_kube_versions_parse(text: str, expected: KubeVersion) -> None:
    assert parse_kube_version("kbver", text) == expected


def test_versions_compare_numerically() -> None:
    assert parse_kube_version("v", "1.10") > parse_kube_version("v", "1.7")
    assert parse_kube_version("v", "1.100.0") > parse_kube_version("v", "1.99.9")
    assert parse_kube_version("v", "1.30.10") > parse_kube_version("v", "1.30.9")
    assert "1.10" < "1.7"  # the string comparison the old service used


@given(
    st.tuples(st.integers(1, 9), st.integers(0, 999), st.integers(0, 999)),
    st.tuples(st.integers(1, 9), st.integers(0, 999), st.integers(0, 999)),
)
def test_version_order_is_numeric_order(a: tuple[int, int, int], b: tuple[int, int, int]) -> None:
    va = parse_kube_version("v", ".".join(map(str, a)))
    vb = parse_kube_version("v", ".".join(map(str, b)))
    assert (va < vb) == (a < b)


@pytest.mark.parametrize("text", ["1", "1.x", "one.two", "1.30.2.4", "1.30 beta", "{{1.30}}"])
def test_bad_versions_are_errors(text: str) -> None:
    assert "kbver: expected a Kubernetes version" in error_of([("kbver", text)])


def test_versions_older_than_supported_are_errors() -> None:
    major, minor = MIN_KUBE_VERSION
    message = error_of([("kbver", f"{major}.{minor - 1}.9")])
    assert f"older than the oldest supported version {major}.{minor}" in message
    assert parse_params([("kbver", f"{major}.{minor}")]).kube_version == KubeVersion(major, minor)
    # 1.7 < 1.25 numerically; compared as strings "1.7" > "1.25" would have passed.
    assert "older than the oldest supported" in error_of([("kbver", "1.7.6")])
    assert parse_params([("kbver", "1.100")]).kube_version == KubeVersion(1, 100)


# --- lists ---------------------------------------------------------------------------------------


def test_csv_lists() -> None:
    p = parse_params([("k", "etcd://a:2379, etcd:https://b:2379,consul:http://c:8500"),
                      ("s", "/dev/sdb,/dev/nvme0n1")])
    assert p.kvdb == ("etcd://a:2379", "etcd:https://b:2379", "consul:http://c:8500")
    assert p.drives == ("/dev/sdb", "/dev/nvme0n1")


@pytest.mark.parametrize("text", ["/dev/sdb,", ",/dev/sdb", "/dev/sdb,,/dev/sdc", " , "])
def test_empty_list_items_are_errors(text: str) -> None:
    assert "s: empty item in comma-separated list" in error_of([("s", text)])


def test_multi_line_csv_is_an_error() -> None:
    assert "expected one line of comma-separated values" in error_of([("s", "/dev/a\n/dev/b")])


@pytest.mark.parametrize("url", ["http://a:2379", "etcd:/a", "etcd://", "etcd://a b", "zk://a:1"])
def test_bad_kvdb_urls(url: str) -> None:
    assert "is not a kvdb URL" in error_of([("k", url)])


def test_env_pairs_keep_values_verbatim() -> None:
    p = parse_params([("e", 'A=1,B=x=y,"C=with, comma",D=')])
    assert p.env == (("A", "1"), ("B", "x=y"), ("C", "with, comma"), ("D", ""))


@pytest.mark.parametrize("item", ["1A=x", "A-B=x", "=x", "A", "A B=x", "Ä=x"])
def test_env_names_must_be_valid(item: str) -> None:
    assert "e: expected NAME=VALUE with a valid environment name" in error_of([("e", item)])


def test_env_reserved_and_duplicate_names() -> None:
    message = error_of([("e", "PXHOSTD_TOKEN=x,PATH=/bin,A=1,A=2")])
    assert "PXHOSTD_TOKEN is reserved" in message
    assert "PATH is reserved" in message
    assert "environment variable A given more than once" in message


# --- other types ---------------------------------------------------------------------------------


def test_docker_type_is_clearly_unsupported() -> None:
    message = error_of([("type", "docker")])
    assert "docker install type is no longer supported" in message
    assert parse_params([("type", "runc")]).runtime_type == "oci"
    assert parse_params([("type", "oci")]).runtime_type == "oci"
    assert "expected oci" in error_of([("type", "podman")])


def test_userpwd_needs_a_colon() -> None:
    assert "pwd: expected user:password" in error_of([("pwd", "secret")])
    assert parse_params([("pwd", "root:s3:cr,et")]).etcd_userpwd == "root:s3:cr,et"


def test_paths_must_be_absolute() -> None:
    assert "ca: expected an absolute path" in error_of([("ca", "etc/pwx/ca.pem")])
    assert parse_params([("j", "auto")]).journal == "auto"
    assert parse_params([("j", "/dev/sdj")]).journal == "/dev/sdj"


def test_image_and_namespace() -> None:
    p = parse_params([("px", "registry.example:5000/px/pxhostd:1.2@sha256:" + "a" * 64),
                      ("ns", "portworx")])
    assert p.namespace == "portworx"
    assert "px: expected a container image reference" in error_of([("px", "Bad Image")])
    assert "ns: expected a Kubernetes namespace name" in error_of([("ns", "Kube_System")])


def test_control_characters_are_rejected_in_names() -> None:
    assert "control character U+0000" in error_of([("c", "a\x00b")])
    assert "control character U+001B" in error_of([("c", "red\x1b[31m")])


@pytest.mark.parametrize("name", ["px", "px-cluster", "Prod_1.eu-west", "a", "7", "x" * 63])
def test_cluster_names_portworx_accepts(name: str) -> None:
    assert parse_params([("c", name)]).cluster == name


@pytest.mark.parametrize("name", [
    "bad name", "px;reboot", "px$(id)", "px`id`", "a/b", "px'", 'px"', "px&x", "-px", "px.",
    "_px", "ünï", "px\u202e", "x" * 64, "px\t1", "px\n---",
])
def test_cluster_names_with_spaces_controls_or_metacharacters_are_refused(name: str) -> None:
    message = error_of([("c", name)])
    assert message.startswith("invalid parameters:\n  c: ")
    assert "expected a cluster name" in message or "control character" in message
    assert show(name) in message  # the value, escaped to one printable line


def test_show_makes_one_printable_line() -> None:
    text = show('a\nb"c\x00ü' + "x" * 100)
    assert text.isascii() and text.isprintable() and "\n" not in text
    assert text.endswith('..."') and len(text) < 80


# --- combinations and obsolete options -----------------------------------------------------------


def test_zero_storage_contradicting_masters_is_an_error() -> None:
    assert "z: zero-storage control-plane nodes need mas" in error_of(
        [("z", "true"), ("mas", "false")]
    )
    assert parse_params([("z", "true")]).zero_storage is True


def test_obsolete_options_warn_and_never_fail() -> None:
    for pairs, needle in (
        ([("stork", "true")], "Stork scheduler extender is not generated"),
        ([("osft", "true")], "portworx-pvc-controller Deployment is not generated"),
        ([("kbver", "1.30.1-gke.5")], "portworx-pvc-controller Deployment is not generated"),
        ([("coreos", "true")], "coreos: ignored"),
    ):
        p = parse_params(pairs, strict=True)
        assert len(p.warnings) == 1 and needle in p.warnings[0], (pairs, p.warnings)


def test_obsolete_parameters_are_marked_in_the_table() -> None:
    obsolete = {p.short for p in PARAMS if p.status is Status.OBSOLETE}
    assert obsolete == {"stork", "coreos"}
