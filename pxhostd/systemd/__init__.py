"""Client for systemd's Manager and Unit objects over D-Bus (dbus-fast)."""
