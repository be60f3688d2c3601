"""Service names a spec may not take: a unit of that name would shadow one of the host's
own, or read as a double unit name."""

from __future__ import annotations

#: Unit-type suffixes: a service name ending in one would make a confusing double name.
UNIT_SUFFIXES = (
    ".service", ".socket", ".device", ".mount", ".automount", ".swap", ".target", ".path",
    ".timer", ".slice", ".scope",
)

#: Names of the host's own services and of targets: a unit of that name in
#: /etc/systemd/system would shadow the vendor's.
_RESERVED_PREFIXES = ("systemd", "dbus", "ssh", "getty", "user-", "user@", "pxhostd")
_RESERVED_NAMES = frozenset({
    "init", "emergency", "rescue", "default", "halt", "poweroff", "reboot", "kexec",
    "shutdown", "exit", "final", "umount", "sysinit", "basic", "multi-user", "graphical",
    "network", "network-online", "network-pre", "local-fs", "local-fs-pre", "remote-fs",
    "remote-fs-pre", "sockets", "timers", "paths", "slices", "swap", "sleep", "suspend",
    "hibernate", "hybrid-sleep", "suspend-then-hibernate", "ctrl-alt-del", "nss-lookup",
    "nss-user-lookup", "time-sync", "time-set", "cryptsetup", "cryptsetup-pre",
    "first-boot-complete", "getty-pre", "initrd", "system-update", "smartcard", "sound",
    "bluetooth", "printer", "usb", "rpcbind", "machines", "boot-complete", "integritysetup",
    "veritysetup", "factory-reset", "soft-reboot", "emergency-net", "cron", "rsyslog",
    "udev", "logind", "journald", "networking", "apt-daily", "polkit", "rtkit-daemon",
})


def reserved_reason(service: str) -> str | None:
    """Why `service` may not be pxhostd's service name, None if it may."""
    lowered = service.lower()
    if lowered.endswith(UNIT_SUFFIXES):
        return "it ends in a unit-type suffix (give the name without .service)"
    if lowered.startswith(_RESERVED_PREFIXES):
        return "the prefix belongs to the host's own services"
    if lowered in _RESERVED_NAMES:
        return "it is the name of a host service or a systemd target"
    return None
