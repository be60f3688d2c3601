"""Rendering unit files from templates, with systemd escaping of every value."""

from pxhostd.render.units import reboot_unit_name, render_units
from pxhostd.render.verify import verify_unit_text

__all__ = ["reboot_unit_name", "render_units", "verify_unit_text"]
