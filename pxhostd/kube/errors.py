"""Named errors of the pod's Kubernetes side."""

from __future__ import annotations

from pxhostd.errors import PxError


class KubeApiError(PxError):
    """The Kubernetes API refused or failed a request (status and reason kept)."""

    name = "KubeApiError"

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class DrainTimeout(PxError):
    """Pods still ran on the node when the drain's time was up; nothing was applied."""

    name = "DrainTimeout"
