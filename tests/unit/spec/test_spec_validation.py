"""Desired spec: every validation rule, table-driven, plus the good paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from pxhostd.errors import InvalidPayload, InvalidSpec
from pxhostd.spec import Mount, Spec, load_spec, parse_mount, parse_spec_yaml, spec_from_dict

OK = {"payload": "/opt/payloads/px"}


def with_(**fields: object) -> dict[str, object]:
    return {**OK, **fields}


# (case id, input dict, message fragment). Every row must raise InvalidSpec (not a subclass).
BAD_SPECS: list[tuple[str, object, str]] = [
    ("not a mapping", ["payload", "/x"], "spec: must be a mapping, got a list"),
    ("none", None, "spec: must be a mapping, got null"),
    ("unknown key", with_(image="px:1"), "spec: unknown key 'image' (known keys: "),
    ("near-miss key", with_(payloda="/x"), "spec: unknown key 'payloda', did you mean 'payload'?"),
    ("near-miss case", with_(Args=[]), "spec: unknown key 'Args', did you mean 'args'?"),
    ("near-miss plural", with_(mount=[]), "spec: unknown key 'mount', did you mean 'mounts'?"),
    ("non-string key", {**OK, 7: "x"}, "spec: unknown key int"),
    ("payload missing", {"args": []}, "spec.payload: missing"),
    ("payload wrong type", with_(payload=5), "spec.payload: must be a string, got int"),
    ("payload relative", with_(payload="opt/px"), "spec.payload: path 'opt/px' must be absolute"),
    ("payload empty", with_(payload=""), "spec.payload: must not be empty"),
    ("payload traversal", with_(payload="/opt/../etc"),
     "spec.payload: path '/opt/../etc' must not contain '..'"),
    ("payload dot", with_(payload="/opt/./px"), "spec.payload: path '/opt/./px' is not normalised"),
    ("payload double slash", with_(payload="/opt//px"), "is not normalised (write '/opt/px')"),
    ("payload trailing slash", with_(payload="/opt/px/"), "is not normalised"),
    ("payload leading //", with_(payload="//opt"), "is not normalised"),
    ("payload root", with_(payload="/"), "spec.payload: must not be '/'"),
    ("payload newline", with_(payload="/opt/px\nExecStart=/bin/sh"),
     "spec.payload: path contains a newline"),
    ("payload NUL", with_(payload="/opt/px\x00"), "spec.payload: path contains a NUL byte"),
    ("payload escape char", with_(payload="/opt/\x1bpx"), "the control character U+001B"),
    ("payload zero-width", with_(payload="/opt/\u200bpx"), "non-printable character U+200B"),
    ("payload specifier", with_(payload="/opt/%n"), "contains a '%' (systemd specifier)"),
    ("payload quote", with_(payload='/opt/"px'), "contains the character '\"'"),
    ("payload single quote", with_(payload="/opt/'px"), "contains the character \"'\""),
    ("payload backslash", with_(payload="/opt/p\\x"), "contains the character '\\\\'"),
    ("payload space", with_(payload="/opt/p x"), "contains whitespace"),
    ("payload nbsp", with_(payload="/opt/p\u00a0x"), "contains whitespace"),
    ("payload colon", with_(payload="/opt/a:b"), "contains the character ':'"),
    ("payload dollar", with_(payload="/opt/$HOME"), "contains the character '$'"),
    ("payload too long", with_(payload="/" + "a/" * 2100 + "b"), "path too long"),
    ("payload long component", with_(payload="/" + "a" * 256), "longer than 255 bytes"),
    ("payload surrogate", with_(payload="/opt/\ud800"), "unpaired surrogate"),
    ("payload noncharacter", with_(payload="/opt/\ufffe"), "non-character U+FFFE"),
    ("service wrong type", with_(service=["a"]), "spec.service: must be a string, got a list"),
    ("service slash", with_(service="a/b"), "spec.service: 'a/b' is not a valid unit name stem"),
    ("service suffix", with_(service="px.service@"), "not a valid unit name stem"),
    ("service empty", with_(service=""), "not a valid unit name stem"),
    ("service leading dash", with_(service="-px"), "not a valid unit name stem"),
    ("service template", with_(service="px@1"), "not a valid unit name stem"),
    ("service too long", with_(service="p" * 65), "at most 64"),
    ("service reserved", with_(service="pxhostd"), "spec.service: 'pxhostd' is reserved"),
    ("service reserved prefix", with_(service="pxhostd-x"), "is reserved"),
    ("args not list", with_(args="-c x"), "spec.args: must be a list, got str"),
    ("args mapping", with_(args={"a": 1}), "spec.args: must be a list, got a mapping"),
    ("args int", with_(args=["-p", 9001]),
     "spec.args[1]: must be a string, got int (quote it in YAML)"),
    ("args bool", with_(args=[True]), "spec.args[0]: must be a string, got bool"),
    ("args nested", with_(args=[["x"]]), "spec.args[0]: must be a string, got a list"),
    ("args bytes", with_(args=[b"x"]), "spec.args[0]: must be a string, got bytes"),
    ("args newline", with_(args=["a\nb"]), "spec.args[0]: contains a newline"),
    ("args CR", with_(args=["a\rb"]), "spec.args[0]: contains a carriage return"),
    ("args NUL", with_(args=["a\x00"]), "spec.args[0]: contains a NUL byte"),
    ("args tab", with_(args=["a\tb"]), "spec.args[0]: contains a tab"),
    ("args C1", with_(args=["a\x85b"]), "the control character U+0085"),
    ("args noncharacter", with_(args=["\ufdd0"]), "non-character U+FDD0"),
    ("args too many", with_(args=["x"] * 257), "spec.args: too many entries (257, at most 256)"),
    ("args too long", with_(args=["x" * 4097]),
     "spec.args[0]: too long (4097 characters, at most 4096)"),
    ("args total", with_(args=["x" * 4000] * 40), "spec.args: too long in total"),
    ("env not mapping", with_(env=["A=B"]),
     "spec.env: must be a mapping of NAME: value, got a list"),
    ("env bad name", with_(env={"1A": "x"}),
     "spec.env (variable name): '1A' is not a valid environment variable name"),
    ("env dash name", with_(env={"A-B": "x"}), "'A-B' is not a valid environment variable name"),
    ("env equals name", with_(env={"A=B": "x"}), "is not a valid environment variable name"),
    ("env empty name", with_(env={"": "x"}), "'' is not a valid environment variable name"),
    ("env unicode name", with_(env={"Ä": "x"}), "is not a valid environment variable name"),
    ("env long name", with_(env={"A" * 129: "x"}), "at most 128"),
    ("env int name", with_(env={1: "x"}), "spec.env (variable name): must be a string, got int"),
    ("env int value", with_(env={"PORT": 9001}),
     "spec.env.PORT: must be a string, got int (quote it in YAML)"),
    ("env null value", with_(env={"A": None}), "spec.env.A: must be a string, got null"),
    ("service null", with_(service=None), "spec.service: must be a string, got null"),
    ("env newline", with_(env={"A": "x\ny"}), "spec.env.A: contains a newline"),
    ("env NUL", with_(env={"A": "\x00"}), "spec.env.A: contains a NUL byte"),
    ("env too long", with_(env={"A": "x" * 32769}), "spec.env.A: too long"),
    ("env too many", with_(env={f"V{i}": "x" for i in range(257)}), "spec.env: too many variables"),
    ("mounts not list", with_(mounts="/a:/b"), "spec.mounts: must be a list, got str"),
    ("mount not string", with_(mounts=[{"src": "/a"}]),
     "spec.mounts[0]: must be a string, got a mapping"),
    ("mount one part", with_(mounts=["/a"]),
     "spec.mounts[0]: '/a' must be 'src:dst' or 'src:dst:options'"),
    ("mount four parts", with_(mounts=["/a:/b:ro:x"]), "must be 'src:dst' or 'src:dst:options'"),
    ("mount relative src", with_(mounts=["a:/b"]),
     "spec.mounts[0] source: path 'a' must be absolute"),
    ("mount relative dst", with_(mounts=["/a:b"]),
     "spec.mounts[0] destination: path 'b' must be absolute"),
    ("mount traversal", with_(mounts=["/a/../etc:/b"]),
     "spec.mounts[0] source: path '/a/../etc' must not contain '..'"),
    ("mount dst root", with_(mounts=["/a:/"]), "spec.mounts[0]: destination must not be '/'"),
    ("mount space", with_(mounts=["/a b:/b"]),
     "spec.mounts[0] source: path '/a b' contains whitespace"),
    ("mount percent", with_(mounts=["/a:/b%i"]),
     "spec.mounts[0] destination: path '/b%i' contains a '%'"),
    ("mount newline", with_(mounts=["/a:/b\nExecStart=/x"]),
     "spec.mounts[0] destination: path contains a newline"),
    ("mount unknown option", with_(mounts=["/a:/b:nosuid"]),
     "spec.mounts[0]: unknown mount option 'nosuid' (allowed: ro, rw, rbind, norbind)"),
    ("mount empty option", with_(mounts=["/a:/b:"]), "unknown mount option ''"),
    ("mount ro+rw", with_(mounts=["/a:/b:ro,rw"]),
     "mount options 'ro' and 'rw' exclude each other"),
    ("mount rbind+norbind", with_(mounts=["/a:/b:rbind,norbind"]),
     "'rbind' and 'norbind' exclude each other"),
    ("mount option twice", with_(mounts=["/a:/b:ro,ro"]), "mount option 'ro' given twice"),
    ("mount duplicate dst", with_(mounts=["/a:/b", "/c:/b:ro"]),
     "spec.mounts[1]: destination '/b' is already used by spec.mounts[0]"),
    ("mount too many", with_(mounts=[f"/a:/b{i}" for i in range(129)]),
     "spec.mounts: too many entries"),
    ("mount huge", with_(mounts=["/" + "a" * 9000 + ":/b"]), "spec.mounts[0]: too long"),
]


@pytest.mark.parametrize(("data", "fragment"), [pytest.param(d, f, id=i) for i, d, f in BAD_SPECS])
def test_bad_spec_is_refused_with_a_named_error(data: object, fragment: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        spec_from_dict(data)  # type: ignore[arg-type]
    assert type(info.value) is InvalidSpec
    assert fragment in str(info.value)
    assert info.value.dbus_name == "com.portworx.pxhostd1.Error.InvalidSpec"


BAD_YAML: list[tuple[str, str, str]] = [
    ("duplicate key", "payload: /a\npayload: /b\n", "spec: duplicate key 'payload' (line 2)"),
    ("duplicate env", "payload: /a\nenv:\n  A: x\n  A: y\n", "duplicate key 'A' (line 4)"),
    ("syntax", "payload: [/a\n", "spec: not valid YAML"),
    ("two documents", "payload: /a\n---\npayload: /b\n", "spec: not valid YAML"),
    ("empty", "", "spec: the document is empty"),
    ("comment only", "# nothing\n", "the document is empty"),
    ("scalar", "/opt/px\n", "spec: must be a mapping, got str"),
    ("unhashable key", "? [a]\n: 1\n", "mapping key is not a plain value"),
    ("date", "payload: 2020-01-01\n", "spec: tag 'timestamp' is not allowed (line 1)"),
    ("binary", "payload: !!binary aGk=\n", "spec: tag 'binary' is not allowed"),
    ("set", "payload: /a\nargs: !!set {a}\n", "spec: tag 'set' is not allowed (line 2)"),
    ("local tag", "payload: !mine /a\n", "spec: tag '!mine' is not allowed"),
    ("yaml int arg", "payload: /a\nargs: [-p, 9001]\n", "spec.args[1]: must be a string, got int"),
    ("yaml bool env", "payload: /a\nenv: {DEBUG: yes}\n",
     "spec.env.DEBUG: must be a string, got bool"),
    ("python tag", "payload: !!python/object:os.system {}\n",
     "spec: tag 'python/object:os.system' is not allowed"),
    ("too large", "payload: /a\n" + "#" * (1 << 20), "spec: too large"),
    ("deep nesting", "payload: " + "[" * 5000 + "]" * 5000 + "\n", "spec"),
]


@pytest.mark.parametrize(("text", "fragment"), [pytest.param(t, f, id=i) for i, t, f in BAD_YAML])
def test_bad_yaml_is_refused_with_a_named_error(text: str, fragment: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_spec_yaml(text)
    assert type(info.value) is InvalidSpec
    assert fragment in str(info.value)


def test_alias_bomb_is_cheap_and_refused() -> None:
    """Aliases share objects (10**9 strings are never built) and the type check stops it."""
    anchors = ["&a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        anchors.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    text = f"payload: /a\nmounts: [{', '.join(anchors)}]\nargs: *a8\n"
    with pytest.raises(InvalidSpec, match=r"spec\.args\[0\]: must be a string, got a list"):
        parse_spec_yaml(text)


FULL = """\
service: portworx
payload: /opt/payloads/px-2.13
args: ["-c", "cluster1", "-k", "etcd:http://10.0.0.1:2379", "-s", "/dev/sdb", "-x", "kubernetes"]
env:
  PX_LOG_LEVEL: info
  ZZ_NOTE: "50% of $HOME \\"quoted\\" \\\\ back"
mounts:
  - /var/lib/kubelet/pods:/var/lib/kubelet/pods
  - /etc/pwx:/etc/pwx:ro
  - /var/cores:/var/cores:rw,norbind
  - /srv:/srv:rbind
"""


def test_full_spec_parses_to_canonical_values() -> None:
    spec = parse_spec_yaml(FULL)
    assert spec == Spec(
        payload="/opt/payloads/px-2.13",
        service="portworx",
        args=("-c", "cluster1", "-k", "etcd:http://10.0.0.1:2379", "-s", "/dev/sdb", "-x",
              "kubernetes"),
        env=(("PX_LOG_LEVEL", "info"), ("ZZ_NOTE", '50% of $HOME "quoted" \\ back')),
        mounts=(
            Mount("/var/lib/kubelet/pods", "/var/lib/kubelet/pods"),
            Mount("/etc/pwx", "/etc/pwx", ("ro",)),
            Mount("/var/cores", "/var/cores", ("norbind",)),
            Mount("/srv", "/srv"),
        ),
    )
    assert spec.unit_name == "portworx.service"


def test_defaults() -> None:
    spec = spec_from_dict(OK)
    assert spec == Spec(payload="/opt/payloads/px")
    assert spec.service == "portworx"
    assert spec.to_dict() == {"service": "portworx", "payload": "/opt/payloads/px", "args": [],
                              "env": {}, "mounts": []}


def test_empty_optional_keys_mean_not_given() -> None:
    text = "payload: /opt/payloads/px\nargs:\nenv:\nmounts:\n"
    assert parse_spec_yaml(text) == spec_from_dict(OK)


def test_env_is_sorted_by_name() -> None:
    spec = spec_from_dict(with_(env={"B": "2", "A": "1", "_C": "3"}))
    assert spec.env == (("A", "1"), ("B", "2"), ("_C", "3"))


def test_to_dict_round_trips() -> None:
    spec = parse_spec_yaml(FULL)
    assert spec_from_dict(spec.to_dict()) == spec
    assert spec_from_dict(spec.to_dict()).to_dict() == spec.to_dict()


def test_tuples_are_accepted_like_lists() -> None:
    """Values from the bus may arrive as tuples."""
    assert spec_from_dict(with_(args=("a", "b"))).args == ("a", "b")


def test_free_text_keeps_shell_and_unit_metacharacters() -> None:
    nasty = ['"', "'", "%n", "$X", "\\", " ", "ü", ";", "#", "="]
    spec = spec_from_dict(with_(args=nasty, env={"V": "".join(nasty)}))
    assert spec.args == tuple(nasty)
    assert dict(spec.env) == {"V": "".join(nasty)}


@pytest.mark.parametrize(
    ("text", "mount", "canonical"),
    [
        ("/a:/b", Mount("/a", "/b"), "/a:/b"),
        ("/a:/b:rw", Mount("/a", "/b"), "/a:/b"),
        ("/a:/b:rbind,rw", Mount("/a", "/b"), "/a:/b"),
        ("/a:/b:ro", Mount("/a", "/b", ("ro",)), "/a:/b:ro"),
        ("/a:/b:norbind,ro", Mount("/a", "/b", ("ro", "norbind")), "/a:/b:ro,norbind"),
        ("/:/host", Mount("/", "/host"), "/:/host"),
    ],
)
def test_mount_canonical_form(text: str, mount: Mount, canonical: str) -> None:
    parsed = parse_mount("m", text)
    assert parsed == mount
    assert str(parsed) == canonical
    assert parse_mount("m", str(parsed)) == parsed


def test_mount_flags() -> None:
    assert parse_mount("m", "/a:/b:ro,norbind").read_only
    assert not parse_mount("m", "/a:/b:ro,norbind").recursive
    assert parse_mount("m", "/a:/b").recursive


def test_load_spec_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(FULL)
    assert load_spec(path) == parse_spec_yaml(FULL)


def test_load_spec_errors_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"payload: /a\xff\n")
    with pytest.raises(InvalidSpec, match="not valid UTF-8"):
        load_spec(tmp_path / "bin.yaml")
    (tmp_path / "real.yaml").write_text(FULL)
    (tmp_path / "link.yaml").symlink_to(tmp_path / "real.yaml")
    with pytest.raises(InvalidSpec, match="symbolic link"):
        load_spec(tmp_path / "link.yaml")
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(InvalidSpec, match="not a regular file"):
        load_spec(tmp_path / "dir.yaml")


def test_invalid_payload_is_an_invalid_spec() -> None:
    """Callers catching InvalidSpec also catch payload errors."""
    assert issubclass(InvalidPayload, InvalidSpec)
