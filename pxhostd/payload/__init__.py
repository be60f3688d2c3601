"""Payloads: the manifest of a payload directory, and staging it into versioned releases."""
