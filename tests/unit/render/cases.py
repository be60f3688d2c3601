"""Fixed specs and manifests shared by the render tests (golden files are made from these)."""

from __future__ import annotations

from pathlib import Path

from pxhostd.paths import Paths
from pxhostd.payload.manifest import Manifest, manifest_from_dict
from pxhostd.spec import Spec, spec_from_dict

REPO = Path(__file__).resolve().parents[3]
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
RELEASE_ROOT = "/opt/pwx/releases/current"
SHA_A = "a" * 64
SHA_B = "b" * 64


def paths() -> Paths:
    """Default host layout, with the repository's templates."""
    return Paths(templates_dir=REPO / "templates")


def manifest(**overrides: object) -> Manifest:
    data: dict[str, object] = {
        "name": "px-demo",
        "version": "1.0.0",
        "exec": ["bin/px", "--serve"],
        "notify": True,
        "health": "http://127.0.0.1:9001/v1/cluster/nodehealth",
        "files": {"bin/px": SHA_A, "bin/px-reboot": SHA_B},
    }
    data.update(overrides)
    return manifest_from_dict(data)


NASTY_ARGS = [
    "-c", "my cluster", 'say "hi"', "100%", "%n", "$HOME", "${HOME}", "$$", "back\\slash",
    "\\n", "", " ", "ü→✓", "a;b", ";", "\\;", "'single'", "-", "@x", "#notacomment",
]
NASTY_ENV = {
    "QUOTES": 'x "y" \'z\'',
    "PERCENT": "50% %i %%",
    "DOLLAR": "$HOME ${X} $$",
    "BACKSLASH": "C:\\dir\\ \\t",
    "EMPTY": "",
    "SPACES": "  lead and trail  ",
    "UNICODE": "grüße ✓",
    "EQUALS": "a=b=c",
}


def cases() -> dict[str, tuple[Spec, Manifest]]:
    """Golden file stem -> (spec, manifest)."""
    return {
        "minimal": (
            spec_from_dict({"payload": "/opt/payloads/px"}),
            manifest(notify=False, health=None, exec=["bin/px"]),
        ),
        "typical": (
            spec_from_dict({
                "payload": "/opt/payloads/px",
                "args": ["-c", "cluster1", "-k", "etcd:http://10.0.0.1:2379", "-s", "/dev/sdb"],
                "env": {"PX_LOG_LEVEL": "info", "AUTO_NODE_RECOVERY_TIMEOUT_IN_SECS": "1500"},
                "mounts": [
                    "/var/lib/kubelet/pods:/var/lib/kubelet/pods",
                    "/etc/pwx:/etc/pwx:ro",
                    "/var/cores:/var/cores:rw,norbind",
                ],
            }),
            manifest(),
        ),
        "nasty": (
            spec_from_dict({
                "payload": "/opt/payloads/px",
                "service": "px.storage-2",
                "args": NASTY_ARGS,
                "env": NASTY_ENV,
                "mounts": ["/srv/data~1:/mnt/ünï-côdé,x=y"],
            }),
            manifest(exec=["bin/px", "--fixed=%p $USER"]),
        ),
        "reboot": (
            spec_from_dict({"payload": "/opt/payloads/px"}),
            manifest(reboot_unit=True, reboot_exec=["bin/px-reboot", "--prepare", "50%"]),
        ),
    }
