"""What every engine procedure works with: paths, stores, failpoints, the systemd client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pxhostd.engine.journal import Journal
from pxhostd.engine.settings import EngineSettings
from pxhostd.engine.state import AppliedStateStore
from pxhostd.errors import HostStateError
from pxhostd.failpoints import Failpoints
from pxhostd.hostfs import atomic_write, host_lock_polled, remove_file
from pxhostd.paths import Paths
from pxhostd.payload.staging import Releases
from pxhostd.render.names import is_unit_file
from pxhostd.systemd.client import Systemd

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class HostContext:
    paths: Paths
    settings: EngineSettings
    failpoints: Failpoints
    releases: Releases
    journal: Journal
    applied: AppliedStateStore
    systemd: Systemd
    #: Set when an operation left something to collect (see `collect`); the releases to
    #: keep, or None to prune none and only collect unreferenced objects.
    collect_pending: bool = False
    collect_keep: frozenset[str] | None = None

    @classmethod
    def create(
        cls, paths: Paths, settings: EngineSettings, failpoints: Failpoints, systemd: Systemd
    ) -> HostContext:
        return cls(
            paths=paths,
            settings=settings,
            failpoints=failpoints,
            releases=Releases(paths.releases_dir, failpoints),
            journal=Journal(paths.journal_file, failpoints),
            applied=AppliedStateStore(paths.applied_file),
            systemd=systemd,
        )

    def want_collect(self, keep: frozenset[str] | None) -> None:
        """Ask for a collection after this operation has reported (never inside it)."""
        self.collect_pending = True
        self.collect_keep = keep

    def unit_path(self, name: str) -> Path:
        return self.paths.unit_dir / name

    def read_unit(self, name: str) -> str | None:
        """A managed file's text (undecodable bytes replaced), None if absent."""
        try:
            return self.unit_path(name).read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise HostStateError(f"cannot read {self.unit_path(name)}: {exc.strerror}") from exc

    def write_unit(self, name: str, text: str | None) -> bool:
        """Write or remove one managed file: a unit (0644) or the environment file (0600)."""
        path = self.unit_path(name)
        if text is None:
            removed = remove_file(path)
            if not is_unit_file(name):
                with contextlib.suppress(OSError):  # the drop-in dir, once empty
                    path.parent.rmdir()
            return removed
        return atomic_write(path, text, 0o644 if is_unit_file(name) else 0o600)

    @contextlib.asynccontextmanager
    async def locked(self, wait: float = 60.0) -> AsyncIterator[None]:
        """The host lock the pod side shares, held for one whole operation."""
        async with host_lock_polled(self.paths.lock_file, wait):
            yield


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Blocking host work (hashing, fsync'd writes) off the event loop."""
    return await asyncio.to_thread(fn, *args)
