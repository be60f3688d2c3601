"""What each request to `pxhostd-specgen` gets: a pure function from request to reply.

The HTTP server (web.py) only reads requests and writes replies; everything a route answers
is decided here, so the server underneath can change without touching it.

Parameters come as a query string (GET, for curl and old links) or as a form body (POST: what
the web form sends, so that nothing a person types, secrets included, lands in a URL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl

from pxhostd.errors import InvalidSpec
from pxhostd.manifest import form
from pxhostd.manifest.model import render_for_platform
from pxhostd.manifest.params import BY_NAME, InvalidParams, parse_params

MAX_QUERY_BYTES = 16 * 1024
MAX_FIELDS = 64
FORM_TYPE = "application/x-www-form-urlencoded"

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

#: Paths that take parameters, and so also a POST form body.
PARAMETER_PATHS = ("/", "/download", "/form")


@dataclass(frozen=True)
class Reply:
    status: HTTPStatus
    content_type: str
    body: str
    #: An HTML page (gets the Content-Security-Policy).
    html: bool = False
    headers: tuple[tuple[str, str], ...] = ()


def _quoted(text: str) -> str:
    """An RFC 9110 quoted-string of printable ASCII (for the Warning header)."""
    clean = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _wants_html(accept: str) -> bool:
    return "text/html" in accept and "application/yaml" not in accept


def _text(status: HTTPStatus, text: str, *headers: tuple[str, str]) -> Reply:
    return Reply(status, "text/plain", text, headers=headers)


def _page(status: HTTPStatus, page: str, *headers: tuple[str, str]) -> Reply:
    return Reply(status, "text/html", page, html=True, headers=headers)


def _pairs(encoded: str) -> list[tuple[str, str]]:
    return parse_qsl(encoded, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS)


def _pairs_or_empty(encoded: str) -> list[tuple[str, str]]:
    """The pairs for re-filling the form, or none if they do not even parse."""
    try:
        return _pairs(encoded)
    except ValueError:
        return []


def prefill(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Form values by short name, from pairs under any name; a list given twice is joined."""
    values: dict[str, str] = {}
    for name, value in pairs:
        param = BY_NAME.get(name)
        if param is None or value == "":
            continue
        if param.is_list and values.get(param.short):
            values[param.short] += "," + value
        else:
            values[param.short] = value
    return values


def respond(
    method: str,
    path: str,
    query: str,
    *,
    accept: str = "",
    content_type: str = "",
    body: bytes = b"",
    strict: bool = True,
) -> Reply:
    """The reply to one request; `body` is the POST body (the server has bounded its size)."""
    if path in PARAMETER_PATHS and method == "POST":
        if content_type.split(";", 1)[0].strip().lower() != FORM_TYPE:
            return _text(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                         f"a POST body must be {FORM_TYPE} (what an HTML form sends)\n")
        if query:
            return _text(HTTPStatus.BAD_REQUEST,
                         "give the parameters either in the query or in the POST body\n")
        if len(body) > MAX_QUERY_BYTES:
            return _text(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large\n")
        try:
            query = body.decode("ascii")
        except UnicodeDecodeError:
            return _text(HTTPStatus.BAD_REQUEST, "malformed form body: not URL-encoded ASCII\n")
    elif method not in ("GET", "HEAD"):
        if path in PARAMETER_PATHS or path in GONE or path == "/healthz":
            allow = "GET, HEAD, POST" if path in PARAMETER_PATHS else "GET, HEAD"
            return _text(HTTPStatus.METHOD_NOT_ALLOWED, f"method {method} not allowed here\n",
                         ("Allow", allow))
        return _not_found()
    if path == "/healthz":
        return _text(HTTPStatus.OK, "ok\n")
    if path in GONE:
        return _text(HTTPStatus.GONE, GONE[path] + "\n")
    if path == "/form":
        return _page(HTTPStatus.OK, form.form_page(prefill(_pairs_or_empty(query))))
    if path in ("/", "/download"):
        html = _wants_html(accept) and path == "/"
        return _generate(query, html=html, download=path == "/download", strict=strict)
    return _not_found()


def _not_found() -> Reply:
    return _text(HTTPStatus.NOT_FOUND,
                 "not found: the generator answers on /, /download and /form\n")


def _generate(query: str, *, html: bool, download: bool, strict: bool) -> Reply:
    if not query:
        return _page(HTTPStatus.OK, form.form_page())
    try:
        pairs = _pairs(query)
        params = parse_params(pairs, strict=strict)
    except (InvalidSpec, ValueError) as exc:
        message = str(exc) if isinstance(exc, InvalidSpec) else f"malformed query: {exc}"
        if not html:
            return _text(HTTPStatus.BAD_REQUEST, message + "\n")
        by_field = exc.by_field if isinstance(exc, InvalidParams) else {}
        page = form.form_page(prefill(_pairs_or_empty(query)), error=message,
                              field_errors=by_field)
        return _page(HTTPStatus.BAD_REQUEST, page)
    manifest = render_for_platform(params)
    warnings = tuple(("Warning", f"299 - {_quoted(w)}") for w in params.warnings)
    if html:
        page = form.result_page(manifest, params.warnings, params.platform, pairs)
        return _page(HTTPStatus.OK, page, *warnings)
    if download:
        warnings += (("Content-Disposition", 'attachment; filename="portworx.yaml"'),)
    return Reply(HTTPStatus.OK, "application/yaml", manifest, headers=warnings)
