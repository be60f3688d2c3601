"""The desired spec: what the host should run (payload, args, env, mounts)."""
