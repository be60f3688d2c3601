"""The public view of an outgoing message body, applied on the wire for non-root callers.

It works on the values as they are about to be marshalled (Variants, dicts, lists,
strings), by structure, so every method gets it without doing anything: a value under the
key `env` keeps its names and loses its values, a value under `args` loses its secret
arguments, and every string loses journal excerpts and secret `--opt value` pairs (see
`pxhostd.redact`).
"""

from __future__ import annotations

from typing import Any

from dbus_fast import Variant

from pxhostd.redact import public_text, redact_args, redact_env


def public_body(body: list[Any]) -> list[Any]:
    return [_public(value) for value in body]


def _public(value: Any, key: str | None = None) -> Any:
    if isinstance(value, Variant):
        return Variant(value.signature, _public(value.value, key))
    if key == "env" and isinstance(value, dict):
        return redact_env(value)
    if key == "args" and isinstance(value, list) and all(isinstance(a, str) for a in value):
        return [public_text(a) for a in redact_args(value)]
    if isinstance(value, str):
        return public_text(value)
    if isinstance(value, dict):
        return {k: _public(v, k if isinstance(k, str) else None) for k, v in value.items()}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value
