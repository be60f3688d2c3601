"""pxhostctl, the command-line client.

A command makes a few calls and exits, so it loads only dbus-fast's message codec
(`pxhostd.bus.codec`), before anything here imports dbus-fast, and talks over a blocking
connection (`pxhostd.bus.blocking`).
"""

from pxhostd.bus.codec import load_codec

load_codec()
