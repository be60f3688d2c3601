"""`pxhostd-specgen`: the HTTP successor of px-spec-websvc (stdlib http.server).

GET / without a query serves the form; with a query, the manifest (application/yaml, or
an HTML page with the YAML when a browser asks for text/html). /download?QUERY is the
same YAML as an attachment (portworx.yaml); /form?QUERY the form filled with QUERY.
Bad input: 400 with the reason. /healthz: 200. The old script endpoints answer 410 Gone
and name their replacement. The query string is never logged (it may carry secrets).
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
from urllib.parse import parse_qsl, urlsplit

from pxhostd import __version__
from pxhostd.errors import InvalidSpec
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

    def _dispatch(self, *, send_body: bool) -> None:
        self._send_body = send_body
        if len(self.path) > MAX_QUERY_BYTES:
            self._text(HTTPStatus.REQUEST_URI_TOO_LONG, "request URI too long\n")
            return
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._text(HTTPStatus.OK, "ok\n")
        elif url.path in GONE:
            self._text(HTTPStatus.GONE, GONE[url.path] + "\n")
        elif url.path == "/":
            self._root(url.query)
        elif url.path == "/download":
            self._root(url.query, download=True)
        elif url.path == "/form":
            prefill = {BY_NAME[k].short: v for k, v in pairs_or_empty(url.query) if k in BY_NAME}
            self._send(HTTPStatus.OK, "text/html", form.form_page(prefill), html=True)
        else:
            self._text(HTTPStatus.NOT_FOUND,
                       "not found: the generator answers on /, /download and /form\n")

    def _root(self, query: str, *, download: bool = False) -> None:
        html = _wants_html(self.headers.get("Accept", "")) and not download
        if not query:
            self._send(HTTPStatus.OK, "text/html", form.form_page(), html=True)
            return
        try:
            pairs = parse_qsl(
                query, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS
            )
            params = parse_params(pairs, strict=self.strict)
        except (InvalidSpec, ValueError) as exc:
            message = str(exc) if isinstance(exc, InvalidSpec) else f"malformed query: {exc}"
            if html:
                prefill = {
                    BY_NAME[k].short: v for k, v in pairs_or_empty(query) if k in BY_NAME
                }
                page = form.form_page(prefill, error=message)
                self._send(HTTPStatus.BAD_REQUEST, "text/html", page, html=True)
            else:
                self._text(HTTPStatus.BAD_REQUEST, message + "\n")
            return
        manifest = render_for_platform(params)
        warnings = [("Warning", f"299 - {_quoted(w)}") for w in params.warnings]
        if html:
            page = form.result_page(manifest, params.warnings, params.platform, pairs)
            self._send(HTTPStatus.OK, "text/html", page, html=True, extra=warnings)
        else:
            if download:
                warnings.append(("Content-Disposition", 'attachment; filename="portworx.yaml"'))
            self._send(HTTPStatus.OK, "application/yaml", manifest, extra=warnings)

    def _text(self, status: HTTPStatus, text: str) -> None:
        self._send(status, "text/plain", text)

    def _send(
        self,
        status: HTTPStatus,
        content_type: str,
        body: str,
        *,
        html: bool = False,
        extra: Sequence[tuple[str, str]] = (),
    ) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        if html:
            self.send_header("Content-Security-Policy", form.CONTENT_SECURITY_POLICY)
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self._send_body:
            self.wfile.write(data)


def pairs_or_empty(query: str) -> list[tuple[str, str]]:
    """The query's pairs for re-filling the form, or none if the query does not even parse."""
    try:
        return parse_qsl(query, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS)
    except ValueError:
        return []


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
