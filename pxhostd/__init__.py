"""pxhostd: keeps a storage service (Portworx) installed and running under the host's systemd."""

__version__ = "0.1.0"
