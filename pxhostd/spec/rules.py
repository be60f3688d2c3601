"""Value checks shared by the desired spec and the payload manifest.

Each check takes the field name it is checking, so every error says which field is wrong and
why. The checks never touch the value beyond what they need (no `repr` of huge objects), so
hostile input from the bus costs little and always ends in the caller's error class.

Two kinds of strings exist:
- *paths* and *names* go into unit files unquoted, so they are held to a narrow charset;
- *free text* (args, env values) may hold anything printable, because rendering quotes and
  escapes it; only control characters (newline, NUL, ...) are refused.
"""

from __future__ import annotations

import difflib
import posixpath
import re
import string
import unicodedata
from collections.abc import Iterable, Sequence

from pxhostd.errors import InvalidSpec

#: Longest absolute or relative path accepted (PATH_MAX).
MAX_PATH = 4096
#: Longest path component (NAME_MAX).
MAX_COMPONENT = 255

#: Characters refused in paths: unit-file syntax (quotes, backslash, whitespace), specifiers
#: (`%`), the mount separator (`:`), and shell/glob meta that no sane host path needs.
_PATH_FORBIDDEN = frozenset("\"'\\%:;$`*?[]{}<>|&!#")
#: Printable ASCII without whitespace or a forbidden character: the common case, checked
#: in one regex match (a 100,000-entry manifest has that many paths).
_PLAIN_ASCII_CHARS = string.ascii_letters + string.digits + "._+,=@^~()/-"
_PLAIN_ASCII_PATH = re.compile(f"[{re.escape(_PLAIN_ASCII_CHARS)}]{{1,{MAX_PATH}}}")
#: The same characters as bytes, and the newline that joins paths in `plain_rel_paths`.
_PLAIN_ASCII_BYTES = (_PLAIN_ASCII_CHARS + "\n").encode()

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNIT_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]*")


def show(value: object, limit: int = 60) -> str:
    """A short, escaped rendering of a user value for an error message."""
    if isinstance(value, str):
        text = value if len(value) <= limit else value[:limit] + "..."
        return repr(text)
    return type(value).__name__


_FRIENDLY_TYPES = {"NoneType": "null", "dict": "a mapping", "list": "a list", "tuple": "a list"}


def nearest(word: object, known: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The known name a near miss most likely meant (same letters in another case first)."""
    if not isinstance(word, str):
        return None
    by_lower = {k.lower(): k for k in known}
    if word.lower() in by_lower:
        return by_lower[word.lower()]
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=cutoff)
    return by_lower[close[0]] if close else None


def type_name(value: object) -> str:
    name = type(value).__name__
    return _FRIENDLY_TYPES.get(name, name)


def require_str(field: str, value: object, err: type[InvalidSpec]) -> str:
    if not isinstance(value, str):
        hint = " (quote it in YAML)" if isinstance(value, int | float | bool) else ""
        raise err(f"{field}: must be a string, got {type_name(value)}{hint}")
    return value


def require_bool(field: str, value: object, err: type[InvalidSpec]) -> bool:
    if not isinstance(value, bool):
        raise err(f"{field}: must be true or false, got {type_name(value)}")
    return value


def is_noncharacter(ch: str) -> bool:
    """Unicode non-characters: systemd calls a line holding one "not UTF-8 clean" and drops it."""
    cp = ord(ch)
    return 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE


def _first_control(value: str) -> str | None:
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cs") or is_noncharacter(ch):
            return ch
    return None


def _control_name(ch: str) -> str:
    names = {"\n": "a newline", "\r": "a carriage return", "\x00": "a NUL byte", "\t": "a tab"}
    if ch in names:
        return names[ch]
    if unicodedata.category(ch) == "Cs":
        return f"an unpaired surrogate U+{ord(ch):04X} (not valid UTF-8)"
    if is_noncharacter(ch):
        return f"the non-character U+{ord(ch):04X} (systemd refuses it)"
    kind = "control" if unicodedata.category(ch) == "Cc" else "non-printable"
    return f"the {kind} character U+{ord(ch):04X}"


def check_text(field: str, value: object, max_len: int, err: type[InvalidSpec]) -> str:
    """Free text: any printable characters; escaping makes them safe in a unit."""
    text = require_str(field, value, err)
    if len(text) > max_len:
        raise err(f"{field}: too long ({len(text)} characters, at most {max_len})")
    bad = _first_control(text)
    if bad is not None:
        raise err(f"{field}: contains {_control_name(bad)}")
    return text


def _check_path_chars(field: str, path: str, err: type[InvalidSpec]) -> None:
    if _PLAIN_ASCII_PATH.fullmatch(path) and (len(path) <= MAX_COMPONENT or all(
        len(part) <= MAX_COMPONENT for part in path.split("/")
    )):
        return
    if len(path) > MAX_PATH:
        raise err(f"{field}: path too long ({len(path)} characters, at most {MAX_PATH})")
    for ch in path:
        unprintable = not ch.isprintable() and not ch.isspace()
        if unicodedata.category(ch) in ("Cc", "Cs") or is_noncharacter(ch) or unprintable:
            raise err(f"{field}: path contains {_control_name(ch)}")
        if ch in _PATH_FORBIDDEN:
            what = "a '%' (systemd specifier)" if ch == "%" else f"the character {ch!r}"
            raise err(f"{field}: path {show(path)} contains {what}, not allowed in paths")
        if ch.isspace():
            raise err(f"{field}: path {show(path)} contains whitespace, not allowed in paths")
    for part in path.split("/"):
        if len(part.encode("utf-8")) > MAX_COMPONENT:
            raise err(f"{field}: path component longer than {MAX_COMPONENT} bytes")


def check_abs_path(field: str, value: object, err: type[InvalidSpec]) -> str:
    """An absolute, normalised host path that is safe to write into a unit unquoted."""
    path = require_str(field, value, err)
    if not path:
        raise err(f"{field}: must not be empty")
    _check_path_chars(field, path, err)
    if not path.startswith("/"):
        raise err(f"{field}: path {show(path)} must be absolute (start with '/')")
    if ".." in path.split("/"):
        raise err(f"{field}: path {show(path)} must not contain '..'")
    if posixpath.normpath(path) != path or path.startswith("//"):
        raise err(
            f"{field}: path {show(path)} is not normalised "
            f"(write {show(posixpath.normpath('/' + path.lstrip('/')))})"
        )
    return path


def is_normalised(path: str) -> bool:
    """No empty, '.' or '..' component and no leading or trailing '/': framed in slashes,
    such a component always lies between two, so three searches decide it."""
    framed = f"/{path}/"
    return "//" not in framed and "/./" not in framed and "/../" not in framed


def check_rel_path(field: str, value: object, err: type[InvalidSpec]) -> str:
    """A normalised path relative to a payload root that cannot leave it."""
    if (type(value) is str and len(value) <= MAX_COMPONENT
            and _PLAIN_ASCII_PATH.fullmatch(value) and is_normalised(value)):
        return value  # the common case: a manifest lists it 100,000 times
    path = require_str(field, value, err)
    if not path:
        raise err(f"{field}: must not be empty")
    _check_path_chars(field, path, err)
    if path.startswith("/"):
        raise err(f"{field}: path {show(path)} must be relative to the payload root")
    parts = path.split("/")
    if ".." in parts:
        raise err(f"{field}: path {show(path)} must not contain '..'")
    if "" in parts or "." in parts:
        raise err(f"{field}: path {show(path)} is not normalised (empty or '.' component)")
    return path


def plain_rel_paths(paths: Sequence[object]) -> bool:
    """Whether every entry passes `check_rel_path`'s common case, decided for the whole list
    at once (a few passes in C instead of a regex and three searches per path). False says
    nothing about any one path: the caller then checks them one by one, for the error."""
    if not paths or set(map(type, paths)) != {str}:
        return False
    texts: Sequence[str] = paths  # type: ignore[assignment]
    if max(map(len, texts)) > MAX_COMPONENT:
        return False
    joined = "\n".join(texts)
    if joined.count("\n") != len(texts) - 1 or not joined.isascii():
        return False
    if joined.encode().translate(None, _PLAIN_ASCII_BYTES):
        return False  # a character outside the plain set
    framed = "/" + "/\n/".join(texts) + "/"  # an empty, '.' or '..' component, as above
    return "//" not in framed and "/./" not in framed and "/../" not in framed


def check_env_name(field: str, value: object, err: type[InvalidSpec]) -> str:
    name = require_str(field, value, err)
    if len(name) > 128 or not _ENV_NAME.fullmatch(name):
        raise err(
            f"{field}: {show(name)} is not a valid environment variable name "
            "(letters, digits and '_', not starting with a digit, at most 128)"
        )
    return name


def check_unit_stem(field: str, value: object, err: type[InvalidSpec]) -> str:
    stem = require_str(field, value, err)
    if len(stem) > 64 or not _UNIT_STEM.fullmatch(stem):
        raise err(
            f"{field}: {show(stem)} is not a valid unit name stem "
            "(letters, digits, '_', '.', '-'; starting with a letter or digit; at most 64)"
        )
    return stem


def check_token(field: str, value: object, err: type[InvalidSpec]) -> str:
    """Names and versions: a safe charset that fits a file name and a Description."""
    token = require_str(field, value, err)
    if len(token) > 64 or not _TOKEN.fullmatch(token):
        raise err(
            f"{field}: {show(token)} is not allowed (letters, digits, '.', '_', '+', '~', '-'; "
            "starting with a letter or digit; at most 64)"
        )
    return token


def check_list(field: str, value: object, max_items: int, err: type[InvalidSpec]) -> list[object]:
    if not isinstance(value, list | tuple):
        raise err(f"{field}: must be a list, got {type_name(value)}")
    if len(value) > max_items:
        raise err(f"{field}: too many entries ({len(value)}, at most {max_items})")
    return list(value)


def is_under(path: str, directory: str) -> bool:
    """True if normalised `path` lies strictly below `directory` (path-prefix, not substring)."""
    base = directory.rstrip("/")
    return path.startswith(base + "/") and len(path) > len(base) + 1
