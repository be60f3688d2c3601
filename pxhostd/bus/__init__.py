"""The com.portworx.pxhostd1 D-Bus surface: exported interface, transactions, client."""
