"""The kubelet's variable expansion, re-implemented to check what a container really gets.

Follows Kubernetes' `third_party/forked/golang/expansion` and the kubelet's
`makeEnvironmentVariables`: `$$` becomes `$`; `$(NAME)` becomes NAME's value when NAME is
defined (for an env value: by an earlier entry; for command and args: by any entry), else
it stays `$(NAME)`; `$(` without `)` and `$` before anything else stay as they are.
`valueFrom` values are taken verbatim (here from the manifest's Secret, and a node name).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Obj = dict[str, Any]


def expand(text: str, mapping: Callable[[str], str]) -> str:
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            rest = text[cursor + 1 :]
            if rest[0] == "$":
                read, is_var, advance = "$", False, 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close == -1:
                    read, is_var, advance = "$(", False, 1
                else:
                    read, is_var, advance = rest[1:close], True, close + 1
            else:
                read, is_var, advance = "$" + rest[0], False, 1
            out.append(mapping(read) if is_var else read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def mapping_for(*contexts: Mapping[str, str]) -> Callable[[str], str]:
    def lookup(name: str) -> str:
        for ctx in contexts:
            if name in ctx:
                return ctx[name]
        return f"$({name})"

    return lookup


def resolve_value_from(source: Obj, secret_data: Mapping[str, str], node_name: str) -> str:
    if "secretKeyRef" in source:
        return secret_data[source["secretKeyRef"]["key"]]
    if source.get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
        return node_name
    raise AssertionError(f"unexpected valueFrom {source}")


def container_as_run(
    container: Obj, secret_data: Mapping[str, str], node_name: str = "node-1"
) -> Obj:
    """command, args and env (a dict, in order) as the container's process gets them."""
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if entry.get("value", "") != "":
            env[entry["name"]] = expand(entry["value"], mapping_for(env))
        elif "valueFrom" in entry:
            env[entry["name"]] = resolve_value_from(entry["valueFrom"], secret_data, node_name)
        else:
            env[entry["name"]] = ""
    lookup = mapping_for(env)
    return {
        "command": [expand(c, lookup) for c in container.get("command", [])],
        "args": [expand(a, lookup) for a in container.get("args", [])],
        "env": env,
    }

