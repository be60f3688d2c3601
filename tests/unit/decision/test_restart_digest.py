"""The restart decision: which changes move the digest and which do not."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pxhostd.engine.decision import (
    compute_restart_digest,
    is_pod_volume_mount,
    render_for_digest,
    restart_digest,
    restart_relevant_spec,
    unit_digests,
)
from pxhostd.paths import KUBELET_PODS_DIR, Paths
from pxhostd.payload.manifest import Manifest, manifest_from_dict
from pxhostd.render.units import render_units
from pxhostd.spec import Mount, Spec, spec_from_dict

REPO = Path(__file__).resolve().parents[3]
ROOT = "/opt/pwx/releases/current"
PATHS = Paths(templates_dir=REPO / "templates")
POD_MOUNT = f"{KUBELET_PODS_DIR}/1234/volumes/kubernetes.io~csi/pvc-1/mount"


def man(**overrides: object) -> Manifest:
    data: dict[str, object] = {"name": "px", "version": "1.0", "exec": ["bin/px"],
                               "notify": True, "files": {"bin/px": "a" * 64}}
    data.update(overrides)
    return manifest_from_dict(data)


def spec(**overrides: object) -> Spec:
    data: dict[str, object] = {
        "payload": "/opt/payloads/px",
        "args": ["-c", "c1"],
        "env": {"A": "1"},
        "mounts": ["/etc/pwx:/etc/pwx", "/var/lib/kubelet/pods:/var/lib/kubelet/pods"],
    }
    data.update(overrides)
    return spec_from_dict(data)


def digest(s: Spec, m: Manifest | None = None) -> str:
    return compute_restart_digest(s, m or man(), ROOT, PATHS)


BASE = spec()


def test_same_input_same_digest() -> None:
    assert digest(spec()) == digest(spec())
    assert len(digest(spec())) == 64


def test_digest_is_stable_across_processes() -> None:
    """No hash randomisation or dict order leaks in: a fresh interpreter agrees."""
    code = (
        "import json,sys; from pathlib import Path;"
        "from pxhostd.engine.decision import compute_restart_digest;"
        "from pxhostd.paths import Paths; from pxhostd.spec import spec_from_dict;"
        "from pxhostd.payload.manifest import manifest_from_dict;"
        "s, m, t = json.loads(sys.argv[1]);"
        "print(compute_restart_digest(spec_from_dict(s), manifest_from_dict(m), "
        f"{ROOT!r}, Paths(templates_dir=Path(t))))"
    )
    arg = json.dumps([BASE.to_dict(), man().to_dict(), str(REPO / "templates")])
    out = subprocess.run(
        [sys.executable, "-c", code, arg], capture_output=True, text=True, check=True,
        cwd=REPO, env={"PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)},
    )
    assert out.stdout.strip() == digest(BASE)


@pytest.mark.parametrize(
    ("label", "changed"),
    [
        ("env value", spec(env={"A": "2"})),
        ("env added", spec(env={"A": "1", "B": "1"})),
        ("arg", spec(args=["-c", "c2"])),
        ("arg order", spec(args=["c1", "-c"])),
        ("other mount added", spec(mounts=["/etc/pwx:/etc/pwx",
                                           "/var/lib/kubelet/pods:/var/lib/kubelet/pods",
                                           "/var/cores:/var/cores"])),
        ("other mount option", spec(mounts=["/etc/pwx:/etc/pwx:ro",
                                            "/var/lib/kubelet/pods:/var/lib/kubelet/pods"])),
        ("pods dir itself removed", spec(mounts=["/etc/pwx:/etc/pwx"])),
        ("lookalike of pods dir", spec(mounts=[
            "/etc/pwx:/etc/pwx", "/var/lib/kubelet/pods:/var/lib/kubelet/pods",
            "/var/lib/kubelet/pods-extra/x:/x"])),
        ("service name", spec(service="px2")),
    ],
)
def test_changes_that_need_a_restart(label: str, changed: Spec) -> None:
    assert digest(changed) != digest(BASE), label


@pytest.mark.parametrize(
    ("label", "manifest"),
    [
        ("payload version", man(version="1.1")),
        ("payload file content", man(files={"bin/px": "b" * 64})),
        ("payload fixed args", man(exec=["bin/px", "--x"])),
        ("notify type", man(notify=False)),
    ],
)
def test_payload_changes_need_a_restart(label: str, manifest: Manifest) -> None:
    assert digest(BASE, manifest) != digest(BASE), label


@pytest.mark.parametrize(
    "extra",
    [
        f"{POD_MOUNT}:{POD_MOUNT}",
        f"/srv/vol:{POD_MOUNT}",
        f"{POD_MOUNT}:/mnt/x:ro",
    ],
)
def test_pod_volume_mount_change_alone_does_not_restart(extra: str) -> None:
    added = spec(mounts=["/etc/pwx:/etc/pwx", "/var/lib/kubelet/pods:/var/lib/kubelet/pods",
                         extra])
    assert digest(added) == digest(BASE)
    # ...although the live unit does change (it must carry the mount).
    assert render_units(added, man(), ROOT, PATHS) != render_units(BASE, man(), ROOT, PATHS)


def test_pod_volume_mount_does_not_hide_a_real_change() -> None:
    both = spec(env={"A": "2"}, mounts=["/etc/pwx:/etc/pwx",
                                        "/var/lib/kubelet/pods:/var/lib/kubelet/pods",
                                        f"{POD_MOUNT}:{POD_MOUNT}"])
    assert digest(both) != digest(BASE)


@pytest.mark.parametrize(
    ("path", "under"),
    [
        (f"{KUBELET_PODS_DIR}/abc", True),
        (f"{KUBELET_PODS_DIR}/abc/volumes/x", True),
        (KUBELET_PODS_DIR, False),
        (f"{KUBELET_PODS_DIR}-other/abc", False),
        ("/var/lib/kubelet/podsx", False),
        ("/var/lib/kubelet", False),
        ("/srv" + KUBELET_PODS_DIR + "/abc", False),
    ],
)
def test_pod_volume_detection_is_path_prefix_not_substring(path: str, under: bool) -> None:
    assert is_pod_volume_mount(Mount(path, "/dst")) is under
    assert is_pod_volume_mount(Mount("/src", path)) is under


def test_custom_kubelet_root() -> None:
    m = Mount("/var/lib/k0s/kubelet/pods/x", "/x")
    assert not is_pod_volume_mount(m)
    assert is_pod_volume_mount(m, pods_dir="/var/lib/k0s/kubelet/pods")


def test_restart_relevant_spec_drops_only_pod_volume_mounts() -> None:
    s = spec(mounts=["/etc/pwx:/etc/pwx", f"{POD_MOUNT}:{POD_MOUNT}"])
    assert restart_relevant_spec(s).mounts == (Mount("/etc/pwx", "/etc/pwx"),)
    assert dataclasses.replace(restart_relevant_spec(s), mounts=s.mounts) == s


def test_render_for_digest_leaves_out_pod_volume_mounts() -> None:
    s = spec(mounts=["/etc/pwx:/etc/pwx", f"{POD_MOUNT}:{POD_MOUNT}"])
    text = render_for_digest(s, man(), ROOT, PATHS)[s.unit_name]
    assert POD_MOUNT not in text
    assert "BindPaths=/etc/pwx:/etc/pwx" in text


def test_unit_text_change_moves_the_digest() -> None:
    texts = render_for_digest(BASE, man(), ROOT, PATHS)
    tweaked = {k: v.replace("Restart=on-failure", "Restart=always") for k, v in texts.items()}
    assert restart_digest(BASE, man(), tweaked) != restart_digest(BASE, man(), texts)


def test_reboot_unit_is_part_of_the_digest() -> None:
    m = man(files={"bin/px": "a" * 64, "bin/r": "b" * 64}, reboot_unit=True,
            reboot_exec=["bin/r"])
    texts = render_for_digest(BASE, m, ROOT, PATHS)
    assert set(texts) == {
        "portworx.service",
        "portworx-reboot.service",
        "portworx.service.d/pxhostd.env",
    }
    assert restart_digest(BASE, m, texts) == compute_restart_digest(BASE, m, ROOT, PATHS)


def test_unit_digests() -> None:
    got = unit_digests({"b.service": "x", "a.service": "ü"})
    assert list(got) == ["a.service", "b.service"]
    assert got["b.service"] == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
    assert got["a.service"] != got["b.service"]


def test_comments_and_blank_lines_of_a_unit_do_not_matter() -> None:
    from pxhostd.engine.decision import unit_settings

    spec = Spec(payload="/opt/payload")
    manifest = Manifest(name="px", version="1.0", exec=("bin/px",), files=(("bin/px", "0" * 64),))
    text = "# generated\n[Service]\nExecStart=/x\n"
    reworded = "# Generated by a newer pxhostd\n\n[Service]\n  ExecStart=/x\n"
    changed = "# generated\n[Service]\nExecStart=/y\n"
    assert unit_settings(text) == unit_settings(reworded)
    same = restart_digest(spec, manifest, {"px.service": text})
    assert restart_digest(spec, manifest, {"px.service": reworded}) == same
    assert restart_digest(spec, manifest, {"px.service": changed}) != same
    documented = "# generated\n[Unit]\nDocumentation=man:px(8)\n[Service]\nExecStart=/x\n"
    assert unit_settings(documented) == unit_settings("[Unit]\n" + text)
