"""Following a transaction: the command that started it, or `watch TXID` later (re-attach).

Both show the same progress and end with the same exit code. Leaving early (Ctrl-C,
--timeout) says in one line that the operation goes on in pxhostd and how to follow it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pxhostd.bus.client import PxClient
from pxhostd.bus.names import NO_TRANSACTION, TRANSACTION_INTERFACE
from pxhostd.cli import exitcodes
from pxhostd.cli.output import Progress, print_json
from pxhostd.cli.schema import NOTHING_TO_DO, SUCCESS, from_history, from_transaction
from pxhostd.errors import ERROR_PREFIX, InvalidOptions, PxError, Timeout, error_from_dbus_name

#: How often the live line is redrawn (elapsed time, the unit's STATUS= text).
TICK_SECONDS = 1.0


@dataclass
class Following:
    """What pxhostctl is following, so an interrupt can say how to pick it up again."""

    txid: str = ""
    operation: str = ""
    #: The live progress line being drawn, ended before the interrupt's line.
    progress: Progress | None = None

    def hint(self) -> str:
        return (
            f"{self.operation or 'the operation'} goes on in pxhostd as transaction "
            f"{self.txid}; follow it with: pxhostctl watch {self.txid}"
        )

    def interrupted(self) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.txid:
            print(f"pxhostctl: interrupted; {self.hint()}", file=sys.stderr)


def exit_code(result: dict[str, Any]) -> int:
    if result["result"] in (SUCCESS, NOTHING_TO_DO):
        return exitcodes.OK
    name = ERROR_PREFIX + (result.get("error") or "Failed")
    return exitcodes.for_error(error_from_dbus_name(name, str(result.get("message") or "")))


async def start(client: PxClient, path: str, args: argparse.Namespace) -> int:
    """Right after a mutating call: print the id (--no-block) or follow to the end."""
    props = await client.get_all(path=path, interface=TRANSACTION_INTERFACE)
    txid = str(props.get("Id") or "")
    if args.no_block:
        print_json({"txid": txid}) if args.json else print(txid)
        return exitcodes.OK
    return await follow(client, path, props, args)


async def _unit_name(client: PxClient) -> str | None:
    with contextlib.suppress(PxError):
        status = await client.status()
        if status.get("service"):
            return f"{status['service']}.service"
    return None


async def follow(
    client: PxClient, path: str, props: dict[str, Any], args: argparse.Namespace
) -> int:
    following: Following = getattr(args, "following", Following())
    following.txid = str(props.get("Id") or "")
    following.operation = str(props.get("Operation") or "")
    progress = None if args.json else Progress()
    following.progress = progress
    tick = None
    if progress is not None and progress.live:
        tick = (TICK_SECONDS, _ticker(client, progress, await _unit_name(client)))
    try:
        raw = await client.wait(path, progress, timeout=args.timeout, tick=tick)
    except Timeout:
        raise Timeout(
            f"stopped following after {args.timeout:g}s; {following.hint()}"
        ) from None
    finally:
        if progress is not None:
            progress.close()
        following.progress = None
    following.txid = ""  # finished: nothing left to point at
    return report(from_transaction(raw), args)


def report(result: dict[str, Any], args: argparse.Namespace) -> int:
    code = exit_code(result)
    if args.json:
        print_json(result)
    if code != exitcodes.OK:
        # One line naming the error (com.portworx.pxhostd1.Error.<name>), as pxhostctl(1) says.
        print(f"pxhostctl: {result.get('error') or 'Failed'}: {result.get('message')}",
              file=sys.stderr)
    elif not args.json:
        print(result.get("message") or "done")
    return code


def _ticker(
    client: PxClient, progress: Progress, unit: str | None
) -> Callable[[], Awaitable[None]]:
    """What redraws the live line each tick: the elapsed time and the unit's STATUS=."""

    async def tick() -> None:
        from pxhostd.cli.unitinfo import status_text

        if unit is not None:
            text = await status_text(client, unit)
            progress.note_status(f"{unit}: {text}" if text else "")
        progress.tick()

    return tick


async def find(client: PxClient, wanted: str) -> tuple[str, dict[str, Any]] | None:
    """The exported transaction with id (or object path) `wanted`: path and properties."""
    status = await client.status()
    candidates = [str(status.get("active_transaction") or NO_TRANSACTION)]
    candidates += await client.transaction_paths()
    seen: set[str] = set()
    for path in candidates:
        if path == NO_TRANSACTION or path in seen:
            continue
        seen.add(path)
        try:
            props = await client.get_all(path=path, interface=TRANSACTION_INTERFACE)
        except PxError:
            continue  # expired meanwhile
        if wanted in (path, props.get("Id")):
            return path, props
    return None


async def reattach(client: PxClient, wanted: str, args: argparse.Namespace) -> int:
    """`watch TXID`: follow a running transaction, or report a finished one's outcome."""
    found = await find(client, wanted)
    if found is not None:
        path, props = found
        return await follow(client, path, props, args)
    for entry in await client.history(1000):
        if entry.get("txid") == wanted:
            return report(from_history(entry), args)
    raise InvalidOptions(
        f"no transaction {wanted!r}: none runs or finished recently with that id, and "
        "the history has none (see `pxhostctl history`)"
    )
