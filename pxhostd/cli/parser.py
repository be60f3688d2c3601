"""pxhostctl's argument parser: one place for its commands and options, read by the CLI
that runs them and by the completion generator that describes them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pxhostd import __version__
from pxhostd.cli import exitcodes

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
    ("verify", "re-check every installed file against its sha256 and exec bit (like ostree fsck)"),
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
