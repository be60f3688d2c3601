"""`pxhostctl spec`: the manifest generator on the command line.

Three ways to give a parameter, all with the names the HTTP service accepts:
long options (`--cluster NAME`), the old one-letter names as short options (`-c NAME`),
and `name=value` words with any old or long name (`kbver=1.30 mas=true`), so an old
query string can be pasted piece by piece (or whole with `--query 'c=...&k=...'`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from pxhostd.errors import InvalidSpec, PxError
from pxhostd.hostfs import atomic_write
from pxhostd.manifest.model import render_for_platform
from pxhostd.manifest.model.cluster import secret_entries
from pxhostd.manifest.params import PARAMS, ParamDef, parse_params

EXIT_OK = 0
EXIT_WRITE_FAILED = 1
EXIT_INVALID = 2

_DESCRIPTION = (
    "Print the Kubernetes manifests (ServiceAccount, RBAC, Secret, Service, DaemonSet) that run "
    "pxhostd's pod on every node. Parameters are those of the old spec web service; see "
    "pxhostd-specgen(1)."
)


class _IntermixedParser(argparse.ArgumentParser):
    """Lets NAME=VALUE words and options come in any order (`c=px -f kbver=1.30`)."""

    _parsing_intermixed = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        # parse_known_intermixed_args calls parse_known_args itself: only the outer call swaps.
        if self._parsing_intermixed:
            return super().parse_known_args(args, namespace)
        self._parsing_intermixed = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._parsing_intermixed = False


def _add_param_option(parser: argparse._ActionsContainer, param: ParamDef) -> None:
    flags = [f"--{param.cli}"]
    if len(param.short) == 1:
        flags.insert(0, f"-{param.short}")
    common: dict[str, Any] = {
        "dest": f"param_{param.field}",
        "help": f"{param.help} [{param.short}]",
        "default": None,
    }
    if param.is_list:
        parser.add_argument(*flags, action="append", metavar="LIST", **common)
    elif param.is_bool:
        # A flag: `--force` means f=true; an explicit false is `f=false` (a NAME=VALUE word).
        parser.add_argument(*flags, action="store_const", const="true", **common)
    else:
        parser.add_argument(*flags, metavar=param.cli.upper().replace("-", "_"), **common)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the `spec` options to a parser (a subparser of pxhostctl, or standalone)."""
    group = parser.add_argument_group("manifest parameters")
    for param in PARAMS:
        _add_param_option(group, param)
    parser.add_argument(
        "pairs", nargs="*", metavar="NAME=VALUE",
        help="parameters by any old or long name, e.g. kbver=1.30 mas=true st=k8s",
    )
    parser.add_argument("--query", action="append", default=[], metavar="QUERY",
                        help="an old query string, e.g. 'c=px&k=etcd://10.0.0.1:2379'")
    strict = parser.add_mutually_exclusive_group()
    strict.add_argument("--strict", dest="strict", action="store_true", default=True,
                        help="reject unknown parameter names (default)")
    strict.add_argument("--no-strict", dest="strict", action="store_false",
                        help="ignore unknown parameter names with a warning")
    parser.add_argument("-o", "--output", metavar="FILE", type=Path,
                        help="write to FILE (atomically; mode 0600 if it holds a Secret) "
                             "instead of standard output")
    parser.set_defaults(func=run_spec)


def collect_pairs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Every parameter given, as (name, value) in the order the options are defined."""
    pairs: list[tuple[str, str]] = []
    for param in PARAMS:
        given = getattr(args, f"param_{param.field}", None)
        if given is None:
            continue
        for value in given if isinstance(given, list) else [given]:
            pairs.append((param.cli, value))
    for word in args.pairs:
        name, sep, value = word.partition("=")
        if not sep:
            raise InvalidSpec(f"expected NAME=VALUE, got {word!r}")
        pairs.append((name, value))
    for query in args.query:
        try:
            pairs.extend(parse_qsl(query, keep_blank_values=True, errors="strict"))
        except ValueError as exc:
            raise InvalidSpec(f"--query: malformed query string: {exc}") from None
    return pairs


def run_spec(args: argparse.Namespace) -> int:
    """Generate; exit 0, 2 for invalid parameters, 1 when the output cannot be written."""
    try:
        params = parse_params(collect_pairs(args), strict=args.strict)
    except InvalidSpec as exc:
        print(f"pxhostctl spec: {exc}", file=sys.stderr)
        return EXIT_INVALID
    for warning in params.warnings:
        print(f"pxhostctl spec: warning: {warning}", file=sys.stderr)
    manifest = render_for_platform(params)
    output: Path | None = args.output
    if output is None:
        sys.stdout.write(manifest)
        sys.stdout.flush()
        return EXIT_OK
    mode = 0o600 if secret_entries(params) else 0o644
    try:
        atomic_write(output, manifest, mode=mode)
    except (OSError, PxError) as exc:
        print(f"pxhostctl spec: cannot write {output}: {exc}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (`python -m pxhostd.manifest.cli`), same options as `pxhostctl spec`."""
    parser = _IntermixedParser(prog="pxhostctl spec", description=_DESCRIPTION)
    configure_parser(parser)
    return run_spec(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
