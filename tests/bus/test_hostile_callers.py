"""pxhostd's bus surface against a hostile non-root user, on a real private dbus-daemon.

The non-root side runs as uid 65534 (`setpriv`), with Debian's python3 and dbus-fast only:
bench/nodeside/busdriver.py for reads, bench/nodeside/flood.py for clients that never
read. The bus daemon tells pxhostd that uid, as the system bus does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import eventually, running_daemon
from dbus_fast import Message, MessageType
from fake_engine import FakeEngine
from nodeharness import REPO_ROOT

from pxhostd.bus import flow
from pxhostd.bus.client import PxClient, raise_for_result
from pxhostd.bus.names import BUS_NAME, MANAGER_INTERFACE, OBJECT_PATH, TRANSACTION_INTERFACE
from pxhostd.errors import RolledBack
from pxhostd.redact import REDACTED, with_log_excerpt
from pxhostd.status.statusfile import read_status

DRIVER = REPO_ROOT / "bench" / "nodeside" / "busdriver.py"
FLOOD = REPO_ROOT / "bench" / "nodeside" / "flood.py"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3"]

SECRET_SPEC: dict[str, Any] = {
    "payload": "/opt/demo/payload",
    "args": ["-c", "cluster1", "-t", "TOKEN-abc123", "--pwd=PWD-xyz", "-userpwd", "UPW-555",
             "--token", "TOK-2", "-e", "REGISTRY_PASS=REG-777"],
    "env": {"KVDB_PASSWORD": "KV-secret-1", "PX_API_TOKEN": "API-tok-2",
            "PLAIN": "plain-value-3"},
}
SECRETS = ["TOKEN-abc123", "PWD-xyz", "UPW-555", "TOK-2", "REG-777", "KV-secret-1",
           "API-tok-2", "plain-value-3"]
MARKER = "MARKER-journal-line-42"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def as_nobody(address: str, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """busdriver.py as uid 65534: one reply per request."""
    proc = await asyncio.create_subprocess_exec(
        *NOBODY, str(DRIVER),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"DBUS_SYSTEM_BUS_ADDRESS": address, "PATH": os.environ.get("PATH", "/usr/bin")},
    )
    lines = "".join(json.dumps(r) + "\n" for r in requests).encode()
    out, err = await asyncio.wait_for(proc.communicate(lines), 60)
    replies = [json.loads(line) for line in out.decode().splitlines()]
    assert len(replies) == len(requests), err.decode()
    return replies


def call(member: str, sig: str = "", body: list[Any] | None = None, *,
         path: str = OBJECT_PATH, iface: str = MANAGER_INTERFACE) -> dict[str, Any]:
    return {"call": {"dest": BUS_NAME, "path": path, "iface": iface, "member": member,
                     "sig": sig, "body": body or []}}


def read_everything(paths: list[str]) -> list[dict[str, Any]]:
    """Every read a non-root user may make: methods, properties, transactions."""
    requests = [call("Status"), call("GetSpec"), call("History", "u", [0]),
                call("GetAll", "s", [MANAGER_INTERFACE], iface="org.freedesktop.DBus.Properties")]
    for p in paths:
        requests.append(call("GetResult", path=p, iface=TRANSACTION_INTERFACE))
        requests.append(call("GetAll", "s", [TRANSACTION_INTERFACE], path=p,
                             iface="org.freedesktop.DBus.Properties"))
    return requests


def test_non_root_sees_no_secret_and_no_journal_line_root_sees_all(
    dbus_address: str, state_root: Path
) -> None:
    async def body() -> None:
        async with running_daemon(dbus_address, state_root) as daemon:
            engine = daemon.engine
            assert isinstance(engine, FakeEngine)
            root = await PxClient.connect(dbus_address)
            signals: list[Any] = []

            def on_signal(msg: Message) -> None:
                if msg.message_type == MessageType.SIGNAL and msg.sender != "org.freedesktop.DBus":
                    signals.append(msg.body)

            root.bus.add_message_handler(on_signal)
            await root.add_match(f"type='signal',sender='{BUS_NAME}'")

            installed = await root.install(SECRET_SPEC, txid="secret-install")
            raise_for_result(await root.wait(installed, timeout=10))
            engine.fail_with = RolledBack(with_log_excerpt(
                "v2 did not become active", "portworx.service", [f"{MARKER} -t TOKEN-abc123"]))
            failed = await root.action("Restart", txid="failed-restart")
            result = await root.wait(failed, timeout=10)
            assert result["success"] is False
            await eventually(  # the status file is written off the loop
                lambda: "RolledBack" in daemon.paths.status_file.read_text(), "the file's error"
            )

            # As uid 65534: every read succeeds and carries no secret, no journal line.
            replies = await as_nobody(dbus_address, read_everything([installed, failed]))
            assert all(r["ok"] for r in replies), replies
            seen = json.dumps(replies)
            for secret in [*SECRETS, MARKER]:
                assert secret not in seen, secret
            spec = replies[1]["body"][0]
            assert spec["env"] == {"$v": ["a{ss}", {name: REDACTED for name in
                                                    SECRET_SPEC["env"]}]}
            args = spec["args"]["$v"][1]
            assert args[:4] == ["-c", "cluster1", "-t", REDACTED], args
            assert "journalctl -u portworx.service" in seen
            status = replies[0]["body"][0]
            assert "journalctl -u portworx.service" in status["last_error"]["$v"][1]

            # Root reads all of it.
            full = await root.get_spec()
            assert (full["args"], full["env"]) == (SECRET_SPEC["args"], SECRET_SPEC["env"])
            assert MARKER in (await root.status())["last_error"]
            history = await root.history(0)
            assert MARKER in history[0]["message"], history[0]
            assert MARKER in (await root.wait(failed, timeout=5))["error_message"]

            # What everyone receives (signals, properties) and the world-readable status
            # file hold the public view only, whoever reads them.
            assert signals
            assert MARKER not in json.dumps(signals, default=str)
            assert MARKER not in await root.get_property("LastError")
            assert "journalctl -u portworx.service" in await root.get_property("LastError")
            status_file = daemon.paths.status_file.read_text()
            for secret in [*SECRETS, MARKER]:
                assert secret not in status_file, secret
            assert "RolledBack" in status_file
            assert daemon.bus is not None and len(daemon.bus.callers) >= 1
            root.close()

    run(body())


def test_a_caller_is_forgotten_when_it_leaves(dbus_address: str, state_root: Path) -> None:
    async def body() -> None:
        async with running_daemon(dbus_address, state_root) as daemon:
            assert daemon.bus is not None
            client = await PxClient.connect(dbus_address)
            await client.status()
            name = client.bus.unique_name
            assert name is not None and daemon.bus.callers.uid(name).result() == 0
            client.close()
            callers = daemon.bus.callers
            await eventually(lambda: not callers.known(name), "the caller forgotten")
            assert not daemon.bus.callers.known(name)

    run(body())


async def flood(address: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *NOBODY, str(FLOOD), "--address", address, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )


def test_clients_that_never_read_cost_bounded_memory_and_do_not_stop_root(
    dbus_address: str, state_root: Path
) -> None:
    """50 connections x 400 Introspect calls, never read: pxhostd stays, root is served."""

    async def body() -> None:
        async with running_daemon(dbus_address, state_root) as daemon:
            bus = daemon.bus
            assert bus is not None
            root = await PxClient.connect(dbus_address)
            flooders = [await flood(dbus_address, "--connections", "50", "--calls", "400",
                                    "--duration", "8"),
                        await flood(dbus_address, "--connections", "4", "--read",
                                    "--method", "Status", "--duration", "8")]
            answered = 0
            max_held = max_queued = max_outstanding = 0
            install: str | None = None
            while any(f.returncode is None for f in flooders):
                status = await asyncio.wait_for(root.status(), 30)
                assert status["state"] in ("idle", "installing")
                answered += 1
                if answered == 3:
                    install = await root.install({**SPEC_PLAIN}, txid="during-flood")
                max_held = max(max_held, bus.flow.held_bytes())
                max_queued = max(max_queued, bus.queued_bytes)
                max_outstanding = max(max_outstanding, bus.flow.outstanding())
                await asyncio.sleep(0.1)
                for f in flooders:
                    if f.returncode is None:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(f.wait(), 0.01)
            assert answered >= 3  # root was answered repeatedly during the flood
            assert install is not None
            raise_for_result(await root.wait(install, timeout=30))
            outputs = [json.loads((await f.stdout.read()).decode()) for f in flooders
                       if f.stdout is not None]
            assert outputs[0]["calls_sent"] > 10_000, outputs
            # The reading clients were served, none waited out its 30 s call timeout (how
            # many calls fit in the window depends on the machine's load, not on pxhostd).
            assert outputs[1]["calls_done"] > 0, outputs
            assert outputs[1]["calls_timed_out"] == 0, outputs
            # The non-readers got no more than their windows; the rest was dropped or shed.
            assert bus.flow.dropped + bus.flow.shed > 1000
            assert max_held <= flow.UID_HELD_BYTES + 54 * flow.PEER_HELD_BYTES
            assert max_outstanding <= flow.UID_WINDOW + 64 * 1024
            assert max_queued < 16 * 1024 * 1024
            # Once they are gone, nothing of theirs is left.
            await eventually(lambda: not bus.flow.outstanding() and not bus.flow.held_bytes(),
                             "the flooders' windows released")
            assert bus.flow.outstanding() == 0 and bus.flow.held_bytes() == 0
            root.close()
        # running_daemon asserted exit code 0: the bus connection was never lost.

    run(body())


SPEC_PLAIN: dict[str, Any] = {"payload": "/opt/demo/payload", "args": ["-c", "c2"]}


@pytest.mark.parametrize("who", ["root", "nobody"])
def test_non_ascii_in_every_string_member(dbus_address: str, state_root: Path, who: str) -> None:
    """Every string-carrying member, to root and to a non-root caller, with non-ASCII text."""

    async def body() -> None:
        async with running_daemon(dbus_address, state_root) as daemon:
            engine = daemon.engine
            assert isinstance(engine, FakeEngine)
            root = await PxClient.connect(dbus_address)
            spec = {"payload": "/opt/demo/payload", "args": ["-c", "café-☃"],
                    "env": {"A": "ü"}}
            ok = await root.install(spec, txid="tx-é")
            raise_for_result(await root.wait(ok, timeout=10))
            engine.fail_with = RolledBack("3.0 a échoué: « démo » ✗")
            bad = await root.wait(await root.action("Restart", txid="id-ü"), timeout=10)
            assert bad["error_message"] == "3.0 a échoué: « démo » ✗"
            daemon.set_service_state("actif/en-marche-é")
            await eventually(  # published off the loop
                lambda: read_status(daemon.paths.status_file).service_state == "actif/en-marche-é",
                "the new service state in the status file",
            )
            requests = read_everything([ok, bad["path"]])
            requests.append(call("Introspect", iface="org.freedesktop.DBus.Introspectable"))
            if who == "root":
                replies = [await root_call(root, r["call"]) for r in requests]
            else:
                replies = await as_nobody(dbus_address, requests)
            assert all(r["ok"] for r in replies), replies
            text = json.dumps(replies, ensure_ascii=False)
            for word in ("échoué", "« démo » ✗", "tx-é", "id-ü", "café-☃",
                         "actif/en-marche-é"):
                assert word in text, word
            assert ('"ü"' in text) == (who == "root")  # env values: root only
            # Still on the bus; the restart was rolled back, which is not "failed".
            assert (await root.status())["state"] == "idle"
            root.close()

    run(body())


async def root_call(client: PxClient, spec: dict[str, Any]) -> dict[str, Any]:
    from pxhostd.variants import unwrap

    body = await client.call(spec["member"], spec["sig"], spec["body"], path=spec["path"],
                             interface=spec["iface"])
    return {"ok": True, "body": unwrap(body)}
