"""Rendering unit files from templates, with systemd escaping of every value."""
