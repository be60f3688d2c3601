"""The payload's `drain` key, the pod's drain options, and when an upgrade is disruptive."""

from __future__ import annotations

from pathlib import Path

import pytest

from pxhostd.errors import InvalidPayload
from pxhostd.kube.podside import KubeSide, is_disruptive
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


def test_without_a_usable_service_account_the_pod_runs_on_without_kubernetes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert KubeSide.create("n1", lines.append, drain_all=False, drain_timeout=5,
                           sa_dir=tmp_path) is None
    assert "no service account" in lines[-1]
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    (tmp_path / "token").write_text("t")  # a token, but no ca.crt
    assert KubeSide.create("n1", lines.append, drain_all=False, drain_timeout=5,
                           sa_dir=tmp_path) is None
    assert "certification file does not exist" in lines[-1], lines[-1]
    assert "drain and node-label control off" in lines[-1]
    (tmp_path / "ca.crt").write_text("x")
    assert KubeSide.create(None, lines.append, drain_all=False, drain_timeout=5,
                           sa_dir=tmp_path) is None
    assert "PXHOSTD_NODE_NAME" in lines[-1]
