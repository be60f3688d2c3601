"""Kubernetes objects for pxhostd's pod, built as plain Python data (never as YAML text)."""

from pxhostd.manifest.model.generate import build_objects, render_yaml

__all__ = ["build_objects", "render_yaml"]
