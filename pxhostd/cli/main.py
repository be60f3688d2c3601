"""pxhostctl: the command-line client of pxhostd (talks to it over the system bus)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from dbus_fast import BusType

from pxhostd import __version__
from pxhostd.bus.client import PxClient
from pxhostd.cli import exitcodes
from pxhostd.cli.output import print_history, print_json, print_plan, print_status
from pxhostd.errors import InvalidOptions, InvalidSpec, PxError

DESCRIPTION = """\
Control pxhostd, the host daemon that keeps the Portworx service installed and running
under systemd. Reading (status, history, watch) is open to every user; changing anything
and plan need root. Operations run as transactions: pxhostctl follows each one and prints
its progress, unless --no-block is given (then it prints the transaction id and returns;
`pxhostctl watch TXID` follows it later)."""

SEE_ALSO = "See pxhostctl(1), pxhostd.spec(5) for the spec file, pxhostd(8)."

#: history --limit bounds (the daemon caps one reply at this many entries).
HISTORY_MAX = 1000


def _history_limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= HISTORY_MAX:
        raise argparse.ArgumentTypeError(f"must be between 1 and {HISTORY_MAX}, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--json and the hidden bus options, accepted before and after the command.

    Below the command they default to SUPPRESS, so `pxhostctl --json status` is not
    overwritten by the subcommand's own default.
    """
    default: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON",
                        **default)
    # Hidden, for tests; a mutually exclusive group of suppressed options trips argparse's
    # usage formatter, so --bus-address simply wins over --session.
    parser.add_argument("--session", action="store_true", help=argparse.SUPPRESS, **default)
    parser.add_argument("--bus-address", metavar="ADDRESS", help=argparse.SUPPRESS, **default)


def _tx_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-block", action="store_true",
        help="print the transaction id and return at once (follow it: pxhostctl watch TXID)",
    )
    parser.add_argument("--id", metavar="TXID",
                        help="your transaction id (logged, kept in history)")
    _timeout_option(parser)


def _timeout_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout", type=_seconds, default=None, metavar="SECONDS",
        help="stop following after SECONDS (the operation itself goes on)",
    )


def _spec_option(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--spec", required=required, type=Path, metavar="FILE",
        help="desired spec (YAML); its keys: pxhostd.spec(5)"
        + ("" if required else "; default: the current desired state"),
    )


SERVICE_ACTIONS = (
    ("start", "start the service (and lift a hold set by stop)"),
    ("stop", "stop the service and keep it stopped, also across reconciles, until start or "
             "restart (storage on this node goes down)"),
    ("restart", "restart the service (and lift a hold set by stop)"),
    ("enable", "enable the service at boot (and lift a hold set by disable)"),
    ("disable", "disable the service at boot and keep it so across reconciles "
                "(it keeps running)"),
    ("reconcile", "re-read the spec file on the host and apply it"),
    ("verify", "re-check every installed file against its sha256 (like ostree fsck)"),
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pxhostctl",
        description=DESCRIPTION,
        epilog=f"{exitcodes.HELP}\n\n{SEE_ALSO}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(p, top=True)
    p.add_argument("--version", action="version", version=f"pxhostctl {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"{exitcodes.POINTER}\n{SEE_ALSO}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _global_options(parser, top=False)
        return parser

    status = add("status", "show the daemon's and the service's state; exit 9 when the "
                           "service is not running as specified")
    status.add_argument("-q", "--quiet", action="store_true",
                        help="print nothing; only the exit code tells")
    add("get-spec", "print the spec that was last applied (YAML; JSON with --json)")
    plan = add("plan", "show what applying a spec would change and whether the service "
                       "would be restarted, and why; changes nothing (exit 0: nothing to "
                       "do, 10: changes)")
    _spec_option(plan, required=False)
    install = add("install", "install or upgrade the service to match a spec file (YAML); "
                             "nothing restarts unless something that matters changed")
    _spec_option(install, required=True)
    install.add_argument("--dry-run", action="store_true",
                         help="only show what would change, as `plan --spec FILE` does")
    _tx_options(install)
    rollback = add("rollback", "go back to the previous kept release and its spec "
                               "(a transaction like install)")
    _tx_options(rollback)
    for name, text in SERVICE_ACTIONS:
        _tx_options(add(name, text))
    uninstall = add("uninstall", "stop and remove the service, its units and releases; "
                                 "keeps /etc/pwx unless --wipe")
    uninstall.add_argument("--wipe", action="store_true",
                           help="also remove the service's configuration (/etc/pwx)")
    _tx_options(uninstall)
    history = add("history", "show past operations, newest first (kept across restarts)")
    history.add_argument("--limit", type=_history_limit, default=20, metavar="N",
                         help=f"show at most N entries, 1 to {HISTORY_MAX} (default 20)")
    watch = add("watch", "follow a transaction to its end (with its exit code); "
                         "without TXID, print state changes until interrupted")
    watch.add_argument("txid", nargs="?", metavar="TXID",
                       help="transaction id (as --no-block printed it) or object path")
    watch.add_argument("--id", dest="watch_id", metavar="TXID",
                       help="the same as the TXID argument")
    _timeout_option(watch)
    completion = add("completion", "print a shell completion script (bash)")
    completion.add_argument("shell", choices=["bash"], help="the shell (bash)")
    probe = sub.add_parser(
        "probe",
        help="readiness probe for the pod: exit 0 only if the status file says ready, its "
             "heartbeat is fresh, it is from this boot, and the payload's health URL answers "
             "(options: see `pxhostctl probe --help`)",
        add_help=False,
    )
    probe.add_argument("probe_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    spec = sub.add_parser(
        "spec",
        help="print the Kubernetes manifests for pxhostd's pod "
             "(options: see `pxhostctl spec --help`)",
        add_help=False,
    )
    spec.add_argument("spec_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p


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
    bus_type = BusType.SESSION if args.session else BusType.SYSTEM
    client = await PxClient.connect(args.bus_address, bus_type)
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
        from pxhostd.cli.completion import bash_completion

        print(bash_completion(), end="")
        sys.stdout.flush()
        return exitcodes.OK
    from pxhostd.cli.follow import Following

    args.following = Following()
    try:
        code = asyncio.run(run(args))
        sys.stdout.flush()
        return code
    except PxError as exc:
        print(f"pxhostctl: {exc.name}: {exc}", file=sys.stderr)
        return exitcodes.for_error(exc)
    except KeyboardInterrupt:
        args.following.interrupted()
        return exitcodes.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
