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

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

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


_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_MERGE = "tag:yaml.org,2002:merge"


def _refuse_tag(loader: _StrictLoader, node: yaml.Node) -> object:
    tag = node.tag.removeprefix("tag:yaml.org,2002:")
    raise _RefusedTag(f"tag {tag!r} is not allowed (line {node.start_mark.line + 1}); "
                      "use plain strings, numbers, booleans, lists and mappings")


for _tag in list(yaml.SafeLoader.yaml_constructors):
    if _tag is not None and _tag not in _ALLOWED_TAGS:
        _StrictLoader.add_constructor(_tag, _refuse_tag)
_StrictLoader.add_constructor(None, _refuse_tag)  # any unknown tag


class _Builder:
    """Plain values straight from libyaml's events, without a node graph.

    PyYAML's loader first composes every node of the document (a 100,000-entry manifest
    is about 100 MB of node objects), then constructs; building from the event stream
    keeps only the result. Anchors and aliases share one object, as PyYAML does; merge
    keys (`<<`) work as in YAML 1.1.
    """

    def __init__(self, loader: _StrictLoader, streams: Mapping[str, Consumer]) -> None:
        self.loader: Any = loader
        self.anchors: dict[str, object] = {}
        self.streams = streams
        self._root = True

    def document(self) -> object:
        get = self.loader.get_event
        get()  # stream start
        if self.loader.check_event(yaml.StreamEndEvent):
            return None
        get()  # document start
        value = self.value(get())
        get()  # document end
        if not self.loader.check_event(yaml.StreamEndEvent):
            raise yaml.composer.ComposerError(
                "expected a single document in the stream", None,
                "but found another document", self.loader.peek_event().start_mark)
        return value

    def _tag(self, event: Any, kind: type[yaml.Node], value: str | None) -> str:
        tag = getattr(event, "tag", None)
        if tag is None or tag == "!":
            implicit = getattr(event, "implicit", True)
            tag = self.loader.resolve(kind, value, implicit)
        return str(tag)

    def value(self, event: Any) -> object:
        start: Any = event.start_mark  # libyaml's Mark, which the stubs do not know
        end: Any = event.end_mark
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in self.anchors:
                raise yaml.composer.ComposerError(
                    None, None, f"found undefined alias {event.anchor!r}", start)
            return self.anchors[event.anchor]
        result: object
        if isinstance(event, yaml.ScalarEvent):
            tag = self._tag(event, yaml.ScalarNode, event.value)
            if tag == _STR:
                result = event.value
            else:
                node = yaml.ScalarNode(tag, event.value, start, end, event.style)
                construct = self.loader.yaml_constructors.get(
                    tag, self.loader.yaml_constructors[None])
                result = construct(self.loader, node)
        elif isinstance(event, yaml.SequenceStartEvent):
            self._check_collection(event, yaml.SequenceNode, _SEQ)
            items: list[object] = []
            while not self.loader.check_event(yaml.SequenceEndEvent):
                items.append(self.value(self.loader.get_event()))
            self.loader.get_event()
            result = items
        elif isinstance(event, yaml.MappingStartEvent):
            self._check_collection(event, yaml.MappingNode, _MAP)
            result = self.mapping()
        else:
            raise yaml.composer.ComposerError(
                None, None, f"unexpected {type(event).__name__}", event.start_mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self.anchors[anchor] = result
        return result

    def _check_collection(self, event: Any, kind: type[yaml.Node], tag: str) -> None:
        actual = self._tag(event, kind, None)
        if actual != tag:
            _refuse_tag(self.loader, kind(actual, [], event.start_mark, event.end_mark))

    def mapping(self) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        root, self._root = self._root, False
        while not self.loader.check_event(yaml.MappingEndEvent):
            key_event = self.loader.get_event()
            if self._is_merge(key_event):
                self._merge(merged, self.value(self.loader.get_event()), key_event)
                continue
            key = self.value(key_event)
            if (root and isinstance(key, str) and key in self.streams
                    and key not in result
                    and self.loader.check_event(yaml.MappingStartEvent)):
                result[key] = self._streamed(self.streams[key])
                continue
            try:
                duplicate = key in result
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping key is not a plain value", key_event.start_mark
                ) from None
            if duplicate:
                shown = repr(key) if isinstance(key, str) and len(key) < 60 else "a key"
                raise _DuplicateKey(
                    f"duplicate key {shown} (line {key_event.start_mark.line + 1})")
            result[key] = self.value(self.loader.get_event())
        self.loader.get_event()
        return {**merged, **result} if merged else result

    def _is_merge(self, event: Any) -> bool:
        return (isinstance(event, yaml.ScalarEvent)
                and self._tag(event, yaml.ScalarNode, event.value) == _MERGE)

    def _streamed(self, consumer: Consumer) -> object:
        """A mapping handed to `consumer` entry by entry, never built as a dict."""
        event = self.loader.get_event()
        self._check_collection(event, yaml.MappingNode, _MAP)
        entries = self._entries()
        result = consumer(entries)
        for _ in entries:  # what the consumer did not take, and the mapping's end
            pass
        if getattr(event, "anchor", None) is not None:
            self.anchors[event.anchor] = result
        return result

    def _entries(self) -> Iterator[tuple[object, object]]:
        """A streamed mapping's entries, up to and including its end event. A scalar that
        is a str for sure (no tag, no anchor, and quoted or with a first character no
        implicit resolver is registered for: what `_tag` would give) is taken as it is,
        tested inline, since a big manifest has 200,000 of them."""
        get = self.loader.get_event
        scalar, end, first = yaml.ScalarEvent, yaml.MappingEndEvent, _RESOLVED_FIRST
        shortcut = _SHORTCUT
        while True:
            key_event = get()
            kind = type(key_event)
            if kind is end:
                return
            if (shortcut and kind is scalar and key_event.tag is None
                    and key_event.anchor is None
                    and (key_event.style or key_event.value[:1] not in first)):
                key = key_event.value
            else:
                key_tag = self._simple_tag(key_event)
                if key_tag == _MERGE:
                    raise _RefusedTag(f"a merge key (<<) is not allowed here (line "
                                      f"{key_event.start_mark.line + 1})")
                key = key_event.value if key_tag == _STR else self.value(key_event)
            value_event = get()
            if ((shortcut and type(value_event) is scalar and value_event.tag is None
                    and value_event.anchor is None
                    and (value_event.style or value_event.value[:1] not in first))
                    or self._simple_tag(value_event) == _STR):
                yield key, value_event.value
            else:
                yield key, self.value(value_event)

    def _simple_tag(self, event: Any) -> str | None:
        """The tag of a scalar without an anchor (what `value` would resolve); None for
        anything else, which `value` then builds in full."""
        if type(event) is not yaml.ScalarEvent or event.anchor is not None:
            return None
        return self._tag(event, yaml.ScalarNode, event.value)

    @staticmethod
    def _merge(into: dict[Any, Any], source: object, event: Any) -> None:
        sources = source if isinstance(source, list) else [source]
        for item in reversed(sources):  # earlier mappings win, as in YAML 1.1
            if not isinstance(item, dict):
                raise yaml.constructor.ConstructorError(
                    None, None, "a merge key (<<) needs a mapping or a list of mappings",
                    event.start_mark)
            into.update(item)


#: First characters for which the resolver may give a scalar another tag than str (the
#: empty string: the empty scalar, which is null).
_RESOLVED_FIRST = frozenset(k for k in _StrictLoader.yaml_implicit_resolvers if k is not None)
#: A resolver registered for every first character (PyYAML has none) turns the shortcut off.
_SHORTCUT = None not in _StrictLoader.yaml_implicit_resolvers




class SupportsRead(Protocol):
    """A stream libyaml pulls pieces from (it caps its own size)."""

    def read(self, size: int = ..., /) -> bytes: ...


#: Takes a mapping's (key, value) entries one at a time; returns what stands for it.
Consumer = Callable[[Iterator[tuple[object, object]]], object]


def parse_yaml_document(
    text: str | bytes | SupportsRead, what: str, max_bytes: int, err: type[InvalidSpec],
    streams: Mapping[str, Consumer] | None = None,
) -> object:
    """Parse one YAML document; every failure becomes `err` naming `what`.

    A top-level key named in `streams` whose value is a mapping is not built: its entries
    go to the consumer as they are parsed (a 100,000-entry file list never becomes a
    dict), and the consumer checks them, duplicates included."""
    if isinstance(text, (str, bytes)):
        if len(text) > max_bytes:
            raise err(f"{what}: too large ({len(text)} characters, at most {max_bytes})")
    elif not callable(getattr(text, "read", None)):
        raise err(f"{what}: expected YAML text, got {type(text).__name__}")
    # Bytes (or a stream of them) go to libyaml as they are (it checks UTF-8): no decoded
    # copy of a 10 MB text.
    loader = _StrictLoader(text)
    try:
        return _Builder(loader, streams or {}).document()
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
