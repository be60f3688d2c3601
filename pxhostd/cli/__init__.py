"""pxhostctl, the command-line client."""
