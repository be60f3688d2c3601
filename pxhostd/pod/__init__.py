"""The DaemonSet pod side: entrypoint, host hand-off, legacy health endpoint."""
