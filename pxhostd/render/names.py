"""Names of the files pxhostd manages beside a unit; light on purpose (no jinja2), since the
engine's start-up recovery needs them before anything is rendered."""

from __future__ import annotations


def env_file_name(service: str) -> str:
    """The service's environment, kept out of the unit (unit files are world-readable and
    `Environment=` is a public D-Bus property; env values may be secrets). Relative to the
    unit directory; written mode 0600; not a unit file, so systemd loads it only through
    the unit's `EnvironmentFile=`."""
    return f"{service}.service.d/pxhostd.env"


def is_unit_file(name: str) -> bool:
    """True for the unit files among the managed files (not the environment file)."""
    return "/" not in name
