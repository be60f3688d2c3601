"""Stop signals and the orphan reaper, proven with real processes.

The reaper tests run in a child Python process that makes itself a child subreaper (as
PID 1 of a container is): orphans of its descendants become its children.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from pxhostd.pod.signals import ChildReaper, install_stop_handlers

REPO = Path(__file__).resolve().parents[3]
BOUND = 60.0

SUBREAPER_SCENARIO = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from pxhostd.pod.signals import ChildReaper, adopts_orphans, set_child_subreaper

    assert not adopts_orphans()
    set_child_subreaper()
    assert adopts_orphans()

    async def spawn_orphan():
        # sh starts a background sleep and exits at once: the sleep is re-parented to us.
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "sleep 0.2 >/dev/null & echo $!; exit 0", stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        return proc.returncode, int(out)

    async def awaited(code, delay):
        proc = await asyncio.create_subprocess_exec("sh", "-c", f"sleep {delay}; exit {code}")
        return await proc.wait()

    async def main():
        reaper = ChildReaper(grace=0.1, interval=0.5)
        reaper.start(asyncio.get_running_loop())
        results = await asyncio.gather(
            *(spawn_orphan() for _ in range(4)),
            *(awaited(code, 0.05 * i) for i, code in enumerate([7, 0, 3, 42, 1, 9])),
        )
        orphans = [pid for _, pid in results[:4]]
        deadline = time.monotonic() + 30  # bounded wait, not a speed check
        while not set(orphans) <= set(reaper.reaped) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        reaper.stop()
        print(json.dumps({
            "sh_codes": [code for code, _ in results[:4]],
            "awaited_codes": list(results[4:]),
            "orphans": orphans,
            "reaped": {str(k): v for k, v in reaper.reaped.items()},
            "zombies_left": reaper.zombie_children(),
        }))

    asyncio.run(main())
    """
)


def run_scenario(code: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, timeout=BOUND, cwd=REPO, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_orphans_are_reaped_and_awaited_exit_codes_survive() -> None:
    data = run_scenario(SUBREAPER_SCENARIO)
    assert data["sh_codes"] == [0, 0, 0, 0]
    # Not one awaited child lost its status to the reaper (asyncio would report 255).
    assert data["awaited_codes"] == [7, 0, 3, 42, 1, 9]
    orphans = data["orphans"]
    reaped = data["reaped"]
    assert isinstance(orphans, list) and isinstance(reaped, dict)
    assert {str(p) for p in orphans} <= set(reaped)
    assert all(reaped[str(p)] == 0 for p in orphans)  # sleep exited 0
    assert data["zombies_left"] == []


HELD_SCENARIO = textwrap.dedent(
    """
    import json, os, subprocess, time
    from pxhostd.pod.signals import ChildReaper, set_child_subreaper

    set_child_subreaper()
    reaper = ChildReaper(grace=0.0)
    held = subprocess.Popen(["sh", "-c", "exit 5"])
    free = subprocess.Popen(["sh", "-c", "exit 6"])
    reaper.hold(held.pid)
    deadline = time.monotonic() + 30
    while len(reaper.zombie_children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    zombies = reaper.zombie_children()
    reaper.sweep()
    print(json.dumps({
        "zombies": sorted(zombies) == sorted([held.pid, free.pid]),
        "reaped": list(reaper.reaped),
        "free": free.pid,
        "held_code": held.wait(),
    }))
    """
)


def test_held_children_are_left_to_their_owner() -> None:
    data = run_scenario(HELD_SCENARIO)
    assert data["zombies"] is True
    assert data["reaped"] == [data["free"]]
    assert data["held_code"] == 5


def test_grace_protects_young_zombies(tmp_path: Path) -> None:
    """A fake /proc: one zombie child, seen at t=0, reaped only after the grace."""
    me = os.getpid()
    proc = tmp_path / "proc"
    (proc / "self" / "task" / str(me)).mkdir(parents=True)
    (proc / "self" / "task" / str(me) / "children").write_text("999999 ")
    (proc / "999999").mkdir()
    (proc / "999999" / "stat").write_text(f"999999 (odd) name) Z {me} 1 1 0\n")
    now = [0.0]
    reaper = ChildReaper(grace=1.0, proc=proc, clock=lambda: now[0])
    assert reaper.zombie_children() == [999999]
    assert reaper.sweep() == []
    assert reaper.pending
    now[0] = 2.0
    # Old enough now; waitpid finds no such child of ours, so nothing is recorded.
    assert reaper.sweep() == []
    assert reaper.reaped == {}
    assert not reaper.pending


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
