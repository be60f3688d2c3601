"""pxhostctl: the command-line client of pxhostd (talks to it over the system bus)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from dbus_fast.constants import BusType

from pxhostd.bus.blocking import run_to_end
from pxhostd.bus.client import PxClient
from pxhostd.cli import exitcodes
from pxhostd.cli.completion import bash_completion
from pxhostd.cli.follow import Following
from pxhostd.cli.output import print_history, print_json, print_plan, print_status
from pxhostd.cli.parser import SERVICE_ACTIONS, build_parser
from pxhostd.errors import InvalidOptions, InvalidSpec, PxError

Handler = Callable[[PxClient, argparse.Namespace], Awaitable[int]]


def service_running_as_specified(status: dict[str, Any]) -> bool:
    """What `status` exits 0 on: installed, and up unless a stop hold keeps it down."""
    if not status.get("installed"):
        return False
    state = str(status.get("service_state") or "")
    if status.get("held_stopped") is True:
        return not state.startswith("failed")
    return state.startswith("active/")


async def cmd_status(client: PxClient, args: argparse.Namespace) -> int:
    from pxhostd.cli import unitinfo

    status = await client.status()
    if status.get("installed") and status.get("service"):
        unit = f"{status['service']}.service"
        status["unit_file_state"] = await unitinfo.unit_file_state(client, unit)
        status["status_text"] = await unitinfo.status_text(client, unit)
    if not args.quiet:
        (print_json if args.json else print_status)(status)
    if not status.get("installed"):
        return exitcodes.NOT_INSTALLED
    return exitcodes.OK if service_running_as_specified(status) else exitcodes.NOT_READY


async def cmd_get_spec(client: PxClient, args: argparse.Namespace) -> int:
    spec = await client.get_spec()
    if args.json:
        print_json(spec)
    else:
        import yaml

        print(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), end="")
    return exitcodes.OK


async def cmd_history(client: PxClient, args: argparse.Namespace) -> int:
    from pxhostd.cli.schema import from_history

    entries = [from_history(e) for e in await client.history(args.limit)]
    (print_json if args.json else print_history)(entries)
    return exitcodes.OK


def load_spec_file(path: Path) -> dict[str, Any]:
    """Read a spec file with the daemon's strict YAML loader (duplicate keys refused)."""
    from pxhostd.spec.validate import MAX_SPEC_BYTES, spec_from_dict
    from pxhostd.spec.yamlio import parse_yaml_document

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidSpec(f"cannot read spec file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise InvalidSpec(f"spec file {path} is not valid UTF-8") from None
    data = parse_yaml_document(text, f"spec file {path}", MAX_SPEC_BYTES, InvalidSpec)
    if not isinstance(data, dict):
        raise InvalidSpec(f"spec file {path} must hold a mapping of keys")
    # Same validator as the daemon: a bad file fails here with the same named error, and
    # values D-Bus cannot carry at all (NUL) never reach the bus.
    return spec_from_dict(data).to_dict()


async def _plan(client: PxClient, args: argparse.Namespace, spec_path: Path | None) -> int:
    spec = load_spec_file(spec_path) if spec_path is not None else None
    plan = await client.plan(spec)
    (print_json if args.json else print_plan)(plan)
    return exitcodes.CHANGES if plan.get("changes") else exitcodes.OK


async def cmd_plan(client: PxClient, args: argparse.Namespace) -> int:
    return await _plan(client, args, args.spec)


async def cmd_install(client: PxClient, args: argparse.Namespace) -> int:
    if args.dry_run:
        return await _plan(client, args, args.spec)
    from pxhostd.cli.follow import start

    spec = load_spec_file(args.spec)
    return await start(client, await client.install(spec, args.id), args)


async def cmd_rollback(client: PxClient, args: argparse.Namespace) -> int:
    from pxhostd.cli.follow import start

    return await start(client, await client.rollback(args.id), args)


async def cmd_uninstall(client: PxClient, args: argparse.Namespace) -> int:
    from pxhostd.cli.follow import start

    return await start(client, await client.uninstall(args.wipe, args.id), args)


def action(member: str) -> Handler:
    async def run(client: PxClient, args: argparse.Namespace) -> int:
        from pxhostd.cli.follow import start

        return await start(client, await client.action(member, args.id), args)

    return run


async def cmd_watch(client: PxClient, args: argparse.Namespace) -> int:
    if args.txid and args.watch_id and args.txid != args.watch_id:
        raise InvalidOptions("give the transaction id once (TXID or --id), not two")
    wanted = args.txid or args.watch_id
    if wanted:
        from pxhostd.cli.follow import reattach

        return await reattach(client, wanted, args)
    from pxhostd.cli.watch import watch

    await watch(client, json_output=args.json)
    return exitcodes.OK


HANDLERS: dict[str, Handler] = {
    "status": cmd_status,
    "get-spec": cmd_get_spec,
    "history": cmd_history,
    "plan": cmd_plan,
    "install": cmd_install,
    "rollback": cmd_rollback,
    "uninstall": cmd_uninstall,
    **{name: action(name.capitalize()) for name, _ in SERVICE_ACTIONS},
    "watch": cmd_watch,
}


async def run(args: argparse.Namespace) -> int:
    """One command on a blocking bus connection (`run_to_end` drives it, no event loop).

    Ctrl-C raises KeyboardInterrupt in whichever read waits; `_main` says how to follow
    what goes on in pxhostd, which holds everything a half-done exit could spoil.
    """
    bus_type = BusType.SESSION if args.session else BusType.SYSTEM
    client = PxClient.connect_blocking(args.bus_address, bus_type)
    try:
        return await HANDLERS[args.command](client, args)
    finally:
        client.close()


def _quiet_closed_pipe() -> int:
    """stdout's reader went away (`| head`): end quietly, as cat and systemctl do."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
    return exitcodes.OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _main(argv)
    except BrokenPipeError:
        return _quiet_closed_pipe()


def _main(argv: list[str]) -> int:
    if argv[:1] == ["probe"]:
        # The probe reads a file, not the bus: it must work while pxhostd is down.
        from pxhostd.status.probe import main as probe_main

        return probe_main(argv[1:])
    if argv[:1] == ["spec"]:
        # Generates Kubernetes manifests locally; needs no daemon, and its parser is large.
        from pxhostd.manifest.cli import main as spec_main

        return spec_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "completion":
        print(bash_completion(), end="")
        sys.stdout.flush()
        return exitcodes.OK
    args.following = Following()
    try:
        code = run_to_end(run(args))
        sys.stdout.flush()
        return code
    except PxError as exc:
        print(f"pxhostctl: {exc.name}: {exc}", file=sys.stderr)
        return exitcodes.for_error(exc)
    except KeyboardInterrupt:
        args.following.interrupted()
        return exitcodes.INTERRUPTED


def entry() -> None:
    """The `pxhostctl` command: main(), then out without tearing the interpreter down.

    By then the bus is closed and nothing is left to run (no thread, no atexit handler of
    ours), but unloading every module would still cost milliseconds of a short command;
    so the output is flushed and the process leaves with os._exit, as short-lived CLIs of
    this kind do.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        # The reader went away (BrokenPipeError), or the stream is closed (ValueError).
        with contextlib.suppress(BrokenPipeError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
