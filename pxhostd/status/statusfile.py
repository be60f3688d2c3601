"""The status file: how the daemon tells the pod (and a shell) whether the node is ready.

One `KEY=VALUE` per line, sd_notify style, so `grep ^READY= /run/pxhostd/status` works.
Values are escaped (see `escape_value`) so no value can ever add a line. The writer stamps
the fields it owns (GENERATION, BOOT_ID, PID, HEARTBEAT); the caller says the rest. Every
write is atomic (temp + rename), so a reader sees the old or the new file, never half of
one. The format is documented in docs/status-file.md.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pxhostd.errors import HostStateError
from pxhostd.hostfs import atomic_write, remove_file

#: How often the daemon rewrites the file while nothing changes (seconds).
HEARTBEAT_INTERVAL = 5.0
#: A heartbeat older than this many intervals means the daemon is gone or stuck.
FRESHNESS_FACTOR = 3.0
#: Default probe limit on the heartbeat's age (seconds).
DEFAULT_MAX_AGE = HEARTBEAT_INTERVAL * FRESHNESS_FACTOR

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
#: A status file is a few hundred bytes; anything much larger is not one.
MAX_STATUS_BYTES = 64 * 1024

KEYS = (
    "READY",
    "STATUS",
    "STATE",
    "VERSION",
    "SERVICE_STATE",
    "GENERATION",
    "BOOT_ID",
    "PID",
    "HEARTBEAT",
    "LAST_ERROR",
    "HEALTH_URL",
)
#: Keys added later: written always, read as "" when absent (a file of an older daemon).
#: SPEC_DIGEST is the digest of the applied spec (pxhostd.spec.digest), RELEASE the
#: release it runs; a pod's probe compares them with what it submitted.
OPTIONAL_KEYS = ("SPEC_DIGEST", "RELEASE")
_KEY_RE = re.compile(r"[A-Z][A-Z0-9_]*")


class DaemonState(enum.StrEnum):
    """Values of STATE. Readers must accept values they do not know (newer daemons)."""

    STARTING = "starting"  # recovering interrupted work; nothing is decided yet
    IDLE = "idle"  # nothing running; the host matches the spec as far as the daemon knows
    INSTALLING = "installing"  # install, upgrade, restart or rollback of the service running
    UNINSTALLING = "uninstalling"
    BUSY = "busy"  # a start, stop, restart, enable or disable of the service running
    FAILED = "failed"  # the last operation failed and left something broken; LAST_ERROR says why
    STOPPING = "stopping"  # the daemon is shutting down


class StatusUnavailable(HostStateError):
    """The status file cannot be used; the message says why."""


class StatusMissing(StatusUnavailable):
    """No status file: the daemon has not written one (not installed, not started)."""


class StatusCorrupt(StatusUnavailable):
    """The file exists but is not a status file this code can read."""


@dataclass(frozen=True)
class Status:
    """One snapshot of the daemon's view; field names follow the file's keys."""

    ready: bool = False
    status: str = ""
    state: str = DaemonState.STARTING.value
    version: str = ""
    #: The service's `ActiveState/SubState`, e.g. `active/running`; empty when unknown.
    service_state: str = ""
    last_error: str = ""
    health_url: str = ""
    #: Digest of the applied spec ("" when nothing is applied).
    spec_digest: str = ""
    #: Release id the service runs (version + payload digest prefix; "" when none).
    release: str = ""
    # Stamped by StatusFile.write:
    generation: int = 0
    boot_id: str = ""
    pid: int = 0
    #: Unix time of the write, in seconds (microsecond resolution in the file).
    heartbeat: float = 0.0

    def content(self) -> Status:
        """This status without the stamped fields: what a change is measured on."""
        return dataclasses.replace(self, generation=0, boot_id="", pid=0, heartbeat=0.0)


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNESCAPES = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


def _needs_hex(ch: str) -> bool:
    o = ord(ch)
    # C0/C1 controls, DEL, and what str.splitlines() also treats as a line break or cannot
    # encode as UTF-8 (surrogates).
    return o < 0x20 or 0x7F <= o <= 0x9F or o in (0x2028, 0x2029) or 0xD800 <= o <= 0xDFFF


def escape_value(value: str) -> str:
    """Escape a value so it stays on its line: `\\\\ \\n \\r \\t`, `\\xHH`, `\\uHHHH`."""
    out: list[str] = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif _needs_hex(ch):
            o = ord(ch)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def unescape_value(text: str) -> str:
    """Inverse of `escape_value`; ValueError on a malformed escape."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        kind = text[i + 1 : i + 2]
        if kind in _UNESCAPES:
            out.append(_UNESCAPES[kind])
            i += 2
        elif kind in ("x", "u"):
            width = 2 if kind == "x" else 4
            digits = text[i + 2 : i + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError(f"bad \\{kind} escape at offset {i}")
            out.append(chr(int(digits, 16)))
            i += 2 + width
        else:
            raise ValueError(f"bad escape at offset {i}")
    return "".join(out)


def format_status(status: Status) -> str:
    """The file's text: every key of KEYS and OPTIONAL_KEYS, in that order, one per line."""
    values = {
        "READY": "1" if status.ready else "0",
        "STATUS": status.status,
        "STATE": status.state,
        "VERSION": status.version,
        "SERVICE_STATE": status.service_state,
        "GENERATION": str(status.generation),
        "BOOT_ID": status.boot_id,
        "PID": str(status.pid),
        "HEARTBEAT": f"{status.heartbeat:.6f}",
        "LAST_ERROR": status.last_error,
        "HEALTH_URL": status.health_url,
        "SPEC_DIGEST": status.spec_digest,
        "RELEASE": status.release,
    }
    return "".join(f"{key}={escape_value(values[key])}\n" for key in (*KEYS, *OPTIONAL_KEYS))


def parse_pairs(text: str) -> dict[str, str]:
    """KEY=VALUE lines into a dict (values unescaped); StatusCorrupt on anything else."""
    pairs: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if not line:
            continue
        key, sep, raw = line.partition("=")
        if not sep or not _KEY_RE.fullmatch(key):
            raise StatusCorrupt(f"status file line {number} is not KEY=VALUE")
        if key in pairs:
            raise StatusCorrupt(f"status file repeats {key}")
        try:
            pairs[key] = unescape_value(raw)
        except ValueError as exc:
            raise StatusCorrupt(f"status file {key}: {exc}") from None
    return pairs


def parse_status(text: str) -> Status:
    """The file's text into a Status. Unknown keys are ignored (a newer daemon may add some)."""
    pairs = parse_pairs(text)
    missing = [key for key in KEYS if key not in pairs]
    if missing:
        raise StatusCorrupt(f"status file lacks {', '.join(missing)}")
    if pairs["READY"] not in ("0", "1"):
        raise StatusCorrupt(f"status file READY={pairs['READY']!r} is not 0 or 1")
    try:
        generation = int(pairs["GENERATION"])
        pid = int(pairs["PID"])
        heartbeat = float(pairs["HEARTBEAT"])
    except ValueError as exc:
        raise StatusCorrupt(f"status file has a malformed number: {exc}") from None
    if not (heartbeat == heartbeat and abs(heartbeat) != float("inf")):  # NaN, inf
        raise StatusCorrupt("status file HEARTBEAT is not a finite number")
    return Status(
        ready=pairs["READY"] == "1",
        status=pairs["STATUS"],
        state=pairs["STATE"],
        version=pairs["VERSION"],
        service_state=pairs["SERVICE_STATE"],
        last_error=pairs["LAST_ERROR"],
        health_url=pairs["HEALTH_URL"],
        spec_digest=pairs.get("SPEC_DIGEST", ""),
        release=pairs.get("RELEASE", ""),
        generation=generation,
        boot_id=pairs["BOOT_ID"],
        pid=pid,
        heartbeat=heartbeat,
    )


def read_status(path: Path) -> Status:
    """Read and parse a status file; StatusMissing / StatusCorrupt when it cannot be used."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_STATUS_BYTES + 1)
    except FileNotFoundError:
        raise StatusMissing(f"no status file at {path}") from None
    except OSError as exc:
        raise StatusUnavailable(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_STATUS_BYTES:
        raise StatusCorrupt(f"{path} is larger than {MAX_STATUS_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise StatusCorrupt(f"{path} is not UTF-8") from None
    return parse_status(text)


def current_boot_id(path: Path = BOOT_ID_PATH) -> str:
    """This boot's id (the same inside a container: the file is not namespaced)."""
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise HostStateError(f"cannot read the boot id from {path}: {exc.strerror}") from None


def one_line(text: str, limit: int = 500) -> str:
    """Collapse whitespace runs (newlines included) so free text fits a STATUS/LAST_ERROR."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class StatusFile:
    """The daemon's writer (and anyone's reader) of one status file.

    `write` stamps PID, BOOT_ID and HEARTBEAT and increases GENERATION when anything other
    than those stamps changed (the daemon's heartbeat is a write of unchanged content). The
    generation continues from an existing file of the same boot, so it never goes back
    while the host stays up (the file lives on tmpfs and dies with the boot). Thread-safe:
    writes from the event loop's executor threads are serialised.
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        boot_id: str | None = None,
        pid: int | None = None,
    ) -> None:
        self.path = path
        self._clock = clock
        self._boot_id = boot_id
        self._pid = os.getpid() if pid is None else pid
        self._lock = threading.RLock()
        self._last: Status | None = None

    @property
    def last(self) -> Status | None:
        """What this writer wrote last (None before the first write)."""
        return self._last

    def _start_generation(self, boot_id: str) -> int:
        try:
            previous = read_status(self.path)
        except StatusUnavailable:
            return 0
        return previous.generation if previous.boot_id == boot_id else 0

    def write(self, status: Status) -> Status:
        """Write `status` (stamped) atomically and return what was written."""
        with self._lock:
            if self._boot_id is None:
                self._boot_id = current_boot_id()
            if self._last is None:
                generation = self._start_generation(self._boot_id) + 1
            elif status.content() != self._last.content():
                generation = self._last.generation + 1
            else:
                generation = self._last.generation
            stamped = dataclasses.replace(
                status,
                generation=generation,
                boot_id=self._boot_id,
                pid=self._pid,
                heartbeat=round(self._clock(), 6),
            )
            atomic_write(self.path, format_status(stamped))
            self._last = stamped
            return stamped

    def update(self, **changes: object) -> Status:
        """Write the last status with some fields changed (e.g. `update(ready=False)`)."""
        with self._lock:
            base = self._last or Status()
            return self.write(dataclasses.replace(base, **changes))  # type: ignore[arg-type]

    def read(self) -> Status:
        return read_status(self.path)

    def remove(self) -> bool:
        """Remove the file (daemon stopping for good: readers then see 'not installed')."""
        with self._lock:
            self._last = None
            return remove_file(self.path)
