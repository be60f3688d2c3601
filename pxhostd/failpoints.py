"""Named crash points that prove crash recovery works.

Off by default. When one is enabled (environment `PXHOSTD_FAILPOINTS=name[,name=N...]` or
the daemon config), reaching it kills the process with SIGKILL on itself: no `finally`, no
atexit, no flush beyond the one log line, exactly like a power cut of the process. Unknown
names are refused at start so a typo never silently disables a crash test.

An item prefixed `error:` (`error:after-daemon-reload`) raises `InjectedFault` there
instead of killing: the failure path of a live operation (rollback, journal closed) on a
real systemd, where a real `daemon-reload` cannot be made to fail on demand.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterable, Mapping

from pxhostd.errors import Failed

log = logging.getLogger("pxhostd.failpoints")

#: Environment variable read by `Failpoints.from_env`.
FAILPOINTS_ENV = "PXHOSTD_FAILPOINTS"

# Install / upgrade / reconfigure / restart / rollback ("apply" operations).
AFTER_JOURNAL_BEGIN = "after-journal-begin"
MID_STAGE = "mid-stage"
AFTER_STAGE = "after-stage"
AFTER_UNIT_WRITE = "after-unit-write"
AFTER_DAEMON_RELOAD = "after-daemon-reload"
AFTER_ENABLE = "after-enable"
AFTER_SWITCH = "after-switch"
AFTER_RESTART = "after-restart"
AFTER_COMMIT = "after-commit"
AFTER_SAVE_APPLIED = "after-save-applied"
MID_PRUNE = "mid-prune"
AFTER_PRUNE = "after-prune"
MID_SPARE = "mid-spare"
AFTER_ROLLBACK_BEGIN = "after-rollback-begin"
BEFORE_JOURNAL_DONE = "before-journal-done"
# Uninstall.
AFTER_STOP = "after-stop"
AFTER_DISABLE = "after-disable"
AFTER_UNIT_REMOVE = "after-unit-remove"
MID_RELEASE_REMOVE = "mid-release-remove"
AFTER_FORGET = "after-forget"

#: Every failpoint the code may hit, in the order an apply / uninstall reaches them.
KNOWN_FAILPOINTS: tuple[str, ...] = (
    AFTER_JOURNAL_BEGIN,
    MID_STAGE,
    AFTER_STAGE,
    AFTER_UNIT_WRITE,
    AFTER_DAEMON_RELOAD,
    AFTER_ENABLE,
    AFTER_SWITCH,
    AFTER_RESTART,
    AFTER_COMMIT,
    AFTER_SAVE_APPLIED,
    MID_PRUNE,
    AFTER_PRUNE,
    MID_SPARE,
    AFTER_ROLLBACK_BEGIN,
    BEFORE_JOURNAL_DONE,
    AFTER_STOP,
    AFTER_DISABLE,
    AFTER_UNIT_REMOVE,
    MID_RELEASE_REMOVE,
    AFTER_FORGET,
)


#: Failpoints declared elsewhere (a journaled step's own, see `engine.journal.declare_step`).
_REGISTERED: list[str] = []


def register(name: str) -> str:
    """Make `name` a known failpoint (idempotent); returns it."""
    if name not in KNOWN_FAILPOINTS and name not in _REGISTERED:
        if name != name.lower() or any(ch in name for ch in " ,="):
            raise ValueError(f"malformed failpoint name {name!r}")
        _REGISTERED.append(name)
    return name


def known_failpoints() -> tuple[str, ...]:
    """Every failpoint the code may hit: the built-in ones and the registered ones."""
    return (*KNOWN_FAILPOINTS, *_REGISTERED)


#: Prefix of an item that raises instead of killing.
ERROR_PREFIX = "error:"


class InjectedFault(Failed):
    """An `error:` failpoint was reached: the operation fails here, like a real error."""


class UnknownFailpoint(Failed):
    """The failpoint configuration names a failpoint that does not exist or is malformed."""


def _parse_item(item: str) -> tuple[str, int]:
    name, sep, count_text = item.partition("=")
    name = name.strip()
    if name not in known_failpoints():
        raise UnknownFailpoint(
            f"unknown failpoint {name!r}; known: {', '.join(known_failpoints())}"
        )
    if not sep:
        return name, 1
    count_text = count_text.strip()
    if not count_text.isdigit() or int(count_text) < 1:
        raise UnknownFailpoint(
            f"failpoint {name!r}: hit count must be a whole number >= 1, got {count_text!r}"
        )
    return name, int(count_text)


class Failpoints:
    """The set of armed failpoints; `hit(name)` at each crash point in the engine."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        """`names`: items like "after-stage" (crash on the first hit) or "after-stage=3"."""
        self._crash_on: dict[str, int] = {}
        self._raise_at: set[str] = set()
        self._hits: dict[str, int] = {}
        for item in names:
            item = item.strip()
            if item:
                raising = item.startswith(ERROR_PREFIX)
                name, count = _parse_item(item.removeprefix(ERROR_PREFIX))
                self._crash_on[name] = count
                if raising:
                    self._raise_at.add(name)

    @classmethod
    def parse(cls, text: str) -> Failpoints:
        """From a comma-separated list (the env / config value)."""
        return cls(text.split(","))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Failpoints:
        env = os.environ if environ is None else environ
        return cls.parse(env.get(FAILPOINTS_ENV, ""))

    @property
    def armed(self) -> dict[str, int]:
        """Armed failpoint -> the hit number that crashes."""
        return dict(self._crash_on)

    def __bool__(self) -> bool:
        return bool(self._crash_on)

    def hit(self, name: str) -> None:
        """Crash here if `name` is armed and this is its Nth hit; otherwise return at once."""
        if name not in known_failpoints():
            raise ValueError(f"failpoint {name!r} is not in KNOWN_FAILPOINTS nor registered")
        crash_on = self._crash_on.get(name)
        if crash_on is None:
            return
        count = self._hits.get(name, 0) + 1
        self._hits[name] = count
        if name in self._raise_at:
            if count == crash_on:  # once: the next operation passes there again
                log.warning("failpoint %s reached (hit %d): failing the operation", name, count)
                raise InjectedFault(f"injected failure at failpoint {name}")
            return
        if count < crash_on:
            return
        log.critical("failpoint %s reached (hit %d): killing pid %d with SIGKILL",
                     name, count, os.getpid())
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        os._exit(137)  # not reached: SIGKILL cannot be caught


#: The disarmed default.
DISABLED = Failpoints()
