"""The one way the pod runs a command on the host: `nsenter --mount=<host ns> -- argv`.

Like the old monitor, only the host's mount namespace is entered: with hostPID and
hostNetwork the pod already shares the host's PID and network namespaces, and the host's
file system is what host commands need (systemctl, apt-get, findmnt, mount). Commands are
argv lists, never shell strings, so no value is ever parsed by a shell. Each runs with a
small fixed environment (the pod's environment, which may hold secrets, never reaches the
host), in its own process group, with a timeout after which the whole group is killed.
Failures are HostCommandFailed naming the command, its exit status and its last words.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pxhostd.errors import Failed

#: The host's mount namespace as the DaemonSet mounts it (host /proc/1/ns at /host_proc/1/ns).
HOST_MNT_NS = Path("/host_proc/1/ns/mnt")
#: The environment every host command gets.
HOST_ENV: Mapping[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C.UTF-8",
}
#: Default bound on one host command (seconds).
DEFAULT_TIMEOUT = 60.0
#: nsenter's own exit codes when it cannot run the command (util-linux exitcodes.h).
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
#: Output kept per stream (a chatty apt-get must not fill memory).
MAX_OUTPUT = 256 * 1024

_log = logging.getLogger(__name__)


class HostCommandFailed(Failed):
    """A host command could not be run, exited non-zero, or ran out of time."""

    name = "HostCommandFailed"

    def __init__(self, message: str, *, returncode: int | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode


@dataclass(frozen=True)
class HostResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def not_found(self) -> bool:
        """nsenter could not find the program on the host."""
        return self.returncode == EXIT_NOT_FOUND


def _check_argv(argv: Sequence[str]) -> tuple[str, ...]:
    if isinstance(argv, str | bytes) or not argv:
        raise TypeError("host commands are non-empty argv lists, never shell strings")
    for item in argv:
        if not isinstance(item, str):
            raise TypeError(f"host command arguments must be str, got {type(item).__name__}")
        if "\0" in item:
            raise ValueError("host command arguments must not contain NUL")
    return tuple(argv)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _decode(data: bytes) -> str:
    return data[:MAX_OUTPUT].decode("utf-8", errors="replace")


class Host:
    """Runs commands in the host's mount namespace (see the module docstring)."""

    def __init__(self, mnt_ns: Path = HOST_MNT_NS, *, nsenter: str = "nsenter") -> None:
        self.mnt_ns = mnt_ns
        self.nsenter = nsenter

    def command(self, argv: Sequence[str]) -> list[str]:
        """The full argv that runs `argv` on the host.

        nsenter is looked up on the pod's PATH here: given an environment, Popen would
        search the child's (the host's) PATH instead.
        """
        nsenter = shutil.which(self.nsenter) or self.nsenter
        return [nsenter, f"--mount={self.mnt_ns}", "--", *_check_argv(argv)]

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
    ) -> HostResult:
        """Run `argv` on the host; raise HostCommandFailed on failure if `check`.

        Cancelling the awaiting task kills the command (its whole process group) and reaps
        it before the cancellation goes on: no orphan is left behind.
        """
        args = _check_argv(argv)
        full = self.command(args)
        shown = shlex.join(args)
        child_env = dict(HOST_ENV)
        if env:
            child_env.update(env)
        _log.debug("host: %s", shown)
        try:
            proc = await asyncio.create_subprocess_exec(
                *full,
                stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=child_env,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise HostCommandFailed(
                f"cannot run `{shown}` on the host: {self.nsenter} not found in the pod"
            ) from exc
        except OSError as exc:
            raise HostCommandFailed(
                f"cannot run `{shown}` on the host: {exc.strerror or exc}"
            ) from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(input), timeout)
        except TimeoutError:
            await _kill(proc)
            raise HostCommandFailed(
                f"host command `{shown}` did not finish within {timeout:g} s (killed)"
            ) from None
        except BaseException:
            await _kill(proc)
            raise
        assert proc.returncode is not None
        result = HostResult(args, proc.returncode, _decode(out), _decode(err))
        if check and not result.ok:
            raise HostCommandFailed(describe_failure(result), returncode=result.returncode)
        return result


def describe_failure(result: HostResult) -> str:
    shown = shlex.join(result.argv)
    why = _last_line(result.stderr) or _last_line(result.stdout)
    if result.returncode == EXIT_NOT_FOUND:
        head = f"`{shown}`: {result.argv[0]} not found on the host"
    elif result.returncode == EXIT_CANNOT_EXECUTE:
        head = f"`{shown}`: cannot execute {result.argv[0]} on the host"
    elif result.returncode < 0:
        head = f"host command `{shown}` was killed by signal {-result.returncode}"
    else:
        head = f"host command `{shown}` failed (exit {result.returncode})"
    return f"{head}: {why}" if why else head


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the command's process group and reap it, even while being cancelled."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        # Shielded: a second cancellation must not leave the child unreaped.
        await asyncio.shield(proc.wait())
