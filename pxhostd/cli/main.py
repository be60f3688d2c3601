"""pxhostctl: the command-line client of pxhostd (talks to it over the system bus)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from dbus_fast import BusType

from pxhostd import __version__
from pxhostd.bus.client import PxClient, raise_for_result
from pxhostd.cli import exitcodes
from pxhostd.cli.output import Progress, print_history, print_json, print_status
from pxhostd.errors import InvalidSpec, PxError

DESCRIPTION = """\
Control pxhostd, the host daemon that keeps the Portworx service installed and running
under systemd. Reading (status, history) is open to every user; changing anything needs
root. Operations run as transactions: pxhostctl follows each one and prints its progress,
unless --no-block is given (then it prints the transaction's object path and returns)."""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    # Hidden, for tests; a mutually exclusive group of suppressed options trips argparse's
    # usage formatter, so --bus-address simply wins over --session.
    common.add_argument("--session", action="store_true", help=argparse.SUPPRESS)
    common.add_argument("--bus-address", metavar="ADDRESS", help=argparse.SUPPRESS)

    tx = argparse.ArgumentParser(add_help=False)
    tx.add_argument(
        "--no-block", action="store_true", help="print the transaction path and return at once"
    )
    tx.add_argument("--id", metavar="TXID", help="your transaction id (logged, kept in history)")
    tx.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up waiting after SECONDS (the operation itself goes on)",
    )

    p = argparse.ArgumentParser(
        prog="pxhostctl",
        description=DESCRIPTION,
        epilog=exitcodes.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    p.add_argument("--version", action="version", version=f"pxhostctl {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str, help_text: str, *parents: argparse.ArgumentParser
    ) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=[common, *parents],
            epilog=exitcodes.HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    add("status", "show the daemon's and the service's state")
    add("get-spec", "print the spec that was last applied (YAML; JSON with --json)")
    install = add(
        "install",
        "install or upgrade the service to match a spec file (YAML); nothing restarts "
        "unless something that matters changed",
        tx,
    )
    install.add_argument(
        "--spec",
        required=True,
        type=Path,
        metavar="FILE",
        help="desired spec (YAML); see pxhostd(8) for its keys",
    )
    for name, text in (
        ("start", "start the service (and lift a hold set by stop)"),
        (
            "stop",
            "stop the service and keep it stopped, also across reconciles, until start or "
            "restart (storage on this node goes down)",
        ),
        ("restart", "restart the service (and lift a hold set by stop)"),
        ("enable", "enable the service at boot"),
        ("disable", "disable the service at boot and keep it so across reconciles "
                    "(it keeps running)"),
        ("reconcile", "re-read the spec file on the host and apply it"),
        ("verify", "re-check every installed file against its sha256 (like ostree fsck)"),
    ):
        add(name, text, tx)
    uninstall = add(
        "uninstall",
        "stop and remove the service, its units and releases; keeps /etc/pwx unless --wipe",
        tx,
    )
    uninstall.add_argument(
        "--wipe", action="store_true", help="also remove the service's configuration (/etc/pwx)"
    )
    history = add("history", "show past operations, newest first (kept across restarts)")
    history.add_argument("--limit", type=int, default=20, metavar="N")
    add("watch", "follow state changes until interrupted")
    completion = add("completion", "print a shell completion script (bash)")
    completion.add_argument("shell", choices=["bash"])
    probe = add(
        "probe",
        "readiness probe for the pod: exit 0 only if the status file says ready, its "
        "heartbeat is fresh, it is from this boot, and the payload's health URL answers "
        "(options: see `pxhostctl probe --help`)",
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


async def cmd_status(client: PxClient, args: argparse.Namespace) -> int:
    status = await client.status()
    (print_json if args.json else print_status)(status)
    return exitcodes.OK


async def cmd_get_spec(client: PxClient, args: argparse.Namespace) -> int:
    spec = await client.get_spec()
    if args.json:
        print_json(spec)
    else:
        import yaml

        print(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), end="")
    return exitcodes.OK


async def cmd_history(client: PxClient, args: argparse.Namespace) -> int:
    entries = await client.history(max(1, args.limit))
    (print_json if args.json else print_history)(entries)
    return exitcodes.OK


async def follow(client: PxClient, path: str, args: argparse.Namespace) -> int:
    if args.no_block:
        print_json({"transaction": path}) if args.json else print(path)
        return exitcodes.OK
    progress = Progress() if not args.json else None
    try:
        result = await client.wait(path, progress, timeout=args.timeout)
    finally:
        if progress is not None:
            progress.close()
    if args.json:
        print_json(result)
    raise_for_result(result)
    if not args.json:
        print(result.get("message") or ("done" if result.get("changed") else "nothing to do"))
    return exitcodes.OK


def load_spec_file(path: Path) -> Any:
    import yaml  # only this command reads YAML; keep the other commands' start-up light

    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidSpec(f"cannot read spec file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidSpec(f"spec file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidSpec(f"spec file {path} must hold a mapping of keys")
    return data


async def cmd_install(client: PxClient, args: argparse.Namespace) -> int:
    # Same validator as the daemon: a bad file fails here with the same named error, and
    # values D-Bus cannot carry at all (NUL) never reach the bus.
    from pxhostd.spec.validate import spec_from_dict

    spec = spec_from_dict(load_spec_file(args.spec)).to_dict()
    return await follow(client, await client.install(spec, args.id), args)


async def cmd_uninstall(client: PxClient, args: argparse.Namespace) -> int:
    return await follow(client, await client.uninstall(args.wipe, args.id), args)


def action(member: str) -> Handler:
    async def run(client: PxClient, args: argparse.Namespace) -> int:
        return await follow(client, await client.action(member, args.id), args)

    return run


async def cmd_watch(client: PxClient, args: argparse.Namespace) -> int:
    from pxhostd.cli.watch import watch

    await watch(client, json_output=args.json)
    return exitcodes.OK


HANDLERS: dict[str, Handler] = {
    "status": cmd_status,
    "get-spec": cmd_get_spec,
    "history": cmd_history,
    "install": cmd_install,
    "uninstall": cmd_uninstall,
    "start": action("Start"),
    "stop": action("Stop"),
    "restart": action("Restart"),
    "enable": action("Enable"),
    "disable": action("Disable"),
    "reconcile": action("Reconcile"),
    "verify": action("Verify"),
    "watch": cmd_watch,
}


async def run(args: argparse.Namespace) -> int:
    bus_type = BusType.SESSION if args.session else BusType.SYSTEM
    client = await PxClient.connect(args.bus_address, bus_type)
    try:
        return await HANDLERS[args.command](client, args)
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
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
        return exitcodes.OK
    try:
        return asyncio.run(run(args))
    except PxError as exc:
        print(f"pxhostctl: {exc}", file=sys.stderr)
        return exitcodes.for_error(exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
