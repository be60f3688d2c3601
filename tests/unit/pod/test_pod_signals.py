"""Stop signals, and the pod under tini (the image's entrypoint), with real processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from pxhostd.pod.signals import install_stop_handlers

REPO = Path(__file__).resolve().parents[3]
BOUND = 60.0

#: The image's entrypoint, as the DaemonSet and the Swarm stack run it.
TINI = ["tini", "-s", "--"]

#: Under tini: orphans of our children are reaped (by tini, the subreaper) while asyncio
#: still gets the exit status of every child it awaits; then SIGTERM, forwarded by tini,
#: stops the program through its own handler.
UNDER_TINI = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from pxhostd.pod.signals import install_stop_handlers

    async def spawn_orphan():
        # sh starts a background sleep and exits at once: the sleep is re-parented to tini.
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "sleep 0.2 >/dev/null & echo $!; exit 0", stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        return proc.returncode, int(out)

    async def awaited(code, delay):
        proc = await asyncio.create_subprocess_exec("sh", "-c", f"sleep {delay}; exit {code}")
        return await proc.wait()

    async def main():
        stop = asyncio.Event()
        install_stop_handlers(asyncio.get_running_loop(), stop)
        results = await asyncio.gather(
            *(spawn_orphan() for _ in range(4)),
            *(awaited(code, 0.05 * i) for i, code in enumerate([7, 0, 3, 42, 1, 9])),
        )
        orphans = [pid for _, pid in results[:4]]
        deadline = time.monotonic() + 30  # bounded wait, not a speed check
        while any(os.path.exists(f"/proc/{pid}") for pid in orphans):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        print(json.dumps({
            "sh_codes": [code for code, _ in results[:4]],
            "awaited_codes": list(results[4:]),
            "orphans_left": [pid for pid in orphans if os.path.exists(f"/proc/{pid}")],
        }), flush=True)
        await stop.wait()
        return 0

    sys.exit(asyncio.run(main()))
    """
)


def test_under_tini_orphans_are_reaped_and_sigterm_reaches_the_program() -> None:
    proc = subprocess.Popen(
        [*TINI, sys.executable, "-c", UNDER_TINI], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    with proc:
        assert proc.stdout is not None and proc.stderr is not None
        data = json.loads(proc.stdout.readline())
        proc.send_signal(signal.SIGTERM)  # to tini, which forwards it
        assert proc.wait(timeout=BOUND) == 0, proc.stderr.read()
    assert data["sh_codes"] == [0, 0, 0, 0]
    # Not one awaited child lost its status to a reaper (asyncio would report 255).
    assert data["awaited_codes"] == [7, 0, 3, 42, 1, 9]
    assert data["orphans_left"] == []


def test_tini_exits_with_the_programs_status() -> None:
    """The kubelet and Swarm see the pod's own exit code (1: a named error)."""
    assert subprocess.run([*TINI, "sh", "-c", "exit 7"], check=False).returncode == 7


def test_stop_signals_set_the_event() -> None:
    async def scenario() -> list[bool]:
        loop = asyncio.get_running_loop()
        seen = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            stop = asyncio.Event()
            remove = install_stop_handlers(loop, stop)
            try:
                os.kill(os.getpid(), signum)
                await asyncio.wait_for(stop.wait(), BOUND)
                seen.append(stop.is_set())
            finally:
                remove()
        return seen

    assert asyncio.run(scenario()) == [True, True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_to_a_real_program_exits_zero() -> None:
    code = textwrap.dedent(
        """
        import asyncio, sys
        from pxhostd.pod.signals import install_stop_handlers

        async def main():
            stop = asyncio.Event()
            install_stop_handlers(asyncio.get_running_loop(), stop)
            print("ready", flush=True)
            await stop.wait()
            return 0

        sys.exit(asyncio.run(main()))
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    with proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=BOUND) == 0


def test_a_second_sigterm_while_stopping_still_exits_zero() -> None:
    """Podman signals every process of a hostPID container and tini forwards its own."""
    code = textwrap.dedent(
        """
        import asyncio, os, sys
        from pxhostd.pod.signals import ignore_stop_signals, install_stop_handlers

        async def main():
            stop = asyncio.Event()
            remove = install_stop_handlers(asyncio.get_running_loop(), stop)
            print(os.getpid(), flush=True)
            await stop.wait()
            remove()
            ignore_stop_signals()
            print("stopping", flush=True)
            sys.stdin.readline()  # winding down until the test has sent the second one
            return 0

        sys.exit(asyncio.run(main()))
        """
    )
    proc = subprocess.Popen(
        [*TINI, sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    with proc:
        assert proc.stdout is not None and proc.stdin is not None and proc.stderr is not None
        child = int(proc.stdout.readline())
        proc.send_signal(signal.SIGTERM)  # tini forwards it
        assert proc.stdout.readline() == "stopping\n"
        os.kill(child, signal.SIGTERM)  # the runtime's own, straight to the program
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=BOUND) == 0, proc.stderr.read()
