"""Assemble the manifest objects and serialise them: every value through yaml.safe_dump.

No text templating: user values only ever reach the output as Python strings handed to
the YAML emitter. Strings that a YAML 1.1 or 1.2 reader could take for anything but a
string (numbers, booleans, null, octal, sexagesimal ...) are double-quoted; only plain
identifier-like strings stay unquoted.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import yaml

from pxhostd import __version__
from pxhostd.log import REDACTED, is_secret_name
from pxhostd.manifest.model import cluster, daemonset
from pxhostd.manifest.params import PARAMS, ManifestParams
from pxhostd.manifest.values import show

Obj = dict[str, Any]

_PLAIN_SAFE = re.compile(r"-?[A-Za-z_/][A-Za-z0-9_./:-]*")
_RESERVED_WORDS = frozenset(
    {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf"}
)


class _Dumper(yaml.SafeDumper):
    """SafeDumper that quotes every string which is not obviously just a string."""

    def ignore_aliases(self, data: Any) -> bool:
        # Shared dicts (the pod labels) are written out in full: no &anchors / *aliases.
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    plain = bool(_PLAIN_SAFE.fullmatch(value)) and value.lower() not in _RESERVED_WORDS
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=None if plain else '"')


_Dumper.add_representer(str, _represent_str)


def build_objects(p: ManifestParams) -> list[Obj]:
    """The manifest's objects in apply order."""
    objects: list[Obj | None] = [
        cluster.namespace(p),
        cluster.service_account(p),
        cluster.secret(p),
        cluster.cluster_role(p),
        cluster.cluster_role_binding(p),
        cluster.service(p),
        *daemonset.daemonsets(p),
    ]
    return [obj for obj in objects if obj is not None]


def _comment_line(text: str) -> str:
    """One YAML comment line; any control or separator character becomes a space."""
    clean = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in text)
    return ("# " + clean).rstrip()


def parameter_text(p: ManifestParams) -> str:
    """The parameters that differ from the defaults, `name=value` by short name, secrets
    shown as <redacted>: enough to make this file again (with the secrets)."""
    default = ManifestParams()
    items: list[str] = []
    for param in PARAMS:
        value = getattr(p, param.field)
        if value == getattr(default, param.field):
            continue
        if param.secret:
            shown = REDACTED
        elif param.field == "env":
            shown = ",".join(f"{k}={REDACTED if is_secret_name(k) else val}" for k, val in value)
        elif isinstance(value, bool):
            shown = "true" if value else "false"
        elif isinstance(value, tuple):
            shown = ",".join(str(item) for item in value)
        else:
            shown = str(value)
        items.append(f"{param.short}={show(shown, 200)}")
    return " ".join(items) if items else "(all defaults)"


def header_lines(p: ManifestParams) -> list[str]:
    lines = [
        f"pxhostd {__version__}: manifests for pxhostd's node pod (generated; edit the "
        "parameters, not this file).",
        f"Parameters: {parameter_text(p)}",
        f"Namespace {p.namespace}. Apply with: kubectl apply --server-side -f <this file>",
    ]
    lines += [f"WARNING: {w}" for w in p.warnings]
    return lines


def render_yaml(p: ManifestParams) -> str:
    """The whole manifest: a comment header (version, warnings) and one document per object."""
    return render_commented(header_lines(p), build_objects(p), documents=True)


def render_commented(header: list[str], data: Any, *, documents: bool = False) -> str:
    """A comment header, then `data` through the one serializer (every value escaped by it).

    `documents`: `data` is a list of objects, each written as its own YAML document. Shared
    with the Swarm output (model/swarm.py), so both outputs quote and comment alike.
    """
    options: dict[str, Any] = {
        "Dumper": _Dumper, "sort_keys": False, "default_flow_style": False,
        "allow_unicode": True, "width": 1 << 30,
    }
    body: str = (yaml.dump_all(data, explicit_start=True, **options) if documents
                 else yaml.dump(data, **options))
    return "\n".join(_comment_line(line) for line in header) + "\n" + body
