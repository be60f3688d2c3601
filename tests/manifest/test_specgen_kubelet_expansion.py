"""What the pod's process gets after the kubelet's `$(VAR)`/`$$` expansion is exactly what
the parameters say: every `$` the generator emits in command, args and env values is
escaped. Checked with a re-implementation of the kubelet's expansion (kubelet_expand)."""

from __future__ import annotations

import pytest
from kubelet_expand import container_as_run, expand, mapping_for
from specgen_helpers import arg_after, by_kind, container, load_docs, one

from pxhostd.manifest.model import daemonset, render_yaml
from pxhostd.manifest.model import names as n
from pxhostd.manifest.params import parse_params

TRICKY = ["$(PXHOSTD_TOKEN)", "$$", "$", "a$b", "$(", "$$(PXHOSTD_NODE_NAME)", "${HOME}",
          "x$(A)$$(B)$"]


def test_expansion_examples() -> None:
    """The cases of the upstream expansion tests that matter here."""
    ctx = mapping_for({"VAR_A": "A", "VAR_B": "B", "VAR_EMPTY": ""})
    cases = {
        "$(VAR_A)": "A", "___$(VAR_B)___": "___B___", "$(VAR_A)-$(VAR_B)": "A-B",
        "$$(VAR_A)": "$(VAR_A)", "$$$(VAR_A)": "$A", "$$$$(VAR_A)": "$$(VAR_A)",
        "$(VAR_NONE)": "$(VAR_NONE)", "$(VAR_EMPTY)x": "x", "$": "$", "a$": "a$",
        "$$": "$", "$(VAR_A": "$(VAR_A", "$VAR_A": "$VAR_A", "${VAR_A}": "${VAR_A}",
        "$()": "$()", "$$$": "$$",
    }
    for given, want in cases.items():
        assert expand(given, ctx) == want, given


def _pairs(value: str) -> list[tuple[str, str]]:
    return [
        ("c", "px1"), ("t", "tok" + value), ("pwd", "u:p" + value),
        ("acl", "acl" + value), ("k", f'"etcd://h:2379/{value}"'),
        ("e", f'"PLAIN={value}","REF=$(PLAIN){value}","X_PASS={value}"'),
        ("j", "/dev/j" + value), ("s", f'"/dev/s{value}"'),
        ("ca", "/etc/pwx/ca" + value), ("cert", "/etc/pwx/c" + value),
        ("key", "/etc/pwx/k" + value), ("mas", "true"), ("z", "true"),
    ]


@pytest.mark.parametrize("value", TRICKY)
def test_every_container_value_arrives_as_intended(value: str) -> None:
    p = parse_params(_pairs(value))
    docs = load_docs(render_yaml(p))
    secret = one(docs, "Secret", n.SECRET)["stringData"]
    daemonsets = by_kind(docs, "DaemonSet")
    assert len(daemonsets) == 2
    for ds, zero in zip(daemonsets, (False, True), strict=True):
        got = container_as_run(container(ds), secret, node_name="node-1")
        assert got["command"] == list(n.ENTRYPOINT)
        assert got["args"] == daemonset.payload_args(p, zero_storage=zero)
        assert "/etc/pwx/ca" + value in got["args"] and "/etc/pwx/k" + value in got["args"]
        assert got["env"] == {
            n.ENV_NODE_NAME: "node-1",
            n.ENV_SERVICE_MOUNTS: "/var/lib/kubelet:/var/lib/osd",
            n.ENV_KVDB_USERPWD: "u:p" + value,
            n.ENV_TOKEN: "tok" + value,
            n.ENV_ACL_TOKEN: "acl" + value,
            "PLAIN": value,
            "REF": "$(PLAIN)" + value,  # a parameter's text, never another variable's value
            "X_PASS": value,
        }


def test_a_reference_to_the_secret_never_copies_it_into_the_args() -> None:
    p = parse_params([("ca", "/etc/pwx/$(PXHOSTD_TOKEN)"), ("t", "s3cret")])
    docs = load_docs(render_yaml(p))
    got = container_as_run(container(one(docs, "DaemonSet")),
                           one(docs, "Secret")["stringData"])
    assert "s3cret" not in " ".join(got["args"])
    assert arg_after(got["args"], "-ca") == ["/etc/pwx/$(PXHOSTD_TOKEN)"]
