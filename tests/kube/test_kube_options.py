"""The payload's `drain` key, the pod's drain options, and when an upgrade is disruptive."""

from __future__ import annotations

import pytest

from pxhostd.errors import InvalidPayload
from pxhostd.kube.podside import is_disruptive
from pxhostd.payload.manifest import manifest_from_dict
from pxhostd.payload.staging import make_release_id
from pxhostd.pod.specbuild import UsageError, parse_pod_args

SHA = "0" * 64


def manifest(version: str = "2.0.0", **extra: object) -> dict[str, object]:
    return {"name": "px", "version": version, "exec": ["bin/px"], "files": {"bin/px": SHA},
            **extra}


def test_drain_key_defaults_to_never_and_keeps_old_digests() -> None:
    plain = manifest_from_dict(manifest())
    assert plain.drain == "never"
    assert manifest_from_dict(manifest(drain="never")).digest == plain.digest
    disruptive = manifest_from_dict(manifest(drain="on-upgrade"))
    assert disruptive.drain == "on-upgrade"
    assert disruptive.digest != plain.digest
    assert manifest_from_dict(disruptive.to_dict()) == disruptive


@pytest.mark.parametrize("value", ["always", True, "", "On-Upgrade"])
def test_bad_drain_values_are_named(value: object) -> None:
    with pytest.raises(InvalidPayload, match=r"payload\.yaml drain"):
        manifest_from_dict(manifest(drain=value))


def test_disruptive_only_for_an_upgrade_of_an_installed_release() -> None:
    new = manifest_from_dict(manifest(drain="on-upgrade"))
    target = make_release_id(new.version, new.digest)
    assert is_disruptive(new, {"installed": True, "release": "1.0.0-abc"})
    assert not is_disruptive(new, {"installed": True, "release": target})  # nothing to switch
    assert not is_disruptive(new, {"installed": False, "release": ""})  # first install
    quiet = manifest_from_dict(manifest())
    assert not is_disruptive(quiet, {"installed": True, "release": "1.0.0-abc"})


def test_drain_options() -> None:
    opts = parse_pod_args(["--drain-all", "--drain-timeout", "90", "-c", "c1", "--sync"])
    assert opts.drain_all and opts.drain_timeout == 90.0
    assert opts.args == ("-c", "c1")
    assert opts.ignored == ("--sync",)
    assert parse_pod_args([]).drain_timeout == 600.0 and not parse_pod_args([]).drain_all
    for bad in ("0", "-5", "soon", "1e9"):
        with pytest.raises(UsageError, match="--drain-timeout"):
            parse_pod_args(["--drain-timeout", bad])
