"""pxhostctl as a process against a daemon on a private bus (in-memory engine): global
--json, the one JSON shape, history's table, a closed pipe, --no-block then re-attach."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fake_engine import FakeEngine
from test_manager import SPEC, running_daemon

from pxhostd.cli.schema import RESULT_KEYS
from pxhostd.daemon.service import Daemon


async def ctl(address: str, *args: str, shell_tail: str = "") -> tuple[int, str, str]:
    argv = [sys.executable, "-m", "pxhostd.cli.main", *args, "--bus-address", address]
    if shell_tail:
        command = " ".join(f"'{a}'" for a in argv) + f" {shell_tail}"
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", f"set -o pipefail; {command}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
    else:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def write_spec(tmp_path: Path, spec: dict[str, Any]) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec))
    return str(path)


@contextlib.asynccontextmanager
async def installed_and_held(
    address: str, state_root: Path, spec_file: str
) -> AsyncIterator[tuple[Daemon, FakeEngine]]:
    """A daemon with the spec installed, whose next operation waits on `engine.gate`."""
    async with running_daemon(address, state_root) as daemon:
        engine = daemon.engine
        assert isinstance(engine, FakeEngine)
        await ctl(address, "install", "--spec", spec_file)
        engine.gate = asyncio.Event()
        yield daemon, engine


def test_global_json_and_one_result_shape(
    dbus_address: str, state_root: Path, tmp_path: Path
) -> None:
    spec_file = write_spec(tmp_path, SPEC)

    async def body() -> None:
        async with running_daemon(dbus_address, state_root):
            code, out, err = await ctl(dbus_address, "--json", "install", "--spec", spec_file,
                                       "--id", "tx-one")
            assert code == 0, err
            result = json.loads(out)
            assert tuple(sorted(result)) == tuple(sorted(RESULT_KEYS))
            assert result["txid"] == "tx-one" and result["result"] == "success"
            assert result["finished"].endswith("Z") and result["error"] is None
            code, out, _ = await ctl(dbus_address, "--json", "history")
            history = json.loads(out)
            assert code == 0 and [e["txid"] for e in history] == ["tx-one"]
            assert set(history[0]) == set(result)
            assert history[0]["started"] == result["started"]
            # The option after the command works as well.
            code, out, _ = await ctl(dbus_address, "status", "--json")
            assert json.loads(out)["installed"] is True

    asyncio.run(body())


def test_history_table_and_closed_pipe(
    dbus_address: str, state_root: Path, tmp_path: Path
) -> None:
    spec_file = write_spec(tmp_path, SPEC)

    async def body() -> None:
        async with running_daemon(dbus_address, state_root) as daemon:
            await ctl(dbus_address, "install", "--spec", spec_file, "--id", "a")
            daemon.set_service_state("active/running")
            await ctl(dbus_address, "restart", "--id", "a-much-longer-transaction-id")
            code, out, _ = await ctl(dbus_address, "history")
            lines = out.splitlines()
            assert code == 0 and lines[0].split()[:3] == ["FINISHED", "OPERATION", "RESULT"]
            column = lines[0].index("TXID")
            assert [ln[column:].split()[0] for ln in lines[1:]] == [
                "a-much-longer-transaction-id", "a"]
            for command in ("status", "history"):
                # head reads a little and leaves: pxhostctl must end quietly, rc 0.
                code, out, err = await ctl(dbus_address, command, shell_tail="| head -c 1")
                assert code == 0, err
                assert err == "" and len(out) == 1
                # A reader that is gone before the first write (EPIPE at once).
                code, out, err = await ctl(dbus_address, command, shell_tail="| true")
                assert (code, err) == (0, "")

    asyncio.run(body())


def test_no_block_then_watch_ends_with_the_operations_exit_code(
    dbus_address: str, state_root: Path, tmp_path: Path
) -> None:
    spec_file = write_spec(tmp_path, SPEC)

    async def body() -> None:
        async with installed_and_held(dbus_address, state_root, spec_file) as (_, engine):
            code, out, _ = await ctl(dbus_address, "restart", "--no-block", "--id", "r1")
            assert code == 0 and out.strip() == "r1"
            watcher = asyncio.ensure_future(ctl(dbus_address, "watch", "r1"))
            timed_out = await ctl(dbus_address, "watch", "--id", "r1", "--timeout", "0.5")
            assert timed_out[0] == 8
            assert "pxhostctl watch r1" in timed_out[2] and "goes on" in timed_out[2]
            engine.fail_with = RuntimeError("boom")
            engine.gate.set()
            code, out, err = await watcher
            assert code == 1, (out, err)
            assert "working on restart" in err
            # Finished: re-attaching reports the outcome from the history, same code.
            code, out, _ = await ctl(dbus_address, "--json", "watch", "r1")
            assert code == 1 and json.loads(out)["result"] == "failed"
            code, _, err = await ctl(dbus_address, "watch", "nope")
            assert code == 2 and "no transaction 'nope'" in err
            assert err.startswith("pxhostctl: InvalidOptions: ")  # the error's own name

    asyncio.run(body())


def test_plan_exit_codes_rollback_and_the_callers_journal_lines(
    dbus_address: str, state_root: Path, tmp_path: Path, caplog: Any
) -> None:
    import logging
    import os

    spec_file = write_spec(tmp_path, SPEC)

    async def body() -> None:
        async with running_daemon(dbus_address, state_root):
            code, _, err = await ctl(dbus_address, "rollback")
            assert code == 6 and "nothing installed" in err  # the engine's named error
            code, out, _ = await ctl(dbus_address, "plan", "--spec", spec_file)
            assert code == 10 and "service: restart (spec changed)" in out
            with caplog.at_level(logging.INFO, logger="pxhostd"):
                await ctl(dbus_address, "install", "--spec", spec_file, "--id", "t-9")
            code, out, _ = await ctl(dbus_address, "install", "--dry-run", "--spec", spec_file)
            assert code == 0 and out.startswith("nothing to do")

    asyncio.run(body())
    lines = [r.getMessage() for r in caplog.records if "(txid t-9)" in r.getMessage()]
    comm = os.path.basename(sys.executable)[:15]  # what /proc/PID/comm of pxhostctl says
    assert lines[0].startswith(f"install started, requested by uid {os.getuid()} via {comm}, pid ")
    assert lines[-1].startswith("install: done")
    assert all("/transaction/" not in line for line in lines)


def test_ctrl_c_says_the_operation_goes_on_and_how_to_follow(
    dbus_address: str, state_root: Path, tmp_path: Path
) -> None:
    import signal

    spec_file = write_spec(tmp_path, SPEC)

    async def body() -> None:
        async with installed_and_held(dbus_address, state_root, spec_file) as (daemon, engine):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pxhostd.cli.main", "restart", "--id", "r-int",
                "--bus-address", dbus_address,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            assert proc.stderr is not None
            # Its progress reaches the engine's first report (before it, the transaction may
            # still read "queued"): it follows the transaction. Then Ctrl-C.
            line = b""
            while b"working on restart" not in line:
                line = await asyncio.wait_for(proc.stderr.readline(), 60)
                assert line, "pxhostctl ended before it followed the transaction"
            proc.send_signal(signal.SIGINT)
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 130
            assert err.decode().strip() == (
                "pxhostctl: interrupted; restart goes on in pxhostd as transaction r-int; "
                "follow it with: pxhostctl watch r-int"
            )
            assert daemon.transactions is not None and daemon.transactions.active is not None
            engine.gate.set()

    asyncio.run(body())
