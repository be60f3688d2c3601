"""The desired spec: what the host should run (payload, args, env, mounts)."""

from pxhostd.spec.model import DEFAULT_SERVICE, Mount, Spec
from pxhostd.spec.validate import load_spec, parse_mount, parse_spec_yaml, spec_from_dict

__all__ = [
    "DEFAULT_SERVICE",
    "Mount",
    "Spec",
    "load_spec",
    "parse_mount",
    "parse_spec_yaml",
    "spec_from_dict",
]
