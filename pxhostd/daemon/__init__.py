"""Daemon lifecycle: start, notify systemd, watchdog, signals, shutdown."""
