"""The pod's own record of its submission: what it asked the host for, and how that went.

The daemon's status file says what the host runs; only the pod knows what *it* asked for.
So the pod writes this small file inside its container (never on the host) once its
submission has ended, and the probe (`pxhostctl probe --pod`) is ready only when the
status file reports this very spec digest and release applied. Without the record (the
submission has not finished), or with a failed one, the pod is not ready. Same format as
the status file: `KEY=VALUE` lines, values escaped.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from pxhostd.hostfs import atomic_write, remove_file
from pxhostd.status.statusfile import (
    MAX_STATUS_BYTES,
    StatusCorrupt,
    StatusUnavailable,
    escape_value,
    parse_pairs,
)

#: In the pod's own file system: a new container starts without one.
POD_SUBMISSION = Path("/run/pxhostd-pod/submission")
KEYS = ("RESULT", "SPEC_DIGEST", "RELEASE", "TXID", "MESSAGE")


class SubmissionResult(enum.StrEnum):
    DONE = "done"  # the daemon applied the spec (or found it applied)
    FAILED = "failed"  # refused, rolled back, timed out ...: MESSAGE says how


@dataclass(frozen=True)
class Submission:
    result: SubmissionResult
    #: pxhostd.spec.digest of the submitted spec.
    spec_digest: str
    #: The release the daemon reported for it ("" when unknown, e.g. after a failure).
    release: str = ""
    txid: str = ""
    message: str = ""


def format_submission(sub: Submission) -> str:
    values = (sub.result.value, sub.spec_digest, sub.release, sub.txid, sub.message)
    return "".join(f"{k}={escape_value(v)}\n" for k, v in zip(KEYS, values, strict=True))


def parse_submission(text: str) -> Submission:
    pairs = parse_pairs(text)
    missing = [key for key in KEYS if key not in pairs]
    if missing:
        raise StatusCorrupt(f"submission record lacks {', '.join(missing)}")
    try:
        result = SubmissionResult(pairs["RESULT"])
    except ValueError:
        raise StatusCorrupt(f"submission record RESULT={pairs['RESULT']!r}") from None
    return Submission(result, pairs["SPEC_DIGEST"], pairs["RELEASE"], pairs["TXID"],
                      pairs["MESSAGE"])


def write_submission(path: Path, sub: Submission) -> None:
    """Atomically (a probe sees no record or a whole one)."""
    atomic_write(path, format_submission(sub), mode=0o644)


def clear_submission(path: Path) -> None:
    """At the pod's start: a record of an earlier run in the same container is not ours."""
    remove_file(path)


def read_submission(path: Path) -> Submission | None:
    """The record, None when there is none yet; StatusUnavailable when unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_STATUS_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StatusUnavailable(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_STATUS_BYTES:
        raise StatusCorrupt(f"{path} is larger than {MAX_STATUS_BYTES} bytes")
    try:
        return parse_submission(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise StatusCorrupt(f"{path} is not UTF-8") from None
