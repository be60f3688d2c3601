"""What pxhostctl reads from systemd itself (readable by every user): the unit's enablement
and its own `STATUS=` text. pxhostd reports its view; these are systemd's, first hand.
Any failure (no systemd on this bus, unit not loaded) is "unknown", never an error.
"""

from __future__ import annotations

from typing import Any

from pxhostd.bus.client import PxClient
from pxhostd.errors import PxError
from pxhostd.variants import unwrap

SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
SYSTEMD_MANAGER = "org.freedesktop.systemd1.Manager"
PROPERTIES = "org.freedesktop.DBus.Properties"


async def _systemd(client: PxClient, member: str, signature: str, body: list[Any],
                   path: str = SYSTEMD_PATH, interface: str = SYSTEMD_MANAGER) -> Any | None:
    try:
        reply = await client.call(member, signature, body, path=path, interface=interface,
                                  destination=SYSTEMD)
    except PxError:
        return None
    return unwrap(reply[0]) if reply else None


async def unit_file_state(client: PxClient, unit: str) -> str | None:
    """`systemctl is-enabled`: enabled, disabled, static, ... or None if unknown."""
    value = await _systemd(client, "GetUnitFileState", "s", [unit])
    return str(value) if value else None


async def status_text(client: PxClient, unit: str) -> str | None:
    """The unit's STATUS= text (sd_notify), or None if it has none or is not loaded."""
    path = await _systemd(client, "GetUnit", "s", [unit])
    if not path:
        return None
    value = await _systemd(client, "Get", "ss", ["org.freedesktop.systemd1.Service",
                                                "StatusText"], path=str(path),
                           interface=PROPERTIES)
    return str(value) if value else None
