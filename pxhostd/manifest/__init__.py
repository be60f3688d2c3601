"""Kubernetes manifest generator (successor of px-spec-websvc)."""
