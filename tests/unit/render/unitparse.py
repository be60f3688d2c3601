"""A small, independent reader of the unit-file subset pxhostd writes.

It follows systemd's rules (systemd.syntax(7), systemd.service(5) "Command lines") rather
than our escaping code, so a round trip through it checks the escaping, not itself:
word splitting with double/single quotes and C escapes, then specifier expansion (only
`%%` is allowed: any other specifier in our output is a bug), then, for command lines,
`$$` -> `$` (any other `$` is a variable reference, also a bug).
"""

from __future__ import annotations

WHITESPACE = " \t\n\r"
_C_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r", "a": "\a",
              "b": "\b", "f": "\f", "v": "\v", "s": " "}


class UnitSyntaxError(ValueError):
    pass


def parse_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """Section name -> list of (key, raw value), in file order; comments dropped."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = sections.setdefault(stripped[1:-1], [])
            continue
        if current is None or "=" not in stripped:
            raise UnitSyntaxError(f"line {number}: not a key=value line: {line!r}")
        if line.endswith("\\"):
            raise UnitSyntaxError(f"line {number}: continuation lines are not expected")
        key, _, value = stripped.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def values(text: str, section: str, key: str) -> list[str]:
    return [v for k, v in parse_sections(text).get(section, []) if k == key]


def split_words(value: str) -> list[str]:
    """systemd's extract_first_word with UNQUOTE|CUNESCAPE, repeated."""
    words: list[str] = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in WHITESPACE:
            i += 1
        if i >= n:
            return words
        word: list[str] = []
        quote: str | None = None
        while i < n:
            ch = value[i]
            if ch == "\\":
                if i + 1 >= n:
                    raise UnitSyntaxError("trailing backslash")
                nxt = value[i + 1]
                if nxt not in _C_ESCAPES:
                    raise UnitSyntaxError(f"unexpected escape \\{nxt}")
                word.append(_C_ESCAPES[nxt])
                i += 2
                continue
            if quote is not None:
                if ch == quote:
                    quote = None
                else:
                    word.append(ch)
            elif ch in "\"'":
                quote = ch
            elif ch in WHITESPACE:
                break
            else:
                word.append(ch)
            i += 1
        if quote is not None:
            raise UnitSyntaxError("unbalanced quoting")
        words.append("".join(word))


def expand_specifiers(word: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(word):
        if word[i] == "%":
            if word[i + 1:i + 2] != "%":
                raise UnitSyntaxError(f"unescaped specifier in {word!r}")
            out.append("%")
            i += 2
        else:
            out.append(word[i])
            i += 1
    return "".join(out)


def expand_dollars(word: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(word):
        if word[i] == "$":
            if word[i + 1:i + 2] != "$":
                raise UnitSyntaxError(f"variable reference in {word!r}")
            out.append("$")
            i += 2
        else:
            out.append(word[i])
            i += 1
    return "".join(out)


def parse_command_line(value: str) -> tuple[str, list[str]]:
    """(prefix, argv) of an ExecStart=/ExecStop= value as systemd would run it."""
    prefix = ""
    while value[:1] in ("-", "@", "+", "!", ":"):
        prefix, value = prefix + value[0], value[1:]
    argv = [expand_dollars(expand_specifiers(w)) for w in split_words(value)]
    return prefix, argv


def parse_env_file(text: str) -> dict[str, str]:
    """An `EnvironmentFile=` as systemd reads it (the subset pxhostd writes: one
    `NAME="value"` per line; inside the quotes a backslash escapes `"`, `\\`, `` ` ``,
    `$` and is kept before anything else), written independently of the renderer."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", ";")):
            continue
        name, sep, rest = line.partition("=")
        if not sep or not (rest.startswith('"') and rest.endswith('"') and len(rest) >= 2):
            raise UnitSyntaxError(f"unexpected environment file line: {line!r}")
        body, out, i = rest[1:-1], [], 0
        while i < len(body):
            ch = body[i]
            if ch == "\\" and i + 1 < len(body):
                nxt = body[i + 1]
                out.append(nxt if nxt in '"\\`$' else ch + nxt)
                i += 2
                continue
            if ch == '"':
                raise UnitSyntaxError(f"unescaped quote in {line!r}")
            out.append(ch)
            i += 1
        env[name] = "".join(out)
    return env
