"""Helpers for engine tests on a booted node: demo payloads, specs, service facts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from nodeharness import REPO_ROOT, Node, wait_for

BUILD = REPO_ROOT / "container" / "demo-payload" / "build.py"
PAYLOADS = "/var/lib/pxtest/payloads"
SPEC_FILE = "/etc/pxhostd/spec.yaml"
UNIT = "portworx.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
#: The service's environment: a root-only file beside the unit, named by EnvironmentFile=.
ENV_FILE = f"/etc/systemd/system/{UNIT}.d/pxhostd.env"
RELEASES = "/opt/pwx/releases"


def build_payload(node: Node, tmp: Path, name: str, version: str, *extra: str) -> str:
    """Build a demo payload on the host and copy it into the node; return its node path."""
    out = tmp / name
    subprocess.run(
        [sys.executable, str(BUILD), str(out), "--version", version, *extra],
        check=True,
        capture_output=True,
    )
    path = f"{PAYLOADS}/{name}"
    node.copy_in(out, path)
    return path


def write_spec(node: Node, spec: dict[str, Any], path: str = SPEC_FILE) -> str:
    node.write_file(path, yaml.safe_dump(spec, sort_keys=False))
    return path


def pxhostctl(node: Node, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return node.run(["pxhostctl", *args], check=check, timeout=300)


def install(
    node: Node, spec: dict[str, Any], *extra: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    path = write_spec(node, spec, "/var/lib/pxtest/spec.yaml")
    return pxhostctl(node, "install", "--spec", path, *extra, check=check)


def invocation(node: Node) -> str:
    return node.unit_property(UNIT, "InvocationID")


def service_env(node: Node) -> dict[str, str]:
    """The environment the running service really has (its main process's /proc entry)."""
    pid = node.unit_property(UNIT, "MainPID")
    raw = node.read_bytes(f"/proc/{pid}/environ")
    pairs = (item.decode().partition("=") for item in raw.split(b"\0") if item)
    return {name: value for name, _, value in pairs}


def payload_status(node: Node) -> dict[str, Any]:
    out = node.run(["curl", "-sf", "--max-time", "5", "http://127.0.0.1:9001/status"]).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def wait_pxhostd(node: Node) -> None:
    node.wait_active("pxhostd", timeout=90)
    wait_for(
        lambda: pxhostctl(node, "status", "--json", check=False),
        # status answers 0, 6 (nothing installed) or 9 (not running as specified).
        lambda r: r.returncode in (0, 6, 9) and json.loads(r.stdout)["state"] == "idle",
        timeout=120,
        what="pxhostd to be idle",
    )


def current_release(node: Node) -> str:
    return node.run(["readlink", f"{RELEASES}/current"]).stdout.strip()


def releases(node: Node) -> list[str]:
    out = node.run(["ls", "-A", RELEASES], check=False).stdout.split()
    # Hidden entries are the release store's objects (.store) and temp trees, no releases.
    return sorted(r for r in out if r != "current" and not r.startswith("."))


def temp_files(node: Node) -> list[str]:
    out = node.run(
        "find /etc/systemd/system /opt/pwx /var/lib/pxhostd -name '.pxhostd-tmp-*' 2>/dev/null",
        check=False,
    ).stdout
    return out.split()


def mtime(node: Node, path: str) -> str:
    return node.run(["stat", "-c", "%Y.%y", path]).stdout.strip()


def wait_collected(node: Node) -> None:
    """Pruning and collection run after an operation reported: wait until they are done."""
    wait_for(
        lambda: (node.exists("/var/lib/pxhostd/journal.json"), temp_files(node)),
        lambda state: state == (False, []),
        timeout=120,
        what="the collection after the operation to finish",
    )


def assert_consistent(node: Node, version: str) -> None:
    """Exactly one release current, the unit matches it, the service runs it, no leftovers."""
    wait_collected(node)
    applied = json.loads(node.read_file("/var/lib/pxhostd/applied.json"))
    assert current_release(node) == applied["release_id"]
    assert applied["version"] == version
    assert node.run(["systemctl", "is-active", UNIT], check=False).stdout.strip() == "active"
    assert payload_status(node)["version"] == version
    assert temp_files(node) == []
    assert not node.exists("/var/lib/pxhostd/journal.json")
    unit_text = node.read_file(UNIT_FILE)
    import hashlib

    assert hashlib.sha256(unit_text.encode()).hexdigest() == applied["unit_digests"][UNIT]


def untag(value: Any) -> Any:
    """busdriver.py's tagged values ({"$v": [signature, value]}) as plain Python values."""
    if isinstance(value, dict):
        if set(value) == {"$v"}:
            return untag(value["$v"][1])
        return {k: untag(x) for k, x in value.items()}
    if isinstance(value, list):
        return [untag(x) for x in value]
    return value
