"""The restart decision, on structured data: a digest of what matters to the running service.

The service is restarted when this digest differs from the one recorded at the last
successful apply, and only then. It covers the payload (manifest digest, which includes
every file's sha256), the rendered unit texts, args, env and mounts, with one exception
kept from the old monitor and done properly: a bind mount whose source or destination lies
below the kubelet pods directory comes and goes with pod volumes and never restarts
storage. Such mounts are left out of the mount list *and* out of the unit text used for the
digest (`render_for_digest`), so adding or removing one changes nothing here, while the
live unit file still gets them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping

from pxhostd.paths import KUBELET_PODS_DIR, Paths
from pxhostd.payload.manifest import PayloadInfo
from pxhostd.render.units import render_units
from pxhostd.spec.model import Mount, Spec
from pxhostd.spec.rules import is_under

#: Unit settings that only inform people; changing them never restarts the service.
NOT_FOR_THE_SERVICE = ("Documentation=",)

#: Bumped when the digest's composition changes, so an old recorded digest never matches.
DIGEST_VERSION = 2


def _sha256_json(data: object) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def is_pod_volume_mount(mount: Mount, pods_dir: str = KUBELET_PODS_DIR) -> bool:
    """True if the mount's source or destination lies strictly below the pods directory."""
    return is_under(mount.src, pods_dir) or is_under(mount.dst, pods_dir)


def restart_relevant_spec(spec: Spec, pods_dir: str = KUBELET_PODS_DIR) -> Spec:
    """The spec without pod-volume mounts: what a restart decision looks at."""
    kept = tuple(m for m in spec.mounts if not is_pod_volume_mount(m, pods_dir))
    return dataclasses.replace(spec, mounts=kept)


def render_for_digest(
    spec: Spec,
    manifest: PayloadInfo,
    release_root: str,
    paths: Paths,
    pods_dir: str = KUBELET_PODS_DIR,
) -> dict[str, str]:
    """Unit texts rendered from the restart-relevant spec (no pod-volume mounts)."""
    return render_units(restart_relevant_spec(spec, pods_dir), manifest, release_root, paths)


def unit_settings(text: str) -> str:
    """A unit's settings without comments and blank lines: what systemd acts on.

    A pxhostd package upgrade that only rewords the generated header, or points
    `Documentation=` elsewhere, must not restart storage at the next reconcile; the file
    is still rewritten, the service left alone.
    """
    kept = [ln.strip() for ln in text.splitlines()]
    return "\n".join(
        ln for ln in kept if ln and not ln.startswith(("#", ";", *NOT_FOR_THE_SERVICE))
    )


def unit_digests(unit_texts: Mapping[str, str]) -> dict[str, str]:
    """Unit file name -> sha256 of its UTF-8 text."""
    return {
        name: hashlib.sha256(text.encode("utf-8")).hexdigest()
        for name, text in sorted(unit_texts.items())
    }


def restart_digest(
    spec: Spec,
    manifest: PayloadInfo,
    unit_texts: Mapping[str, str],
    pods_dir: str = KUBELET_PODS_DIR,
) -> str:
    """Digest of everything whose change needs a restart.

    `unit_texts` must come from `render_for_digest` (pod-volume mounts left out); passing
    the live unit texts would let a pod-volume mount change restart the service.
    """
    relevant = restart_relevant_spec(spec, pods_dir)
    return _sha256_json({
        "version": DIGEST_VERSION,
        "payload": manifest.digest,
        "units": unit_digests({n: unit_settings(t) for n, t in unit_texts.items()}),
        "service": relevant.service,
        "args": list(relevant.args),
        "env": [list(pair) for pair in relevant.env],
        "mounts": [str(m) for m in relevant.mounts],
    })


def compute_restart_digest(
    spec: Spec,
    manifest: PayloadInfo,
    release_root: str,
    paths: Paths,
    pods_dir: str = KUBELET_PODS_DIR,
) -> str:
    """`render_for_digest` then `restart_digest`: the one call the engine needs."""
    texts = render_for_digest(spec, manifest, release_root, paths, pods_dir)
    return restart_digest(spec, manifest, texts, pods_dir)
