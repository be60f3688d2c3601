"""What a secret looks like, and the view of pxhostd's facts that anyone may read.

pxhostd keeps the environment file and its state files 0600 because a spec holds secrets:
env values (`KVDB_PASSWORD`, `PX_API_TOKEN`, ...) and secret arguments (`-t TOKEN`,
`--pwd=...`). A failed start's error quotes the service's last journal lines, which a
payload may fill with anything. Root reads all of it; everybody else reads the *public*
view made here: env names without values, secret argument values replaced by
`<redacted>`, and instead of journal lines a pointer to `journalctl -u UNIT`.
The bus applies it per caller (`pxhostd.bus.views`), the status file and systemd's status
line always (both are world-readable).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pxhostd.log import REDACTED, SECRET_MARKERS
from pxhostd.log import is_secret_name as is_secret_word

#: Option and variable names that hold secrets: `-t`, and every name holding one of
#: `pxhostd.log.SECRET_MARKERS` (`--token`, `-userpwd`, `--pwd`, `--kvdb-password`,
#: `PX_API_TOKEN`, `-e REGISTRY_PASS=...`).
_SECRET_SHORT_OPTIONS = frozenset({"t"})
_ASSIGNMENT = re.compile(r"(?P<name>-{0,2}[A-Za-z_][A-Za-z0-9_.-]*)=(?P<value>.*)", re.DOTALL)
#: How a failure message quotes a unit's journal, so that one rule can take it out again.
#: Credentials inside a URL (`etcd://user:secret@host`).
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^/\s@]+@")
_LOG_EXCERPT = re.compile(r"; last log lines(?: of (?P<unit>[^\s:]+))?: .*\Z", re.DOTALL)


_WORDS = "(?:" + "|".join(m.lower() for m in SECRET_MARKERS) + ")"
_SECRET_NAME_RE = rf"(?:[\w.-]*{_WORDS}[\w.-]*)"
#: In free text: `--pwd=X`, `--token X`, `-t X`, `KVDB_PASSWORD=X`.
_TEXT_OPTION = re.compile(
    rf"(?<!\S)(?P<opt>-{{1,2}}(?:t|{_SECRET_NAME_RE}))(?P<sep>=|\s+)(?!-)(?P<value>\S+)",
    re.IGNORECASE,
)
_TEXT_ASSIGNMENT = re.compile(r"(?<![\w.-])(?P<name>[\w.-]+)=(?P<value>\S+)")


def _assignment(m: re.Match[str]) -> str:
    return f"{m['name']}={REDACTED}" if is_secret_name(m["name"]) else m[0]


_WORD_LIST = tuple(m.lower() for m in SECRET_MARKERS)


def _maybe_secret(text: str) -> bool:
    """A fast pre-check (substring scans, no regex) before the precise rules run."""
    low = text.lower()
    return any(w in low for w in _WORD_LIST) or "-t" in text or (
        "://" in text and _URL_PASSWORD.search(text) is not None
    )


def is_secret_name(name: str) -> bool:
    """Whether an option (`--pwd`, `-t`) or variable (`KVDB_PASSWORD`) name holds a secret."""
    bare = name.lstrip("-")
    return bare in _SECRET_SHORT_OPTIONS or is_secret_word(bare)


def redact_args(args: Iterable[str]) -> list[str]:
    """The arguments with the value of every secret option and assignment replaced."""
    out: list[str] = []
    expect_value = False
    for arg in (_URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", a) for a in args):
        if expect_value and not (arg.startswith("-") and len(arg) > 1):
            out.append(REDACTED)
            expect_value = False
            continue
        expect_value = False
        assignment = _ASSIGNMENT.fullmatch(arg)
        if assignment is not None:
            name = assignment["name"]
            if is_secret_name(name):
                out.append(f"{name}={REDACTED}")
                continue
            out.append(arg)
            continue
        if arg.startswith("-") and len(arg) > 1 and is_secret_name(arg):
            expect_value = True
        out.append(arg)
    return _redact_env_options(out)


def _redact_env_options(args: list[str]) -> list[str]:
    """`-e NAME=VALUE` / `--env NAME=VALUE`: the value goes when NAME looks secret."""
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg in ("-e", "--env"):
            name, sep, _ = out[i + 1].partition("=")
            if sep and is_secret_name(name):
                out[i + 1] = f"{name}={REDACTED}"
    return out


def redact_env(env: Mapping[str, object]) -> dict[str, str]:
    """Env names only: every value is replaced, secret-looking or not."""
    return {str(name): REDACTED for name in env}


def with_log_excerpt(reason: str, unit: str, lines: list[str]) -> str:
    """`reason` followed by the unit's last journal lines (what root reads)."""
    if not lines:
        return reason
    return f"{reason}; last log lines of {unit}: " + " | ".join(line.strip() for line in lines)


def journal_pointer(unit: str | None) -> str:
    return f"journalctl -u {unit or 'portworx.service'}"


def public_text(text: str) -> str:
    """Free text for everyone: no journal lines (a pointer instead), no secret arguments."""
    match = _LOG_EXCERPT.search(text) if "; last log lines" in text else None
    if match is not None:
        text = f"{text[: match.start()]}; its log: {journal_pointer(match['unit'])}"
    if not _maybe_secret(text):
        return text  # the common case, cheap even for a long text (introspection XML)
    text = _TEXT_OPTION.sub(lambda m: f"{m['opt']}{m['sep']}{REDACTED}", text)
    text = _TEXT_ASSIGNMENT.sub(_assignment, text)
    return _URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", text)
