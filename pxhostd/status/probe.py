"""The readiness probe: is this node's storage service ready, as far as we can prove it?

A readiness file alone goes stale (kata-deploy reverted such a probe), so the probe wants
four things: the file says READY=1, its heartbeat is fresh (the daemon is alive), it was
written in this boot (not a leftover), and the payload's own health URL answers. It needs
only the status file: the health URL is in it. Wired as `pxhostctl probe`.

In the pod (`pxhostctl probe --pod`) a fifth: the host runs *this pod's* spec. The pod's
submission record (pxhostd.status.submission) must exist, say the submission succeeded,
and name the spec digest and release that the status file reports applied. So a new pod
is not ready before its own submission has finished, nor after it failed, nor while the
host still runs what an older pod asked for.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pxhostd.errors import HostStateError
from pxhostd.paths import Paths
from pxhostd.status.statusfile import (
    DEFAULT_MAX_AGE,
    Status,
    StatusUnavailable,
    current_boot_id,
    one_line,
    read_status,
)
from pxhostd.status.submission import (
    POD_SUBMISSION,
    Submission,
    SubmissionResult,
    read_submission,
)

#: The health URL must answer within this many seconds (the kubelet's probe timeout
#: defaults to 1 s, so keep well below what the DaemonSet allows).
DEFAULT_HEALTH_TIMEOUT = 2.0


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    reason: str


class UnsafeHealthUrl(ValueError):
    """The health URL is not a plain http URL on a loopback address."""


def check_local_url(url: str) -> str:
    """Return `url` if it is http:// on a loopback IP literal or `localhost`; else raise.

    The probe runs with the pod's privileges; it must never be pointed at another host.
    """
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise UnsafeHealthUrl(f"health URL {url!r} is not http://")
    if parts.username is not None or parts.password is not None:
        raise UnsafeHealthUrl("health URL must not carry credentials")
    host = parts.hostname or ""
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise UnsafeHealthUrl(f"health URL host {host!r} is not a loopback address")
    return url


#: The status line is all the probe reads; a longer one is not an HTTP answer.
MAX_STATUS_LINE = 1024


def local_get(url: str, agent: str) -> tuple[str, int, bytes]:
    """(host, port, request) of a plain GET of a checked loopback URL, `Connection: close`:
    the one request the probe and the pod's relay send. HTTP/1.0, so the relay's body is
    never chunked."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = (f"GET {target} HTTP/1.0\r\nHost: {host_header}\r\nUser-Agent: {agent}\r\n"
               "Connection: close\r\n\r\n")
    return host, port, request.encode("ascii")


def status_code(line: bytes) -> int:
    """The code of an HTTP status line (`HTTP/x.y NNN reason`); ValueError otherwise."""
    fields = line.split(b"\n", 1)[0].rstrip(b"\r").split(b" ", 2)
    if (len(fields) < 2 or not fields[0].startswith(b"HTTP/")
            or len(fields[1]) != 3 or not fields[1].isdigit()):
        raise ValueError(f"bad status line {line[:80]!r}")
    return int(fields[1])


def _status_code(url: str, timeout: float) -> int:
    """GET `url` and return the answer's status code, all within one deadline.

    Only the status line is read, at most MAX_STATUS_LINE bytes: a server that trickles
    or floods cannot hold the probe past `timeout`. No proxy, no redirect: plain sockets.
    """
    host, port, request = local_get(url, "pxhostctl-probe")
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        line = b""
        while b"\n" not in line:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out")
            sock.settimeout(left)
            chunk = sock.recv(MAX_STATUS_LINE - len(line))
            if not chunk:
                raise ValueError("closed before answering")
            line += chunk
            if len(line) >= MAX_STATUS_LINE and b"\n" not in line:
                raise ValueError("status line too long")
    return status_code(line)


def check_health_url(url: str, timeout: float = DEFAULT_HEALTH_TIMEOUT) -> ProbeResult:
    """GET `url` (loopback only, no proxy, no redirect); ok on a 2xx within `timeout`."""
    try:
        check_local_url(url)
    except UnsafeHealthUrl as exc:
        return ProbeResult(False, str(exc))
    try:
        code = _status_code(url, timeout)
    except (OSError, ValueError, UnicodeError) as exc:
        return ProbeResult(False, f"health {url} unreachable: {exc}")
    if not 200 <= code < 300:
        return ProbeResult(False, f"health {url} answered {code}")
    return ProbeResult(True, f"health {url} answered {code}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (in our PID namespace)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def judge(
    status: Status,
    *,
    max_age: float,
    now: float,
    boot_id: str,
    check_pid: bool = False,
) -> ProbeResult:
    """The file-only part of the probe, pure: everything but the health URL."""
    if status.boot_id != boot_id:
        return ProbeResult(False, "status file is from another boot")
    age = now - status.heartbeat
    if age > max_age:
        return ProbeResult(False, f"heartbeat is {age:.1f} s old (limit {max_age:g} s)")
    if age < -max_age:
        return ProbeResult(False, f"heartbeat is {-age:.1f} s in the future (clock jump?)")
    if check_pid and not pid_alive(status.pid):
        return ProbeResult(False, f"daemon pid {status.pid} is not running")
    if not status.ready:
        detail = status.last_error or status.status or f"state {status.state}"
        return ProbeResult(False, one_line(f"READY=0 ({detail})"))
    return ProbeResult(True, one_line(status.status or "ready"))


def judge_submission(status: Status, sub: Submission | None) -> ProbeResult:
    """Does the host run what this pod submitted? Pure."""
    if sub is None:
        return ProbeResult(False, "this pod has not finished submitting its spec")
    if sub.result is not SubmissionResult.DONE:
        return ProbeResult(False, one_line(f"this pod's submission failed: {sub.message}"))
    if status.spec_digest != sub.spec_digest:
        return ProbeResult(
            False,
            f"the host runs another spec ({status.spec_digest or 'none'}, this pod's is "
            f"{sub.spec_digest})",
        )
    if sub.release and status.release != sub.release:
        return ProbeResult(
            False, f"the host runs release {status.release or 'none'}, this pod's is {sub.release}"
        )
    return ProbeResult(True, "this pod's spec is applied")


def probe(
    status_path: Path,
    *,
    max_age: float = DEFAULT_MAX_AGE,
    check_health: bool = True,
    check_pid: bool = False,
    health_timeout: float = DEFAULT_HEALTH_TIMEOUT,
    now: float | None = None,
    boot_id: str | None = None,
    submission: Path | None = None,
) -> ProbeResult:
    """Is the node ready? `now` and `boot_id` default to the real clock and boot.

    `submission`: the pod's record; when given, the host must run that spec too.
    """
    try:
        status = read_status(status_path)
    except StatusUnavailable as exc:
        return ProbeResult(False, str(exc))
    try:
        current = current_boot_id() if boot_id is None else boot_id
    except HostStateError as exc:
        return ProbeResult(False, str(exc))
    result = judge(
        status,
        max_age=max_age,
        now=time.time() if now is None else now,
        boot_id=current,
        check_pid=check_pid,
    )
    if result.ok and submission is not None:
        try:
            record = read_submission(submission)
        except StatusUnavailable as exc:
            return ProbeResult(False, str(exc))
        mine = judge_submission(status, record)
        if not mine.ok:
            return mine
    if not result.ok or not check_health or not status.health_url:
        return result
    health = check_health_url(status.health_url, health_timeout)
    if not health.ok:
        return health
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pxhostctl probe",
        description="Readiness probe for the storage service; exit 0 when ready, 9 when not.",
        epilog="See pxhostctl(1).",
    )
    parser.add_argument("--status-file", type=Path, default=Paths().status_file,
                        metavar="FILE", help="the status file (default %(default)s)")
    parser.add_argument("--max-age", type=float, default=DEFAULT_MAX_AGE, metavar="SECONDS",
                        help="oldest acceptable heartbeat (default %(default)g)")
    parser.add_argument("--health-timeout", type=float, default=DEFAULT_HEALTH_TIMEOUT,
                        metavar="SECONDS",
                        help="how long the health URL may take (default %(default)g)")
    parser.add_argument("--no-health", action="store_true", help="skip the health URL")
    parser.add_argument("--check-pid", action="store_true",
                        help="also require the daemon's pid to be alive (needs hostPID)")
    parser.add_argument("--pod", action="store_true",
                        help="in the pod: the host must run this pod's submitted spec "
                             f"(its record, {POD_SUBMISSION})")
    parser.add_argument("--submission", type=Path, default=None, metavar="FILE",
                        help="the pod's submission record (implies --pod)")
    return parser


#: pxhostctl's exit code for "not ready" (pxhostd.cli.exitcodes.NOT_READY; kept here so
#: the probe stays importable without the CLI).
NOT_READY = 9


def main(argv: Sequence[str] | None = None) -> int:
    """`pxhostctl probe`: exit 0 when ready, 9 when not; one line on stdout says why."""
    args = build_parser().parse_args(argv)
    result = probe(
        args.status_file,
        max_age=args.max_age,
        check_health=not args.no_health,
        check_pid=args.check_pid,
        health_timeout=args.health_timeout,
        submission=args.submission or (POD_SUBMISSION if args.pod else None),
    )
    print(f"{'ready' if result.ok else 'not ready'}: {one_line(result.reason)}")
    sys.stdout.flush()
    return 0 if result.ok else NOT_READY


if __name__ == "__main__":
    sys.exit(main())
