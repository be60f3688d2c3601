"""Escaping for the kubelet's variable expansion.

The kubelet expands `$(VAR)` in a container's `command`, `args` and `env[].value` (from
the container's environment) and turns `$$` into `$`. A user value holding `$(...)` would
otherwise pull another variable (a Secret's, say) into the args, which end up in the
world-readable unit and in `ps`. Doubling every `$` makes the kubelet hand over exactly
the text given. (`valueFrom` values are never expanded.)
"""

from __future__ import annotations

from typing import Any


def escape(text: str) -> str:
    """`text` as the kubelet must be given it to pass it on unchanged."""
    return text.replace("$", "$$")


def escape_container(container: dict[str, Any]) -> dict[str, Any]:
    """The container with every expanded field escaped (command, args, env values)."""
    out = dict(container)
    for key in ("command", "args"):
        if key in out:
            out[key] = [escape(item) for item in out[key]]
    if "env" in out:
        out["env"] = [
            {**entry, "value": escape(entry["value"])} if "value" in entry else dict(entry)
            for entry in out["env"]
        ]
    return out
