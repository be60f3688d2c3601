"""One digest per desired spec, so the pod and the daemon can say "the same spec" exactly.

The pod records the digest of the spec it submitted; the daemon publishes the digest of
the spec it applied in the status file; the readiness probe compares the two. Both sides
digest the canonical form (`Spec.to_dict()` as sorted-key JSON), so key order, YAML versus
D-Bus and defaults filled in by validation never make two equal specs differ.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pxhostd.errors import InvalidSpec
from pxhostd.spec.model import Spec
from pxhostd.spec.validate import spec_from_dict


def spec_digest(spec: Spec) -> str:
    """`sha256:<hex>` of the canonical form of a validated spec."""
    text = json.dumps(spec.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def raw_spec_digest(raw: Mapping[str, Any]) -> str:
    """The digest of a plain spec dict (validated first; InvalidSpec if it is not one)."""
    return spec_digest(spec_from_dict(dict(raw)))


def applied_spec_digest(raw: Mapping[str, Any] | None) -> str:
    """The digest of an applied spec for the status file; "" when none or not valid now."""
    if raw is None:
        return ""
    try:
        return raw_spec_digest(raw)
    except InvalidSpec:
        return ""
