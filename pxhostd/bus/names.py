"""Every wire name of pxhostd's D-Bus surface, in one place."""

BUS_NAME = "com.portworx.pxhostd1"
OBJECT_PATH = "/com/portworx/pxhostd1"
MANAGER_INTERFACE = "com.portworx.pxhostd1.Manager"
TRANSACTION_INTERFACE = "com.portworx.pxhostd1.Transaction"
TRANSACTION_PATH_PREFIX = OBJECT_PATH + "/transaction"
#: The value of ActiveTransaction when none runs (D-Bus has no null object path).
NO_TRANSACTION = "/"
