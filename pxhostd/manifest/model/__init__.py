"""Kubernetes objects (or the Swarm stack) for pxhostd's pod, built as plain Python data
(never as YAML text)."""

from pxhostd.manifest.model.generate import build_objects, render_yaml
from pxhostd.manifest.model.swarm import render_compose
from pxhostd.manifest.params import ManifestParams


def render_for_platform(p: ManifestParams) -> str:
    """The output for `p.platform`: Kubernetes manifests, or a compose file for Swarm."""
    return render_compose(p) if p.platform == "swarm" else render_yaml(p)


__all__ = ["build_objects", "render_compose", "render_for_platform", "render_yaml"]
