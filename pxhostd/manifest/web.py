"""`pxhostd-specgen`: the HTTP successor of px-spec-websvc (on `pxhostd.httpserve`).

The server side only: the asyncio server, its limits, logging and start-up. What each route
answers is decided in routes.py. The query string and bodies are never logged (they may carry
secrets).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from collections.abc import Sequence

from pxhostd import __version__
from pxhostd.httpserve import Limits, Request, Response, Server, serve
from pxhostd.log import setup_logging
from pxhostd.manifest import form
from pxhostd.manifest.routes import MAX_QUERY_BYTES, Reply, respond

log = logging.getLogger("pxhostd.specgen")

#: Request targets carry the whole query; the rest of a browser's head stays well within.
#: A POST body (the form) carries at most what a query may.
LIMITS = Limits(
    max_target=MAX_QUERY_BYTES, max_head=MAX_QUERY_BYTES + 16 * 1024, max_body=MAX_QUERY_BYTES
)
SERVER_NAME = f"pxhostd-specgen/{__version__}"


class SpecGen:
    """The generator's routes: pure functions of the request, run off the event loop."""

    def __init__(self, *, strict: bool = True) -> None:
        #: Reject unknown parameter names (400) instead of warning about them.
        self.strict = strict

    async def handle(self, request: Request) -> Response:
        if request.path == "/healthz":
            return self.respond(request)  # cheap: answered on the loop
        # Rendering a manifest or a page is CPU work: a thread, under the server's bound.
        return await asyncio.to_thread(self.respond, request)

    def respond(self, request: Request) -> Response:
        return _response(respond(
            request.method, request.path, request.query, accept=request.header("accept"),
            content_type=request.header("content-type"), body=request.body, strict=self.strict,
        ))


def _response(reply: Reply) -> Response:
    headers = [
        ("Content-Type", f"{reply.content_type}; charset=utf-8"),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
    ]
    if reply.html:
        headers.append(("Content-Security-Policy", form.CONTENT_SECURITY_POLICY))
    return Response(reply.status, [*headers, *reply.headers], reply.body.encode("utf-8"))


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
