"""What a test gets: the stand-in server, its store, and the pod's client pointed at it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubeapi.server import KubeApiServer
from kubeapi.store import Store
from pxhostd.kube.api import KubeApi


@dataclass
class Cluster:
    store: Store
    server: KubeApiServer
    api: KubeApi
    sa_dir: Path
