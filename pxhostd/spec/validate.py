"""Turn untrusted input (a YAML file, or plain values from the bus) into a checked Spec.

Every failure is an InvalidSpec whose message starts with the field it is about
(`spec.env.FOO: ...`, `spec.mounts[2]: ...`). Nothing else escapes, whatever the input.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pxhostd.errors import InvalidSpec
from pxhostd.spec import rules
from pxhostd.spec.model import DEFAULT_SERVICE, MOUNT_OPTION_ORDER, Mount, Spec
from pxhostd.spec.reserved import reserved_reason
from pxhostd.spec.yamlio import parse_yaml_document, read_text_file

#: Caps: far above any real deployment, far below anything that hurts.
MAX_SPEC_BYTES = 1 << 20
MAX_ARGS = 256
MAX_ARG_LEN = 4096
MAX_ARGS_TOTAL = 128 * 1024
MAX_ENV = 256
MAX_ENV_VALUE = 32 * 1024
MAX_MOUNTS = 128

SPEC_KEYS = ("service", "payload", "args", "env", "mounts")

_MOUNT_OPTIONS = {"ro": "ro", "rw": None, "rbind": None, "norbind": "norbind"}
_EXCLUSIVE = (("ro", "rw"), ("rbind", "norbind"))


def parse_mount(field: str, value: object) -> Mount:
    """`src:dst[:opts]` with opts a comma list of ro|rw and rbind|norbind."""
    text = rules.require_str(field, value, InvalidSpec)
    if len(text) > 2 * rules.MAX_PATH + 64:
        raise InvalidSpec(f"{field}: too long")
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise InvalidSpec(
            f"{field}: {rules.show(text)} must be 'src:dst' or 'src:dst:options' "
            "(paths may not contain ':')"
        )
    src = rules.check_abs_path(f"{field} source", parts[0], InvalidSpec)
    dst = rules.check_abs_path(f"{field} destination", parts[1], InvalidSpec)
    if dst == "/":
        raise InvalidSpec(f"{field}: destination must not be '/'")
    seen: set[str] = set()
    if len(parts) == 3:
        for opt in parts[2].split(","):
            if opt not in _MOUNT_OPTIONS:
                raise InvalidSpec(
                    f"{field}: unknown mount option {rules.show(opt)} "
                    "(allowed: ro, rw, rbind, norbind)"
                )
            if opt in seen:
                raise InvalidSpec(f"{field}: mount option {opt!r} given twice")
            seen.add(opt)
    for a, b in _EXCLUSIVE:
        if a in seen and b in seen:
            raise InvalidSpec(f"{field}: mount options {a!r} and {b!r} exclude each other")
    options = tuple(o for o in MOUNT_OPTION_ORDER if o in seen)
    return Mount(src=src, dst=dst, options=options)


def _parse_args(value: object) -> tuple[str, ...]:
    items = rules.check_list("spec.args", value, MAX_ARGS, InvalidSpec)
    args = tuple(
        rules.check_text(f"spec.args[{i}]", item, MAX_ARG_LEN, InvalidSpec)
        for i, item in enumerate(items)
    )
    if sum(len(a) for a in args) > MAX_ARGS_TOTAL:
        raise InvalidSpec(f"spec.args: too long in total (at most {MAX_ARGS_TOTAL} characters)")
    return args


def _parse_env(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise InvalidSpec(
            f"spec.env: must be a mapping of NAME: value, got {rules.type_name(value)}"
        )
    if len(value) > MAX_ENV:
        raise InvalidSpec(f"spec.env: too many variables ({len(value)}, at most {MAX_ENV})")
    env: dict[str, str] = {}
    for key, val in value.items():
        name = rules.check_env_name("spec.env (variable name)", key, InvalidSpec)
        env[name] = rules.check_text(f"spec.env.{name}", val, MAX_ENV_VALUE, InvalidSpec)
    return tuple(sorted(env.items()))


def _parse_mounts(value: object) -> tuple[Mount, ...]:
    items = rules.check_list("spec.mounts", value, MAX_MOUNTS, InvalidSpec)
    mounts: list[Mount] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        mount = parse_mount(f"spec.mounts[{i}]", item)
        if mount.dst in seen:
            raise InvalidSpec(
                f"spec.mounts[{i}]: destination {mount.dst!r} is already used by "
                f"spec.mounts[{seen[mount.dst]}]"
            )
        seen[mount.dst] = i
        mounts.append(mount)
    return tuple(mounts)


def _nearest_key(key: object) -> str:
    """A ", did you mean ...?" hint for a near miss of a spec key."""
    close = rules.nearest(key, SPEC_KEYS)
    return f", did you mean {close!r}?" if close else ""


def spec_from_dict(data: object) -> Spec:
    """Validate plain Python values (from YAML or the bus) into a Spec."""
    if not isinstance(data, Mapping):
        raise InvalidSpec(f"spec: must be a mapping, got {rules.type_name(data)}")
    if len(data) > 64:
        raise InvalidSpec("spec: too many keys")
    for key in data:
        if key not in SPEC_KEYS:
            raise InvalidSpec(
                f"spec: unknown key {rules.show(key)}{_nearest_key(key)} "
                f"(known keys: {', '.join(SPEC_KEYS)})"
            )
    if "payload" not in data:
        raise InvalidSpec("spec.payload: missing (absolute path of the payload directory)")
    payload = rules.check_abs_path("spec.payload", data["payload"], InvalidSpec)
    if payload == "/":
        raise InvalidSpec("spec.payload: must not be '/'")
    service = rules.check_unit_stem(
        "spec.service", data.get("service", DEFAULT_SERVICE), InvalidSpec
    )
    reserved = reserved_reason(service)
    if reserved:
        raise InvalidSpec(f"spec.service: {service!r} is reserved: {reserved}")
    # An empty YAML key (`env:`) is null: the same as leaving the key out.
    args, env, mounts = (data.get(k) for k in ("args", "env", "mounts"))
    return Spec(
        payload=payload,
        service=service,
        args=_parse_args([] if args is None else args),
        env=_parse_env({} if env is None else env),
        mounts=_parse_mounts([] if mounts is None else mounts),
    )


def parse_spec_yaml(text: str) -> Spec:
    """Parse and validate the spec YAML text."""
    doc = parse_yaml_document(text, "spec", MAX_SPEC_BYTES, InvalidSpec)
    if doc is None:
        raise InvalidSpec("spec: the document is empty (spec.payload is required)")
    return spec_from_dict(doc)


def load_spec(path: Path) -> Spec:
    """Read, parse and validate the spec file (e.g. /etc/pxhostd/spec.yaml)."""
    return parse_spec_yaml(read_text_file(path, "spec", MAX_SPEC_BYTES, InvalidSpec))
