"""Where pxhostd keeps things on the host; one object so tests can relocate all of it."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

#: The kubelet pods directory: mounts below it come and go with pod volumes and never
#: justify restarting the storage service.
KUBELET_PODS_DIR = "/var/lib/kubelet/pods"


def _default_templates_dir() -> Path:
    env = os.environ.get("PXHOSTD_TEMPLATES")
    if env:
        return Path(env)
    installed = Path("/usr/share/pxhostd/templates")
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "templates"


@dataclass(frozen=True)
class Paths:
    """Every host location pxhostd reads or writes."""

    #: Desired spec read at start and on reload.
    spec_file: Path = Path("/etc/pxhostd/spec.yaml")
    #: Daemon settings (failpoints, timeouts); optional.
    config_file: Path = Path("/etc/pxhostd/pxhostd.conf")
    #: Persistent state: applied state, operation journal, history.
    state_dir: Path = Path("/var/lib/pxhostd")
    #: Volatile state: status file, host lock.
    run_dir: Path = Path("/run/pxhostd")
    #: Where generated units go (the administrator's unit directory, as the old monitor did).
    unit_dir: Path = Path("/etc/systemd/system")
    #: Staged payload releases and the `current` link.
    releases_dir: Path = Path("/opt/pwx/releases")
    #: Portworx's own configuration directory; kept on uninstall unless wiped.
    pwx_config_dir: Path = Path("/etc/pwx")
    #: Unit templates.
    templates_dir: Path = Path()

    def __post_init__(self) -> None:
        if self.templates_dir == Path():
            object.__setattr__(self, "templates_dir", _default_templates_dir())

    @property
    def status_file(self) -> Path:
        return self.run_dir / "status"

    @property
    def lock_file(self) -> Path:
        return self.run_dir / "host.lock"

    @property
    def journal_file(self) -> Path:
        return self.state_dir / "journal.json"

    @property
    def applied_file(self) -> Path:
        return self.state_dir / "applied.json"

    @property
    def history_file(self) -> Path:
        return self.state_dir / "history.jsonl"

    @property
    def current_link(self) -> Path:
        return self.releases_dir / "current"

    @property
    def pwx_config_file(self) -> Path:
        return self.pwx_config_dir / "config.json"

    def under(self, root: Path) -> Paths:
        """The same layout below `root` (tests, scratch roots)."""

        def move(p: Path) -> Path:
            return root / p.relative_to("/")

        return replace(
            self,
            spec_file=move(self.spec_file),
            config_file=move(self.config_file),
            state_dir=move(self.state_dir),
            run_dir=move(self.run_dir),
            unit_dir=move(self.unit_dir),
            releases_dir=move(self.releases_dir),
            pwx_config_dir=move(self.pwx_config_dir),
        )
