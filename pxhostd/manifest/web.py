"""`pxhostd-specgen`: the HTTP successor of px-spec-websvc (stdlib http.server).

The server side only: reading requests and writing replies. What each route answers is
decided in routes.py. The query string is never logged (it may carry secrets).
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import ClassVar
from urllib.parse import urlsplit

from pxhostd import __version__
from pxhostd.log import setup_logging
from pxhostd.manifest import form
from pxhostd.manifest.routes import MAX_QUERY_BYTES, Reply, respond

log = logging.getLogger("pxhostd.specgen")

class SpecGenHandler(BaseHTTPRequestHandler):
    server_version = f"pxhostd-specgen/{__version__}"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    #: Reject unknown parameter names (400) instead of warning about them.
    strict: ClassVar[bool] = True

    def version_string(self) -> str:
        """`Server: pxhostd-specgen/VERSION` (http.server would append a blank)."""
        return self.server_version

    def do_GET(self) -> None:
        self._dispatch(send_body=True)

    def do_HEAD(self) -> None:
        self._dispatch(send_body=False)

    def log_message(self, format: str, *args: object) -> None:
        # The request line may carry secrets in its query; log_request passes a sanitised one.
        log.info("%s " + format, self.address_string(), *args)

    def log_error(self, format: str, *args: object) -> None:
        # http.server puts the raw request line (query included) into its error messages.
        code = args[0] if args and isinstance(args[0], int) else "?"
        log.warning("%s request rejected with code %s", self.address_string(), code)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # self.path is unset when the request line itself was malformed.
        path = urlsplit(getattr(self, "path", "")).path or "-"
        self.log_message('"%s %s" %s', self.command or "-", path, str(code))

    def do_POST(self) -> None:
        self._dispatch(send_body=True)

    def _read_body(self) -> bytes | None:
        """The request body (bounded); None when a reply has been sent instead."""
        if self.headers.get("Transfer-Encoding"):
            self._reply(Reply(HTTPStatus.LENGTH_REQUIRED, "text/plain",
                              "a request body needs Content-Length\n"))
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self._reply(Reply(HTTPStatus.BAD_REQUEST, "text/plain", "bad Content-Length\n"))
            return None
        if length > MAX_QUERY_BYTES:
            self.close_connection = True  # the body is not read
            self._reply(Reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "text/plain",
                              "request body too large\n"))
            return None
        return self.rfile.read(length)

    def _dispatch(self, *, send_body: bool) -> None:
        self._send_body = send_body
        if len(self.path) > MAX_QUERY_BYTES:
            self._reply(Reply(HTTPStatus.REQUEST_URI_TOO_LONG, "text/plain",
                              "request URI too long\n"))
            return
        body = b""
        if self.command == "POST":
            read = self._read_body()
            if read is None:
                return
            body = read
        url = urlsplit(self.path)
        self._reply(respond(
            self.command, url.path, url.query, accept=self.headers.get("Accept", ""),
            content_type=self.headers.get("Content-Type", ""), body=body, strict=self.strict,
        ))

    def _reply(self, reply: Reply) -> None:
        data = reply.body.encode("utf-8")
        self.send_response(reply.status)
        self.send_header("Content-Type", f"{reply.content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        if reply.html:
            self.send_header("Content-Security-Policy", form.CONTENT_SECURITY_POLICY)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        if self._send_body:
            self.wfile.write(data)


class SpecGenServer(ThreadingHTTPServer):
    daemon_threads = True


def make_server(host: str, port: int, *, strict: bool = True) -> SpecGenServer:
    """A bound server (port 0 picks a free one); call serve_forever() to run it."""
    handler = type("Handler", (SpecGenHandler,), {"strict": strict})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_cls: type[SpecGenServer] = type("Server", (SpecGenServer,), {"address_family": family})
    return server_cls((host, port), handler)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


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
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.debug)
    try:
        server = make_server(args.listen, args.port, strict=args.strict)
    except OSError as exc:
        print(f"pxhostd-specgen: cannot listen on {args.listen}:{args.port}: {exc}",
              file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _stop)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{host}]" if ":" in host else host
    print(f"pxhostd-specgen: serving on http://{shown}:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
