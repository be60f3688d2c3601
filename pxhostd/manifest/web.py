"""`pxhostd-specgen`: the HTTP successor of px-spec-websvc (on `pxhostd.httpserve`).

GET / without a query serves the form; with a query, the manifest (application/yaml, or
an HTML page with the YAML when a browser asks for text/html). /download?QUERY is the
same YAML as an attachment (portworx.yaml); /form?QUERY the form filled with QUERY.
Bad input: 400 with the reason. /healthz: 200. The old script endpoints answer 410 Gone
and name their replacement. The query string is never logged (it may carry secrets).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from collections.abc import Sequence
from http import HTTPStatus
from urllib.parse import parse_qsl

from pxhostd import __version__
from pxhostd.errors import InvalidSpec
from pxhostd.httpserve import Limits, Request, Response, Server, serve
from pxhostd.log import setup_logging
from pxhostd.manifest import form
from pxhostd.manifest.model import render_for_platform
from pxhostd.manifest.params import BY_NAME, parse_params

log = logging.getLogger("pxhostd.specgen")

MAX_QUERY_BYTES = 16 * 1024
MAX_FIELDS = 64

#: Old endpoints and what replaced them (docs/manifest-generator.md).
GONE: dict[str, str] = {
    "/upgrade": (
        "The /upgrade talisman spec is gone. To upgrade, regenerate the manifest with the new "
        "image (px=IMAGE) and apply it: the DaemonSet rolls node by node (maxUnavailable 1) and "
        "pxhostd on each host upgrades and rolls back on failure. On one host: "
        "pxhostctl status / pxhostctl install."
    ),
    "/px-wipe": (
        "The /px-wipe script is gone. Label the node px/enabled=remove to uninstall through the "
        "pod, or run on the host: pxhostctl uninstall --wipe (root; removes the service, the "
        "payload and /etc/pwx)."
    ),
    "/precheck": (
        "The /precheck script is gone. The pod checks its mounts and the host before changing "
        "anything and reports through its readiness probe (pxhostctl probe); "
        "kubectl describe pod shows why a node is not ready."
    ),
}


def _quoted(text: str) -> str:
    """An RFC 9110 quoted-string of printable ASCII (for the Warning header)."""
    clean = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _wants_html(accept: str) -> bool:
    return "text/html" in accept and "application/yaml" not in accept


#: Request targets carry the whole query; the rest of a browser's head stays well within.
LIMITS = Limits(max_target=MAX_QUERY_BYTES, max_head=MAX_QUERY_BYTES + 16 * 1024)
SERVER_NAME = f"pxhostd-specgen/{__version__}"


class SpecGen:
    """The generator's routes: pure functions of the request, run off the event loop."""

    def __init__(self, *, strict: bool = True) -> None:
        #: Reject unknown parameter names (400) instead of warning about them.
        self.strict = strict

    async def handle(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _text(HTTPStatus.NOT_IMPLEMENTED, f"unsupported method {request.method!r}\n")
        if request.path == "/healthz":
            return _text(HTTPStatus.OK, "ok\n")
        # Rendering a manifest or a page is CPU work: a thread, under the server's bound.
        return await asyncio.to_thread(self.respond, request)

    def respond(self, request: Request) -> Response:
        path, query = request.path, request.query
        if path in GONE:
            return _text(HTTPStatus.GONE, GONE[path] + "\n")
        if path == "/":
            return self._root(query, request.header("accept"))
        if path == "/download":
            return self._root(query, request.header("accept"), download=True)
        if path == "/form":
            prefill = {BY_NAME[k].short: v for k, v in pairs_or_empty(query) if k in BY_NAME}
            return _page(HTTPStatus.OK, form.form_page(prefill))
        return _text(HTTPStatus.NOT_FOUND,
                     "not found: the generator answers on /, /download and /form\n")

    def _root(self, query: str, accept: str, *, download: bool = False) -> Response:
        html = _wants_html(accept) and not download
        if not query:
            return _page(HTTPStatus.OK, form.form_page())
        try:
            pairs = parse_qsl(
                query, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS
            )
            params = parse_params(pairs, strict=self.strict)
        except (InvalidSpec, ValueError) as exc:
            message = str(exc) if isinstance(exc, InvalidSpec) else f"malformed query: {exc}"
            if not html:
                return _text(HTTPStatus.BAD_REQUEST, message + "\n")
            prefill = {BY_NAME[k].short: v for k, v in pairs_or_empty(query) if k in BY_NAME}
            return _page(HTTPStatus.BAD_REQUEST, form.form_page(prefill, error=message))
        manifest = render_for_platform(params)
        warnings = [("Warning", f"299 - {_quoted(w)}") for w in params.warnings]
        if html:
            page = form.result_page(manifest, params.warnings, params.platform, pairs)
            return _page(HTTPStatus.OK, page, warnings)
        if download:
            warnings.append(("Content-Disposition", 'attachment; filename="portworx.yaml"'))
        return _send(HTTPStatus.OK, "application/yaml", manifest, warnings)


def _text(status: HTTPStatus, text: str) -> Response:
    return _send(status, "text/plain", text)


def _page(status: HTTPStatus, page: str, extra: Sequence[tuple[str, str]] = ()) -> Response:
    return _send(
        status, "text/html", page,
        [("Content-Security-Policy", form.CONTENT_SECURITY_POLICY), *extra],
    )


def _send(
    status: HTTPStatus, content_type: str, body: str, extra: Sequence[tuple[str, str]] = ()
) -> Response:
    headers = [
        ("Content-Type", f"{content_type}; charset=utf-8"),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        *extra,
    ]
    return Response(status, headers, body.encode("utf-8"))


def pairs_or_empty(query: str) -> list[tuple[str, str]]:
    """The query's pairs for re-filling the form, or none if the query does not even parse."""
    try:
        return parse_qsl(query, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS)
    except ValueError:
        return []


async def start(
    host: str, port: int, *, strict: bool = True, limits: Limits | None = None
) -> Server:
    """A listening generator (port 0 picks a free one); `close()` it when done."""
    return await serve(
        SpecGen(strict=strict).handle, host, port,
        limits=limits or LIMITS, server_name=SERVER_NAME, access_log=log,
    )


async def _run(host: str, port: int, *, strict: bool, limits: Limits) -> int:
    try:
        server = await start(host, port, strict=strict, limits=limits)
    except OSError as exc:
        print(f"pxhostd-specgen: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    shown = f"[{server.host}]" if ":" in server.host else server.host
    print(f"pxhostd-specgen: serving on http://{shown}:{server.port}/", flush=True)
    try:
        await stop.wait()
    finally:
        await server.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pxhostd-specgen",
        description="Serve pxhostd's Kubernetes manifest generator over HTTP.",
    )
    parser.add_argument("--listen", default="127.0.0.1", metavar="ADDRESS",
                        help="address to bind (default 127.0.0.1; put a TLS proxy in front "
                             "before exposing it)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0: any)")
    parser.add_argument("--no-strict", dest="strict", action="store_false",
                        help="ignore unknown parameter names with a warning instead of a 400")
    parser.add_argument("--head-timeout", type=float, default=LIMITS.head_timeout,
                        metavar="SECONDS",
                        help="a client must send its request head within this time, else the "
                             "connection is closed (default %(default)g)")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.debug)
    if not 0 < args.head_timeout <= 3600:
        parser.error("--head-timeout must be between 0 and 3600 seconds")
    limits = dataclasses.replace(LIMITS, head_timeout=args.head_timeout)
    return asyncio.run(_run(args.listen, args.port, strict=args.strict, limits=limits))


if __name__ == "__main__":
    raise SystemExit(main())
