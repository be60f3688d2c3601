"""Engine settings: timeouts with their reasons, and the optional daemon config file.

How the waits nest: a systemd job wait (`activation_timeout`) bounds one start/restart; the
settle window (`settle_seconds`) follows it, to catch a payload that reports ready and dies
right after; rollback runs its own start with the same bound. All are far below the D-Bus
client's patience because clients follow transactions by signal, not by a blocking call.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import yaml

from pxhostd.errors import InvalidOptions


@dataclass(frozen=True)
class EngineSettings:
    #: Seconds a start/restart job may take before the release counts as failed (systemd
    #: also enforces the unit's own TimeoutStartSec=).
    activation_timeout: float = 90.0
    #: Seconds the service must stay active, on the same invocation, after its job ended.
    settle_seconds: float = 2.0
    #: Seconds a stop job may take (Portworx flushes I/O on stop).
    stop_timeout: float = 120.0
    #: Seconds systemd gets for a daemon-reload or a unit-file call.
    reload_timeout: float = 30.0
    #: Journal lines quoted when a release fails to start.
    journal_lines: int = 15


def load_settings(path: Path) -> EngineSettings:
    """Read `key: value` overrides from the daemon config file, if present."""
    if not path.is_file():
        return EngineSettings()
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidOptions(f"{path}: cannot read settings: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidOptions(f"{path}: expected a mapping of settings")
    known = {f.name: f.type for f in fields(EngineSettings)}
    settings = EngineSettings()
    for key, value in doc.items():
        if key not in known:
            raise InvalidOptions(f"{path}: unknown setting {key!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise InvalidOptions(f"{path}: setting {key!r} must be a non-negative number")
        current = getattr(settings, key)
        settings = replace(settings, **{key: type(current)(value)})
    return settings
