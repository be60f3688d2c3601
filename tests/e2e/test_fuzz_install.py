"""Issue: property-based fuzzing of Install over the real system bus of a booted node.

Hypothesis generates malformed specs on the host (wrong types, huge values, control
characters, `%`, `..`, unknown keys, nested junk, empty strings, very long lists); a bare
dbus-fast driver inside the node (bench/nodeside/busdriver.py, no code of ours) sends each
as `Install(a{sv} spec, a{sv} options)` and reports the reply. Every call must get a named
`com.portworx.pxhostd1.Error.*` reply, pxhostd must stay the same process, and nothing may
be written to the host.

NUL cannot travel in a D-Bus string: the bus daemon drops a connection that sends one. So
NUL-bearing values go on the wire as byte arrays (`ay`), one test shows the bus's own
behaviour for a NUL string, and pxhostctl is shown to refuse a NUL-bearing spec file itself.

Strings sent by the driver are ASCII: dbus-fast 1.84 (Debian 12) writes a string's length
in characters, not bytes, so a non-ASCII string from it is a malformed message and the bus
drops the sender (fixed upstream in dbus-fast 2.x). Non-ASCII values are sent with busctl,
which encodes them correctly, in `test_non_ascii_values_get_named_errors`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from nodeharness import REPO_ROOT, Node, wait_for
from nodeharness.node import NODE_PATH
from pxnode import UNIT_FILE, untag, wait_pxhostd

from pxhostd.errors import InvalidSpec
from pxhostd.spec.validate import SPEC_KEYS, spec_from_dict

ERR = "com.portworx.pxhostd1.Error."
DRIVER_SRC = REPO_ROOT / "bench" / "nodeside" / "busdriver.py"
DRIVER = "/var/lib/pxtest/busdriver.py"
#: Host state pxhostd may write; fuzzing must leave every file there as it was.
WATCHED = "/etc/systemd/system /opt/pwx /var/lib/pxhostd /etc/pwx /etc/pxhostd"
#: A path that passes every check on its own; a case only fails through its poison.
SOME_PATH = "/var/lib/pxtest/payloads/none"
EXAMPLES = 250
MOUNT_OPTIONS = ("ro", "rw", "rbind", "norbind")


# -- the driver, kept running in the node for the whole property -------------------------


class NodeDriver:
    """busdriver.py inside the node, spoken to line by line (one reply per request)."""

    def __init__(self, node: Node) -> None:
        node.run(["mkdir", "-p", str(Path(DRIVER).parent)])
        node.copy_in(DRIVER_SRC, DRIVER, mode=0o755)
        argv = ["nsenter", "-t", str(node.leader_pid), "-m", "-u", "-i", "-n", "-p", "--",
                "env", "-i", f"PATH={NODE_PATH}", "LANG=C.UTF-8", "python3", DRIVER]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

    def request(self, request: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"no reply within {timeout}s to {str(request)[:200]}"
        line = self.proc.stdout.readline()
        assert line, "the driver exited"
        reply: dict[str, Any] = json.loads(line)
        return reply

    def install(self, spec: dict[str, Any], options: dict[str, Any] | None = None
                ) -> dict[str, Any]:
        return self.request({"call": {"member": "Install", "sig": "a{sv}a{sv}",
                                      "body": [spec, options or {}]}})

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


# -- values as tagged variants (see busdriver.py) -----------------------------------------


def variant(value: Any) -> dict[str, Any]:
    """A plain value as {"$v": [signature, value]}, picking the signature D-Bus would."""
    if isinstance(value, bool):
        return {"$v": ["b", value]}
    if isinstance(value, int):
        return {"$v": ["x" if value < 2**63 else "t", value]}
    if isinstance(value, float):
        return {"$v": ["d", value]}
    if isinstance(value, str):
        return {"$v": ["s", value]}
    if isinstance(value, bytes):
        return {"$v": ["ay", {"$b": value.hex()}]}
    if isinstance(value, list):
        if all(isinstance(x, str) for x in value):
            return {"$v": ["as", value]}
        return {"$v": ["av", [variant(x) for x in value]]}
    if isinstance(value, dict):
        if value and all(isinstance(x, str) for x in value.values()):
            return {"$v": ["a{ss}", value]}
        return {"$v": ["a{sv}", {k: variant(x) for k, x in value.items()}]}
    raise TypeError(type(value).__name__)


# -- strategies: every case carries at least one poison -----------------------------------

# ASCII without NUL (NUL travels as bytes; non-ASCII see the module docstring).
WIRE_CHARS = st.characters(max_codepoint=0x7F, blacklist_characters="\x00")
text = st.text(WIRE_CHARS, max_size=40)
safe = st.text("abcxyz019_-.", max_size=12)
SPECIALS = ["%", "%n", "\n", "\r", "\t", " ", ":", ";", "$", "`", "*", "?", "\"", "'", "\\",
            "\x7f", "\x1b", "{", "|", "&"]
CONTROLS = ["\n", "\r", "\x1b", "\x7f", "\x01", "\t", "\x0b"]

scalars = st.one_of(st.booleans(), st.integers(-(2**63), 2**64 - 1),
                    st.floats(allow_nan=True), st.binary(max_size=20),
                    st.binary(max_size=8).map(lambda b: b + b"\x00" + b))
nested = st.recursive(
    st.one_of(scalars, text),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(text, inner, max_size=4)),
    max_leaves=20,
)
# Anything that is not a string, also containers (holding anything).
non_str = st.one_of(scalars, st.lists(nested, max_size=4),
                    st.dictionaries(text, nested, max_size=4))
# Containers whose elements cannot be strings: junk inside a list or mapping.
junk_container = st.one_of(st.lists(st.one_of(scalars, st.lists(nested, min_size=1)),
                                    min_size=1, max_size=4),
                           st.dictionaries(text, nested, min_size=1, max_size=4))


def with_special(prefix: str = "/") -> st.SearchStrategy[str]:
    return st.builds(lambda a, s, b: prefix + a + s + b, safe, st.sampled_from(SPECIALS), safe)


bad_path = st.one_of(
    st.just(""),
    st.text(WIRE_CHARS, min_size=1, max_size=30).filter(lambda s: not s.startswith("/")),
    with_special(),
    st.builds(lambda a, b: f"/{a}/../{b}", safe, safe),
    st.builds(lambda a: f"/{a}/..", safe),
    st.builds(lambda a: f"/opt/{a}/", safe.filter(bool)),
    st.builds(lambda a: f"//{a}", safe),
    st.integers(4097, 40_000).map(lambda n: "/" + "a" * n),
    st.integers(256, 2000).map(lambda n: "/opt/" + "b" * n),
    st.binary(max_size=10).map(lambda b: b"/opt/" + b + b"\x00x"),  # NUL as ay
    non_str,
)
bad_payload = st.one_of(bad_path, st.just("/"))
bad_service = st.one_of(
    st.just(""),
    st.sampled_from(["pxhostd", "dbus", "systemd", "init", "default", "pxhostd-x",
                     "px/../x", "-px", ".px", "px.service/..", "px%n"]),
    with_special("px"),
    st.integers(65, 5000).map(lambda n: "p" * n),
    non_str,
)
bad_text_item = st.one_of(
    st.builds(lambda a, c, b: a + c + b, text, st.sampled_from(CONTROLS), text),
    st.integers(4097, 20_000).map(lambda n: "y" * n),
    st.binary(max_size=10).map(lambda b: b + b"\x00"),
    non_str,
)
bad_args = st.one_of(
    st.one_of(text, scalars, st.dictionaries(text, nested, max_size=3)),  # not a list
    st.builds(lambda good, bad, i: [*good[:i], bad, *good[i:]],
              st.lists(text, max_size=5), bad_text_item, st.integers(0, 5)),
    st.integers(257, 3000).map(lambda n: [f"a{i}" for i in range(n)]),
    st.integers(33, 60).map(lambda n: ["z" * 4000] * n),  # over the total length
    junk_container,
)
env_name_bad = st.one_of(
    st.just(""),
    st.builds(lambda d, a: d + a, st.sampled_from("0123456789"), safe),
    st.builds(lambda a, s, b: "A" + a + s + b, safe,
              st.sampled_from(["=", "-", " ", "%", "\n", ".", "/", "\x7f"]), safe),
    st.integers(129, 1000).map(lambda n: "E" * n),
)
bad_env = st.one_of(
    st.one_of(text, scalars, st.lists(nested, max_size=4)),  # not a mapping
    st.builds(lambda name, val: {name: val}, env_name_bad, text),
    st.builds(lambda val: {"PX_OK": val}, bad_text_item),
    st.integers(33_000, 60_000).map(lambda n: {"BIG": "v" * n}),
    st.integers(257, 2000).map(lambda n: {f"V{i}": "x" for i in range(n)}),
    st.dictionaries(st.just("NESTED"), junk_container, min_size=1),
)
bad_mount_item = st.one_of(
    bad_path.filter(lambda p: not isinstance(p, str) or ":" not in p),  # no separator
    st.builds(lambda p: f"{p}:/mnt/x", bad_path.filter(lambda p: isinstance(p, str))),
    st.builds(lambda p: f"/mnt/x:{p}", bad_path.filter(lambda p: isinstance(p, str))),
    st.just("/a:/"),
    st.builds(lambda o: f"/a:/b:{o}", st.one_of(
        st.sampled_from(["exec", "ro,rw", "rbind,norbind", "ro,ro", "", "RO", "ro,,rw"]),
        text.filter(lambda s: not all(o in MOUNT_OPTIONS for o in s.split(","))))),
    st.just("/a:/b:ro:x"),
    non_str,
)
bad_mounts = st.one_of(
    st.one_of(text, scalars, st.dictionaries(text, nested, max_size=3)),
    st.builds(lambda good, bad, i: [*good[:i], bad, *good[i:]],
              st.lists(st.sampled_from(["/a:/a", "/b:/b:ro"]), max_size=2, unique=True),
              bad_mount_item, st.integers(0, 2)),
    st.just(["/a:/same", "/b:/same"]),
    st.integers(129, 1000).map(lambda n: [f"/s{i}:/d{i}" for i in range(n)]),
    junk_container,
)
unknown_key = st.one_of(text, st.sampled_from(["Payload", "payload ", "spec", "%n", "../x",
                                               "\n", "wipe", "id"])).filter(
    lambda k: k not in SPEC_KEYS)

Poison = tuple[str, Any]
poison: st.SearchStrategy[Poison] = st.one_of(
    st.tuples(st.just("payload"), bad_payload),
    st.tuples(st.just("service"), bad_service),
    st.tuples(st.just("args"), bad_args),
    st.tuples(st.just("env"), bad_env),
    st.tuples(st.just("mounts"), bad_mounts),
    st.tuples(unknown_key, nested),
    st.tuples(st.just("-payload"), st.none()),  # drop the payload key
)
filler = st.fixed_dictionaries(
    {},
    optional={
        "payload": st.just(SOME_PATH),
        "service": st.just("portworx"),
        "args": st.lists(st.sampled_from(["-c", "x%y", "a b", "--k=v", ""]), max_size=3),
        "env": st.dictionaries(st.sampled_from(["A", "PX_B"]), text, max_size=2),
        "mounts": st.just(["/var/lib/pxtest/data:/var/lib/pxtest/data:ro"]),
    },
)


@st.composite
def malformed_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"payload": SOME_PATH, **draw(filler)}
    for key, value in draw(st.lists(poison, min_size=1, max_size=3)):
        event(f"poison {key if key in SPEC_KEYS or key == '-payload' else 'unknown key'}")
        if key == "-payload":
            spec.pop("payload", None)
        else:
            spec[key] = value
    return spec


# -- the tests -----------------------------------------------------------------------------


def host_state(node: Node) -> str:
    """Every file under the watched directories with its checksum, and the file list."""
    return node.run(
        f"for d in {WATCHED}; do [ -e $d ] && find $d -printf '%p %y %s\\n'; done | sort;"
        f" for d in {WATCHED}; do [ -e $d ] && find $d -type f -exec sha256sum {{}} +; done"
        " | sort",
        check=False,
    ).stdout


@pytest.fixture
def ready_node(installed_node: Node) -> Node:
    wait_pxhostd(installed_node)
    return installed_node


@pytest.fixture
def node_driver(ready_node: Node) -> Iterator[NodeDriver]:
    driver = NodeDriver(ready_node)
    try:
        yield driver
    finally:
        driver.close()


def main_pid(node: Node) -> str:
    return node.unit_property("pxhostd.service", "MainPID")


def assert_untouched(node: Node, pid: str, before: str) -> None:
    assert node.systemctl("is-active", "pxhostd").stdout.strip() == "active"
    assert main_pid(node) == pid, "pxhostd restarted"
    assert node.unit_property("pxhostd.service", "NRestarts") == "0"
    assert host_state(node) == before, "something was written"
    assert not node.exists(UNIT_FILE)
    assert node.run(["ls", "-A", "/opt/pwx/releases"], check=False).stdout.split() == []
    assert not node.exists("/var/lib/pxhostd/applied.json")
    assert not node.exists("/var/lib/pxhostd/journal.json")
    journal = node.journal("pxhostd")
    assert "Traceback" not in journal and "internal error" not in journal


def test_malformed_install_specs_get_named_errors_and_write_nothing(
    ready_node: Node, node_driver: NodeDriver
) -> None:
    node = ready_node
    pid, before = main_pid(node), host_state(node)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(spec=malformed_specs())
    def install_is_refused(spec: dict[str, Any]) -> None:
        # The case is malformed by construction; the validator agreeing keeps the
        # strategies honest (a valid case would start a real transaction).
        # (The daemon sees these very values: it unwraps variants, bytes stay bytes.)
        with pytest.raises(InvalidSpec):
            spec_from_dict(spec)
        wire = {key: variant(value) for key, value in spec.items()}
        reply = node_driver.install(wire, {"id": variant("fuzz")})
        assert not reply["ok"], f"accepted: {reply}"
        assert reply["error"] == ERR + "InvalidSpec", reply
        assert reply["message"].startswith("spec"), reply
        assert "Traceback" not in reply["message"]

    install_is_refused()
    status = node_driver.request({"call": {"member": "Status"}})
    assert status["ok"], status
    assert status["body"][0]["state"] == {"$v": ["s", "idle"]}
    assert status["body"][0]["last_error"] == {"$v": ["s", ""]}
    history = node_driver.request({"call": {"member": "History", "sig": "u", "body": [0]}})
    assert history == {"ok": True, "body": [[]]}
    assert_untouched(node, pid, before)


bad_option = st.one_of(
    st.tuples(st.just("id"), non_str),
    st.tuples(st.just("wipe"), scalars),  # Install takes no wipe
    st.tuples(text.filter(lambda k: k != "id"), nested),
)


def test_malformed_install_options_get_named_errors(
    ready_node: Node, node_driver: NodeDriver
) -> None:
    node = ready_node
    pid, before = main_pid(node), host_state(node)

    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(spec=malformed_specs(), options=st.lists(bad_option, min_size=1, max_size=3))
    def options_are_refused(spec: dict[str, Any], options: list[tuple[str, Any]]) -> None:
        wire_spec = {key: variant(value) for key, value in spec.items()}
        wire_options = {key: variant(value) for key, value in options}
        reply = node_driver.install(wire_spec, wire_options)
        assert not reply["ok"], reply
        assert reply["error"] == ERR + "InvalidOptions", reply

    options_are_refused()
    assert_untouched(node, pid, before)


def test_nul_cannot_travel_in_a_string_and_pxhostctl_refuses_it(
    ready_node: Node, node_driver: NodeDriver
) -> None:
    node = ready_node
    pid, before = main_pid(node), host_state(node)

    # The bus itself refuses a string with NUL: it drops the sender; pxhostd never sees it.
    reply = node_driver.install({"payload": {"$v": ["s", "/opt/x\x00y"]}})
    assert reply["error"] == "disconnected", reply
    again = node_driver.request({"call": {"member": "Status"}})
    assert again["ok"], again
    # As bytes it arrives, and is refused by name.
    reply = node_driver.install({"payload": variant(b"/opt/x\x00y"),
                                 "env": variant({"A": b"x\x00y"})})
    assert reply["error"] == ERR + "InvalidSpec", reply

    # pxhostctl refuses a NUL-bearing spec file itself: no Install crosses the bus.
    node.write_file("/var/lib/pxtest/nul.yaml",
                    f'payload: {SOME_PATH}\nenv:\n  A: "x\\0y"\n')
    match = "type='method_call',interface='com.portworx.pxhostd1.Manager'"
    node.run(f"busctl --json=short monitor --match \"{match}\" >/run/pxmon.json"
             " 2>/run/pxmon.err & echo $! >/run/pxmon.pid")
    wait_for(lambda: node.read_file("/run/pxmon.err"), lambda err: "Monitoring" in err,
             timeout=30, what="busctl monitor to listen")
    result = node.run(["pxhostctl", "install", "--spec", "/var/lib/pxtest/nul.yaml"],
                      check=False)
    assert result.returncode == 2, result
    assert "NUL" in result.stderr and "spec.env.A" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    node.run(["pxhostctl", "status"], check=False)  # a call the monitor must see
    wait_for(lambda: node.read_file("/run/pxmon.json"), lambda out: '"Status"' in out,
             timeout=30, what="the monitor to see Status")
    node.run("kill $(cat /run/pxmon.pid)")
    members = [json.loads(line)["member"]
               for line in node.read_file("/run/pxmon.json").splitlines()]
    assert "Install" not in members and "Status" in members, members
    assert_untouched(node, pid, before)


#: Malformed specs with non-ASCII text, in busctl's notation (it encodes UTF-8 correctly).
NON_ASCII_CASES: list[list[str]] = [
    ["1", "payload", "s", "/opt/é%"],
    ["1", "payload", "s", "é"],
    ["1", "payload", "s", "/opt/a\u2028b"],
    ["2", "payload", "s", SOME_PATH, "service", "s", "pxé"],
    ["2", "payload", "s", SOME_PATH, "env", "a{ss}", "1", "CLÉ", "x"],
    # (A Unicode non-character such as U+FDD0 cannot be sent at all: sd-bus, and so
    # busctl, refuses to build the message. The validator's own tests cover it.)
    ["2", "payload", "s", SOME_PATH, "args", "as", "2", "café", "a\u0085b"],
    ["2", "payload", "s", SOME_PATH, "mounts", "as", "1", "/é:/b:exé"],
    ["2", "payload", "s", SOME_PATH, "clé", "s", "valeur"],
]


def test_non_ascii_values_get_named_errors(ready_node: Node) -> None:
    node = ready_node
    pid, before = main_pid(node), host_state(node)
    for case in NON_ASCII_CASES:
        proc = node.run(
            ["busctl", "call", "--", "com.portworx.pxhostd1", "/com/portworx/pxhostd1",
             "com.portworx.pxhostd1.Manager", "Install", "a{sv}a{sv}", *case, "0"],
            check=False,
        )
        assert proc.returncode != 0, case
        assert proc.stderr.startswith("Call failed: spec"), (case, proc.stderr)
        assert main_pid(node) == pid, f"pxhostd left the bus on {case}: {proc.stderr}"
    assert_untouched(node, pid, before)


# -- alongside a hostile user; non-ASCII in every reply -------------------------------------

FLOOD_SRC = REPO_ROOT / "bench" / "nodeside" / "flood.py"
FLOOD = "/var/lib/pxtest/flood.py"


def test_fuzzing_while_a_user_floods_without_reading(
    ready_node: Node, node_driver: NodeDriver
) -> None:
    """The fuzz cases again, while pxuser's 50 connections call and never read."""
    node = ready_node
    pid, before = main_pid(node), host_state(node)
    node.copy_in(FLOOD_SRC, FLOOD, mode=0o755)
    node.run(f"(python3 {FLOOD} --connections 50 --calls 2000 --duration 30 >/tmp/flood.json"
             " 2>/tmp/flood.err) </dev/null >/dev/null 2>&1 &", user="pxuser")

    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(spec=malformed_specs())
    def refused_during_the_flood(spec: dict[str, Any]) -> None:
        wire = {key: variant(value) for key, value in spec.items()}
        reply = node_driver.install(wire, {"id": variant("fuzz-flood")})
        assert not reply["ok"] and reply["error"] == ERR + "InvalidSpec", reply

    refused_during_the_flood()
    wait_for(lambda: node.read_file("/tmp/flood.json").strip(), bool, timeout=120,
             what="the flood to end")
    assert json.loads(node.read_file("/tmp/flood.json"))["calls_sent"] >= 10_000
    assert_untouched(node, pid, before)
    assert "does not read its replies" in node.journal("pxhostd")


def test_non_ascii_in_every_reply_reaches_root_and_others(ready_node: Node,
                                                          tmp_path: Path) -> None:
    """Non-ASCII in the spec, the ids and an error; every reply read by root and pxuser."""
    from pxnode import build_payload

    node = ready_node
    pid = main_pid(node)
    v1 = build_payload(node, tmp_path, "v1", "1.0.0")
    ok = node.run(["busctl", "--json=short", "call", "--", "com.portworx.pxhostd1",
                   "/com/portworx/pxhostd1", "com.portworx.pxhostd1.Manager", "Install",
                   "a{sv}a{sv}", "3", "payload", "s", v1, "args", "as", "2", "-c", "grappe-é☃",
                   "env", "a{ss}", "1", "PX_NOTE", "clé-ü", "1", "id", "s", "tx-ünï"])
    path = json.loads(ok.stdout)["data"][0]
    wait_for(lambda: node.run(["busctl", "get-property", "com.portworx.pxhostd1", path,
                               "com.portworx.pxhostd1.Transaction", "Finished"]).stdout,
             lambda out: "true" in out, timeout=120, what="the install")
    failed = node.run(["busctl", "--json=short", "call", "--", "com.portworx.pxhostd1",
                       "/com/portworx/pxhostd1", "com.portworx.pxhostd1.Manager", "Install",
                       "a{sv}a{sv}", "1", "payload", "s", "/var/lib/pxtest/nowhere-é",
                       "1", "id", "s", "tx-échec"])
    bad = json.loads(failed.stdout)["data"][0]
    wait_for(lambda: node.run(["busctl", "get-property", "com.portworx.pxhostd1", bad,
                               "com.portworx.pxhostd1.Transaction", "Finished"]).stdout,
             lambda out: "true" in out, timeout=120, what="the failing install")
    reads = [{"call": {"member": "Status"}}, {"call": {"member": "GetSpec"}},
             {"call": {"member": "History", "sig": "u", "body": [0]}},
             {"call": {"member": "GetAll", "sig": "s", "body": ["com.portworx.pxhostd1.Manager"],
                       "iface": "org.freedesktop.DBus.Properties"}}]
    for p in (path, bad):
        reads.append({"call": {"member": "GetResult", "path": p,
                               "iface": "com.portworx.pxhostd1.Transaction"}})
        reads.append({"call": {"member": "GetAll", "sig": "s", "path": p,
                               "body": ["com.portworx.pxhostd1.Transaction"],
                               "iface": "org.freedesktop.DBus.Properties"}})
    node.run(["mkdir", "-p", str(Path(DRIVER).parent)])
    node.copy_in(DRIVER_SRC, DRIVER, mode=0o755)
    for user in (None, "pxuser"):
        lines = "".join(json.dumps(r) + "\n" for r in reads)
        out = node.run(["python3", DRIVER], user=user, input=lines, timeout=120).stdout
        replies = [untag(json.loads(line)) for line in out.splitlines()]
        assert len(replies) == len(reads) and all(r["ok"] for r in replies), replies
        text = json.dumps(replies, ensure_ascii=False)
        for word in ("grappe-é☃", "tx-ünï", "tx-échec", "nowhere-é"):
            assert word in text, (user, word)
        assert ("clé-ü" in text) == (user is None), "env values are root's only"
        assert main_pid(node) == pid
