"""Strict YAML reading for the spec and the payload manifest, on libyaml's C parser.

PyYAML's safe loader silently keeps the last of two equal keys; a spec that says `env:`
twice is a mistake the user must hear about, so duplicate keys are an error here. Tags
beyond plain scalars, lists and mappings (`!!binary`, `!!timestamp`, `!!set`, ...) mean
nothing to pxhostd and are refused rather than turned into surprising types. Size is capped
before parsing so a hostile document cannot make the daemon parse megabytes. Parsing runs
in libyaml (`CSafeLoader`): a 25,000-entry payload manifest parses about ten times faster
than with the pure-Python parser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pxhostd.errors import InvalidSpec

#: The tags a document may use (what the resolver gives plain YAML).
_ALLOWED_TAGS = frozenset({
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:map",
})


class _DuplicateKey(Exception):
    pass


class _RefusedTag(Exception):
    pass


class _StrictLoader(yaml.CSafeLoader):
    """libyaml-backed SafeLoader that refuses duplicate keys and non-plain tags."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in result
        except TypeError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, "mapping key is not a plain value", key_node.start_mark
            ) from exc
        if duplicate:
            shown = repr(key) if isinstance(key, str) and len(key) < 60 else "a key"
            raise _DuplicateKey(f"duplicate key {shown} (line {key_node.start_mark.line + 1})")
        result[key] = loader.construct_object(value_node, deep=True)
    return result


def _refuse_tag(loader: _StrictLoader, node: yaml.Node) -> object:
    tag = node.tag.removeprefix("tag:yaml.org,2002:")
    raise _RefusedTag(f"tag {tag!r} is not allowed (line {node.start_mark.line + 1}); "
                      "use plain strings, numbers, booleans, lists and mappings")


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
for _tag in list(yaml.SafeLoader.yaml_constructors):
    if _tag is not None and _tag not in _ALLOWED_TAGS:
        _StrictLoader.add_constructor(_tag, _refuse_tag)
_StrictLoader.add_constructor(None, _refuse_tag)  # any unknown tag


def parse_yaml_document(
    text: str | bytes, what: str, max_bytes: int, err: type[InvalidSpec]
) -> object:
    """Parse one YAML document; every failure becomes `err` naming `what`."""
    if not isinstance(text, (str, bytes)):
        raise err(f"{what}: expected YAML text, got {type(text).__name__}")
    if len(text) > max_bytes:
        raise err(f"{what}: too large ({len(text)} characters, at most {max_bytes})")
    # Bytes go to libyaml as they are (it checks UTF-8): no decoded copy of a 10 MB text.
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    except (_DuplicateKey, _RefusedTag) as exc:
        raise err(f"{what}: {exc}") from None
    except yaml.reader.ReaderError as exc:
        raise err(f"{what}: not valid UTF-8 text (at byte {exc.position})") from None
    except yaml.MarkedYAMLError as exc:
        where = f" at line {exc.problem_mark.line + 1}" if exc.problem_mark else ""
        raise err(f"{what}: not valid YAML{where}: {exc.problem or exc.context}") from None
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as exc:
        raise err(f"{what}: not valid YAML: {type(exc).__name__}") from None
    finally:
        loader.dispose()


def read_text_file(path: Path, what: str, max_bytes: int, err: type[InvalidSpec]) -> str:
    """Read a small UTF-8 file that must be a regular file (not a symlink, not huge)."""
    try:
        if path.is_symlink():
            raise err(f"{what}: {path} is a symbolic link; expected a regular file")
        if not path.is_file():
            raise err(f"{what}: {path} does not exist or is not a regular file")
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise err(f"{what}: cannot read {path}: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise err(f"{what}: {path} is too large (more than {max_bytes} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise err(f"{what}: {path} is not valid UTF-8") from None
