"""systemd escaping for every value that goes into a unit file.

systemd reads a unit line in stages, and each stage gets its escape (systemd.syntax(7),
systemd.service(5) "Command lines", systemd.unit(5) "Specifiers"):

- quoting and C escapes (`"..."`, `\\`, `\"`) are removed by the word splitter;
- `%x` specifiers are then expanded, so a literal `%` is written `%%`;
- in command lines only, `$NAME`/`${NAME}` are expanded when the process starts, so a
  literal `$` is written `$$`. The service environment is not in the unit at all: it goes
  to an `EnvironmentFile=` with its own quoting (`env_file_line`).

Every filter returns `UnitText`, a str subclass. The template environment refuses to emit
anything else (see `pxhostd.render.units`), so a template that interpolates a raw value fails
loudly instead of writing an unescaped line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pxhostd.errors import InvalidSpec
from pxhostd.spec import rules
from pxhostd.spec.model import Mount


class UnitText(str):
    """A string already escaped for its place in a unit file."""

    __slots__ = ()


_SAFE_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+~@-]*")


def _no_control(value: str, where: str) -> None:
    """Defence in depth: validation already refused these; a line break here is injection."""
    rules.check_text(f"render: {where}", value, 1 << 20, InvalidSpec)


def specifiers(value: str) -> UnitText:
    """Escape `%` for settings that expand specifiers but are not quoted (Description=)."""
    _no_control(value, "text")
    return UnitText(value.replace("%", "%%"))


def _quoted(value: str, *, dollar: bool) -> str:
    text = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if dollar:
        text = text.replace("$", "$$")
    return f'"{text}"'


def exec_word(value: str) -> UnitText:
    """One argv word of ExecStart=/ExecStop=: double-quoted, C-escaped, `%%`, `$$`."""
    _no_control(value, "command line word")
    return UnitText(_quoted(value, dollar=True))


def exec_line(words: Iterable[str], prefix: str = "") -> UnitText:
    """A whole command line; the first word must be an absolute program path.

    `prefix` is a systemd exec prefix such as `-` (ignore failure), written unquoted.
    """
    items = list(words)
    if not items or not items[0].startswith("/"):
        raise InvalidSpec("render: a command line must start with an absolute program path")
    if prefix not in ("", "-"):
        raise InvalidSpec(f"render: unsupported exec prefix {prefix!r}")
    return UnitText(prefix + " ".join(exec_word(w) for w in items))


def env_file_line(name: str, value: str) -> str:
    """One `EnvironmentFile=` line, `NAME="value"`.

    systemd's env-file parser takes a backslash inside double quotes as escaping only
    `"`, `\\`, `` ` `` and `$`, and expands no specifiers and no variables there.
    """
    rules.check_env_name("render: environment name", name, InvalidSpec)
    _no_control(value, f"environment value of {name}")
    escaped = "".join("\\" + ch if ch in '"\\`$' else ch for ch in value)
    return f'{name}="{escaped}"\n'


def unit_path(value: str) -> UnitText:
    """An absolute path written unquoted; only paths that need no escaping are accepted."""
    return UnitText(rules.check_abs_path("render: path", value, InvalidSpec))


def bind_path(mount: Mount) -> UnitText:
    """`BindPaths=`/`BindReadOnlyPaths=` operand: `src:dst[:norbind]` (rbind is the default)."""
    src = unit_path(mount.src)
    dst = unit_path(mount.dst)
    return UnitText(f"{src}:{dst}:norbind" if not mount.recursive else f"{src}:{dst}")


def token(value: str) -> UnitText:
    """A fixed word from our own code (unit type, unit name): a narrow charset, no escaping."""
    if len(value) > 256 or not _SAFE_TOKEN.fullmatch(value):
        raise InvalidSpec(f"render: {rules.show(value)} is not a safe unit token")
    return UnitText(value)


FILTERS = {
    "sd_specifiers": specifiers,
    "sd_exec_word": exec_word,
    "sd_exec_line": exec_line,
    "sd_path": unit_path,
    "sd_bind": bind_path,
    "sd_token": token,
}
