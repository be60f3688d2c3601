"""Payload manifest: parsing, digest, and checking a payload directory against it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml

from pxhostd.errors import InvalidPayload
from pxhostd.payload.manifest import (
    Manifest,
    load_manifest,
    manifest_from_dict,
    parse_manifest_yaml,
    verify_payload_files,
)

SHA = "0" * 64


def base(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "px-demo",
        "version": "1.2.3",
        "exec": ["bin/px", "--serve"],
        "files": {"bin/px": SHA},
    }
    data.update(overrides)
    return data


BAD_MANIFESTS: list[tuple[str, object, str]] = [
    ("not a mapping", ["name"], "payload.yaml: must be a mapping, got a list"),
    ("unknown key", base(image="x"), "payload.yaml: unknown key 'image' (known keys: "),
    ("near-miss key", base(verison="1"),
     "payload.yaml: unknown key 'verison', did you mean 'version'?"),
    ("name missing", {k: v for k, v in base().items() if k != "name"},
     "payload.yaml name: missing"),
    ("files missing", {k: v for k, v in base().items() if k != "files"},
     "payload.yaml files: missing"),
    ("name bad chars", base(name="px demo"), "payload.yaml name: 'px demo' is not allowed"),
    ("name percent", base(name="px%n"), "payload.yaml name: 'px%n' is not allowed"),
    ("name int", base(name=5), "payload.yaml name: must be a string, got int"),
    ("version slash", base(version="1/2"), "payload.yaml version: '1/2' is not allowed"),
    ("version dotdot", base(version=".."), "payload.yaml version: '..' is not allowed"),
    ("version newline", base(version="1\n2"), "payload.yaml version: '1\\n2' is not allowed"),
    ("version float", base(version=1.2), "payload.yaml version: must be a string, got float"),
    ("version long", base(version="1" * 65), "at most 64"),
    ("exec not list", base(exec="bin/px"), "payload.yaml exec: must be a list, got str"),
    ("exec empty", base(exec=[]), "payload.yaml exec: must name the program to run"),
    ("exec absolute", base(exec=["/bin/sh"]),
     "payload.yaml exec[0]: path '/bin/sh' must be relative"),
    ("exec traversal", base(exec=["../bin/sh"]),
     "payload.yaml exec[0]: path '../bin/sh' must not contain '..'"),
    ("exec dot", base(exec=["./bin/px"]), "is not normalised"),
    ("exec not listed", base(exec=["bin/other"]),
     "payload.yaml exec[0]: program 'bin/other' is not listed in files"),
    ("exec arg newline", base(exec=["bin/px", "a\nb"]), "payload.yaml exec[1]: contains a newline"),
    ("exec arg int", base(exec=["bin/px", 1]), "payload.yaml exec[1]: must be a string, got int"),
    ("exec too many", base(exec=["bin/px"] + ["x"] * 64), "payload.yaml exec: too many entries"),
    ("notify string", base(notify="yes"), "payload.yaml notify: must be true or false, got str"),
    ("health https", base(health="https://127.0.0.1:9001/x"), "must be an http:// URL"),
    ("health remote", base(health="http://10.0.0.1:9001/x"), "host must be loopback"),
    ("health userinfo", base(health="http://u:p@127.0.0.1:9001/"),
     "must not contain user information"),
    ("health no port", base(health="http://127.0.0.1/x"), "must name a port"),
    ("health bad port", base(health="http://127.0.0.1:99999/x"), "is not a valid URL"),
    ("health space", base(health="http://127.0.0.1:9001/a b"), "must be ASCII without whitespace"),
    ("health fragment", base(health="http://127.0.0.1:9001/a#b"), "must not contain a fragment"),
    ("health int", base(health=9001), "payload.yaml health: must be a string, got int"),
    ("files list", base(files=["bin/px"]), "payload.yaml files: must be a mapping"),
    ("files empty", base(files={}), "payload.yaml files: must list at least the program"),
    ("files absolute", base(files={"/etc/passwd": SHA}),
     "payload.yaml files (path): path '/etc/passwd' must be relative"),
    ("files traversal", base(files={"a/../../x": SHA}), "must not contain '..'"),
    ("files empty part", base(files={"a//x": SHA}), "is not normalised"),
    ("files bad sha", base(files={"bin/px": "xyz"}), "payload.yaml files['bin/px']: not a sha256"),
    ("files upper sha", base(files={"bin/px": "A" * 64}), "not a sha256 (64 lowercase hex digits)"),
    ("files sha int", base(files={"bin/px": 0}), "payload.yaml files['bin/px']: must be a string"),
    ("files self", base(files={"bin/px": SHA, "payload.yaml": SHA}), "cannot list itself"),
    ("files file below file", base(files={"bin/px": SHA, "bin/px/x": SHA}),
     "'bin/px/x' lies below the file 'bin/px'"),
    ("files key int", base(files={1: SHA}), "payload.yaml files (path): must be a string, got int"),
    ("reboot_unit string", base(reboot_unit="true"),
     "payload.yaml reboot_unit: must be true or false"),
    ("reboot without exec", base(reboot_unit=True), "payload.yaml reboot_exec: missing"),
    ("reboot exec without unit", base(reboot_exec=["bin/px"]), "given but reboot_unit is not true"),
    ("reboot exec not listed", base(reboot_unit=True, reboot_exec=["bin/r"]),
     "payload.yaml reboot_exec[0]: program 'bin/r' is not listed"),
]


@pytest.mark.parametrize(
    ("data", "fragment"), [pytest.param(d, f, id=i) for i, d, f in BAD_MANIFESTS]
)
def test_bad_manifest_is_refused_with_a_named_error(data: object, fragment: str) -> None:
    with pytest.raises(InvalidPayload) as info:
        manifest_from_dict(data)
    assert fragment in str(info.value)
    assert info.value.dbus_name == "com.portworx.pxhostd1.Error.InvalidPayload"


def test_good_manifest() -> None:
    m = manifest_from_dict(base(notify=True, health="http://127.0.0.1:9001/v1/cluster/nodehealth",
                                files={"bin/px": SHA, "lib/a.so": "1" * 64}))
    assert m.exec == ("bin/px", "--serve")
    assert m.notify is True
    assert m.files == (("bin/px", SHA), ("lib/a.so", "1" * 64))
    assert manifest_from_dict(m.to_dict()) == m
    assert len(m.digest) == 64


@pytest.mark.parametrize(
    "health", ["http://localhost:9001/", "http://[::1]:9001/status", "http://127.0.0.1:1/a?b=c"])
def test_loopback_health_urls_are_accepted(health: str) -> None:
    assert manifest_from_dict(base(health=health)).health == health


def test_digest_is_stable_and_covers_every_field() -> None:
    m = manifest_from_dict(base())
    assert m.digest == manifest_from_dict(base()).digest
    variants = [
        base(version="1.2.4"), base(name="other"), base(exec=["bin/px"]), base(notify=True),
        base(health="http://127.0.0.1:1/"), base(files={"bin/px": "1" * 64}),
        base(files={"bin/px": SHA, "extra": SHA}),
        base(reboot_unit=True, reboot_exec=["bin/px"]),
    ]
    digests = {manifest_from_dict(v).digest for v in variants}
    assert m.digest not in digests
    assert len(digests) == len(variants)


def test_digest_ignores_file_order() -> None:
    a = manifest_from_dict(base(files={"bin/px": SHA, "a": SHA}))
    b = manifest_from_dict(base(files={"a": SHA, "bin/px": SHA}))
    assert a.digest == b.digest


def test_manifest_yaml_duplicate_key_is_an_error() -> None:
    with pytest.raises(InvalidPayload, match="duplicate key 'version'"):
        parse_manifest_yaml("name: a\nversion: '1'\nversion: '2'\n")


# -- payload directories ---------------------------------------------------------------


def make_payload(root: Path, files: dict[str, bytes], **manifest: object) -> Manifest:
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "bin").mkdir(exist_ok=True)
    listed = {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}
    doc = {"name": "px-demo", "version": "1.0", "exec": ["bin/px"], "files": listed, **manifest}
    (root / "payload.yaml").write_text(yaml.safe_dump(doc))
    if (root / "bin/px").exists():
        (root / "bin/px").chmod(0o755)
    return load_manifest(root)


def test_load_and_verify_a_good_payload(tmp_path: Path) -> None:
    m = make_payload(tmp_path / "p", {"bin/px": b"#!/bin/sh\n", "lib/data": b"x"})
    verify_payload_files(tmp_path / "p", m)
    assert m.name == "px-demo"


def test_unlisted_regular_files_are_ignored(tmp_path: Path) -> None:
    m = make_payload(tmp_path / "p", {"bin/px": b"#!/bin/sh\n"})
    (tmp_path / "p" / "README").write_text("not part of the payload identity")
    verify_payload_files(tmp_path / "p", m)


def test_internal_relative_symlink_is_fine(tmp_path: Path) -> None:
    m = make_payload(tmp_path / "p", {"bin/px": b"#!/bin/sh\n"})
    (tmp_path / "p" / "bin" / "px-alias").symlink_to("px")
    verify_payload_files(tmp_path / "p", m)


def test_missing_file(tmp_path: Path) -> None:
    m = make_payload(tmp_path / "p", {"bin/px": b"#!/bin/sh\n", "lib/data": b"x"})
    (tmp_path / "p" / "lib" / "data").unlink()
    with pytest.raises(InvalidPayload, match=r"file 'lib/data' listed in payload\.yaml is missing"):
        verify_payload_files(tmp_path / "p", m)


def test_sha_mismatch(tmp_path: Path) -> None:
    m = make_payload(tmp_path / "p", {"bin/px": b"#!/bin/sh\n", "lib/data": b"x"})
    (tmp_path / "p" / "lib" / "data").write_bytes(b"tampered")
    with pytest.raises(InvalidPayload, match="sha256 mismatch for 'lib/data'"):
        verify_payload_files(tmp_path / "p", m)


def test_unlisted_symlinks_are_never_followed(tmp_path: Path) -> None:
    """Only listed paths are opened (by descriptor); an unlisted link is never read."""
    m = make_payload(tmp_path / "p", {"bin/px": b"#!/bin/sh\n"})
    (tmp_path / "p" / "bin" / "shadow").symlink_to("../../../etc/shadow")
    (tmp_path / "p" / "etc").symlink_to("/etc")
    verify_payload_files(tmp_path / "p", m)


def test_listed_file_through_a_symlink_is_refused(tmp_path: Path) -> None:
    m = make_payload(tmp_path / "p", {"bin/px": b"#!/bin/sh\n", "real/data": b"x"})
    os.rename(tmp_path / "p" / "real", tmp_path / "p" / "other")
    (tmp_path / "p" / "real").symlink_to("other")
    with pytest.raises(InvalidPayload, match="'real' is a symbolic link, expected a directory"):
        verify_payload_files(tmp_path / "p", m)


def test_listed_file_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    m = make_payload(tmp_path / "p", {"bin/px": b"#!/bin/sh\n", "data": b"x"})
    (tmp_path / "p" / "data").unlink()
    (tmp_path / "p" / "data").symlink_to("bin/px")
    with pytest.raises(InvalidPayload, match="'data' is a symbolic link; a payload lists"):
        verify_payload_files(tmp_path / "p", m)


def test_listed_directory_is_refused(tmp_path: Path) -> None:
    m = make_payload(tmp_path / "p", {"bin/px": b"#!/bin/sh\n", "data": b"x"})
    (tmp_path / "p" / "data").unlink()
    (tmp_path / "p" / "data").mkdir()
    with pytest.raises(InvalidPayload, match="'data' is a directory; a payload lists regular"):
        verify_payload_files(tmp_path / "p", m)


def test_listed_fifo_is_refused_at_once(tmp_path: Path) -> None:
    m = make_payload(tmp_path / "p", {"bin/px": b"#!/bin/sh\n", "data": b"x"})
    (tmp_path / "p" / "data").unlink()
    os.mkfifo(tmp_path / "p" / "data")
    with pytest.raises(InvalidPayload, match="'data' is a FIFO"):
        verify_payload_files(tmp_path / "p", m)


@pytest.mark.parametrize("where", ["root", "dir", "file"])
def test_group_writable_payload_is_refused_with_the_fix(tmp_path: Path, where: str) -> None:
    m = make_payload(tmp_path / "p", {"bin/px": b"#!/bin/sh\n"})
    target = {"root": tmp_path / "p", "dir": tmp_path / "p" / "bin",
              "file": tmp_path / "p" / "bin" / "px"}[where]
    target.chmod(target.stat().st_mode | 0o020)
    with pytest.raises(InvalidPayload, match=r"writable by group or others .*chmod -R go-w"):
        verify_payload_files(tmp_path / "p", m)


@pytest.mark.parametrize("where", ["root", "dir", "file"])
def test_payload_not_owned_by_root_is_refused_with_the_fix(tmp_path: Path, where: str) -> None:
    m = make_payload(tmp_path / "p", {"bin/px": b"#!/bin/sh\n"})
    target = {"root": tmp_path / "p", "dir": tmp_path / "p" / "bin",
              "file": tmp_path / "p" / "bin" / "px"}[where]
    os.chown(target, 4242, -1)
    with pytest.raises(InvalidPayload, match=r"owned by uid 4242, not by root.*chown -R root"):
        verify_payload_files(tmp_path / "p", m)


def test_program_must_be_executable(tmp_path: Path) -> None:
    m = make_payload(tmp_path / "p", {"bin/px": b"#!/bin/sh\n"})
    (tmp_path / "p" / "bin" / "px").chmod(0o644)
    with pytest.raises(InvalidPayload, match="program 'bin/px' is not executable"):
        verify_payload_files(tmp_path / "p", m)


def test_reboot_program_must_be_executable(tmp_path: Path) -> None:
    m = make_payload(tmp_path / "p", {"bin/px": b"#!/bin/sh\n", "bin/r": b"#!/bin/sh\n"},
                     reboot_unit=True, reboot_exec=["bin/r"])
    with pytest.raises(InvalidPayload, match="program 'bin/r' is not executable"):
        verify_payload_files(tmp_path / "p", m)


def test_load_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidPayload, match="is not a directory"):
        load_manifest(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidPayload, match=r"payload\.yaml: .* does not exist"):
        load_manifest(tmp_path / "empty")
    with pytest.raises(InvalidPayload, match="is not a directory"):
        verify_payload_files(tmp_path / "nope", manifest_from_dict(base()))


def test_manifest_bytes_that_are_not_utf8_are_refused_by_name() -> None:
    with pytest.raises(InvalidPayload, match=r"payload\.yaml: not valid UTF-8 text"):
        parse_manifest_yaml(b"name: \xff\n")
