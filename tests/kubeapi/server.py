"""A stand-in Kubernetes API server for the endpoints the pod uses, on the real wire protocol.

HTTPS with a bearer token (the pod's in-cluster configuration: service account token and
CA), RBAC from the generated manifest's ClusterRole (a request it does not allow is a 403,
as kube-apiserver's authorizer answers), JSON bodies, Status objects for errors, JSON Patch
and JSON merge patch, and watch streams as chunked JSON lines ending with an ERROR event
(410 Expired) when their history is compacted. Endpoints:

    GET   /api/v1/nodes/{name}                              get nodes
    GET   /api/v1/nodes?fieldSelector=metadata.name=N&watch  watch nodes
    PATCH /api/v1/nodes/{name}                              patch nodes
    GET   /api/v1/pods?fieldSelector=spec.nodeName=N         list pods
    GET   /api/v1/namespaces/{ns}/persistentvolumeclaims/{n} get persistentvolumeclaims
    GET   /api/v1/persistentvolumes/{name}                  get persistentvolumes
    POST  /api/v1/namespaces/{ns}/pods/{name}/eviction      create pods/eviction

Every request's authorization attributes (verb, group, resource) are recorded, so a test can
compare what the client did with what the ClusterRole grants. It listens on an ephemeral
loopback port, or on a Unix socket (placed inside a node, behind a forwarder there).
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import json
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubeapi.store import ApiError, Obj, Store, validate

TOKEN = "stand-in-service-account-token"


@dataclass(frozen=True, order=True)
class Attributes:
    verb: str
    group: str
    resource: str
    name: str = ""


@dataclass
class Rbac:
    """ClusterRole rules -> allowed (verb, group, resource[, name])."""

    rules: list[Obj]

    def allows(self, a: Attributes) -> bool:
        for rule in self.rules:
            if a.group in rule.get("apiGroups", []) and a.resource in rule.get("resources", []) \
                    and a.verb in rule.get("verbs", []):
                names = rule.get("resourceNames")
                if not names or a.name in names:
                    return True
        return False


@dataclass
class ServiceAccount:
    """What Kubernetes mounts at /var/run/secrets/kubernetes.io/serviceaccount."""

    directory: Path
    cert: Path
    key: Path


def make_service_account(directory: Path) -> ServiceAccount:
    """A self-signed server certificate for 127.0.0.1 (its own CA), and the token."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "ca.crt", directory.parent / f"{directory.name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=kube-apiserver",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    (directory / "token").write_text(TOKEN)
    (directory / "namespace").write_text("kube-system")
    return ServiceAccount(directory, cert, key)


@dataclass
class KubeApiServer:
    store: Store
    rbac: Rbac
    account: ServiceAccount
    requests: list[Attributes] = field(default_factory=list)
    #: Each request as (method, path with query, content type), for the tests to read.
    log: list[tuple[str, str, str]] = field(default_factory=list)
    _servers: list[socketserver.BaseServer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.account.cert, self.account.key)
        return ctx

    @contextlib.contextmanager
    def serving_tcp(self) -> Iterator[int]:
        """Listen on an ephemeral 127.0.0.1 port; yield it."""
        server = _TlsTcpServer(("127.0.0.1", 0), _handler(self), self.context())
        with self._running(server):
            yield int(server.server_address[1])

    @contextlib.contextmanager
    def serving_unix(self, path: Path) -> Iterator[Path]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        server = _TlsUnixServer(str(path), _handler(self), self.context())
        path.chmod(0o666)
        with self._running(server):
            yield path

    @contextlib.contextmanager
    def _running(self, server: socketserver.BaseServer) -> Iterator[None]:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self.store.close()
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)

    def used(self) -> set[tuple[str, str, str]]:
        """(group, resource, verb) of every request served."""
        with self.lock:
            return {(a.group, a.resource, a.verb) for a in self.requests}


class _TlsMixin:
    ctx: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(tls, client_address)  # type: ignore[misc]
        finally:
            tls.close()


class _TlsTcpServer(_TlsMixin, socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        super().__init__(address, handler)


class _TlsUnixServer(_TlsMixin, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, handler: Any, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        super().__init__(path, handler)


def _handler(api: KubeApiServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(_Handler):
        server_api = api

    return Handler


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_api: KubeApiServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def address_string(self) -> str:
        return "stand-in-client"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    # -- dispatch -------------------------------------------------------------------------

    def _serve(self, method: str) -> None:
        api = self.server_api
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        with api.lock:
            api.log.append((method, self.path, content_type))
        try:
            scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or token != TOKEN:  # the scheme is case-insensitive
                raise ApiError(401, "Unauthorized", "Unauthorized")
            parts = [p for p in url.path.split("/") if p]
            attrs = _attributes(method, parts, query)
            with api.lock:
                api.requests.append(attrs)
            if not api.rbac.allows(attrs):
                raise ApiError(403, "Forbidden",
                               f'{attrs.resource} "{attrs.name}" is forbidden: User '
                               '"system:serviceaccount:kube-system:px-account" cannot '
                               f"{attrs.verb} resource {attrs.resource!r} in API group "
                               f"{attrs.group!r}")
            if attrs.verb == "watch":
                self._watch(parts, query)
                return
            code, obj = self._route(method, parts, query, body, content_type)
            self._send(code, obj)
        except ApiError as exc:
            self._send(exc.code, exc.status())

    def _route(self, method: str, parts: list[str], query: dict[str, str], body: bytes,
               content_type: str) -> tuple[int, Obj]:
        store = self.server_api.store
        match (method, parts):
            case ("GET", ["api", "v1", "nodes", name]):
                return 200, store.get("nodes", "", name)
            case ("PATCH", ["api", "v1", "nodes", name]):
                return 200, _patch(store, "nodes", "", name, body, content_type)
            case ("GET", ["api", "v1", "pods"]):
                node = _field(query, "spec.nodeName")
                return 200, store.list(
                    "pods", lambda o: node is None or o["spec"].get("nodeName") == node)
            case ("GET", ["api", "v1", "namespaces", ns, "persistentvolumeclaims", name]):
                return 200, store.get("persistentvolumeclaims", ns, name)
            case ("GET", ["api", "v1", "persistentvolumes", name]):
                return 200, store.get("persistentvolumes", "", name)
            case ("POST", ["api", "v1", "namespaces", ns, "pods", name, "eviction"]):
                eviction = _json_body(body, content_type)
                validate(eviction)
                if eviction.get("apiVersion") != "policy/v1" or eviction.get("kind") != "Eviction":
                    raise ApiError(400, "BadRequest", "expected a policy/v1 Eviction")
                meta = eviction.get("metadata") or {}
                if meta.get("name") != name or meta.get("namespace", ns) != ns:
                    raise ApiError(400, "BadRequest", "name in the Eviction and the URL differ")
                store.evict(ns, name)
                return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                             "status": "Success", "code": 201}
        raise ApiError(404, "NotFound", f"the server could not find the requested resource "
                       f"({method} {self.path})")

    def _watch(self, parts: list[str], query: dict[str, str]) -> None:
        store = self.server_api.store
        if parts != ["api", "v1", "nodes"]:
            raise ApiError(404, "NotFound", "watch is served for nodes only")
        name = _field(query, "metadata.name")
        given = query.get("resourceVersion") or "0"
        try:
            since = int(given)
        except ValueError:
            raise ApiError(400, "BadRequest", "resourceVersion: not a number") from None
        timeout = float(query.get("timeoutSeconds") or 1800)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for kind, obj in store.watch_from(
                "nodes", since, lambda o: name is None or o["metadata"]["name"] == name, timeout
            ):
                line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True

    def _send(self, code: int, obj: Obj) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(data)


def _attributes(method: str, parts: list[str], query: dict[str, str]) -> Attributes:
    """kube-apiserver's request info: verb, API group, resource[/subresource], name."""
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return Attributes(method.lower(), "", "/" + "/".join(parts))
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    watch = query.get("watch") in ("1", "true", "True")
    if method == "GET":
        verb = "get" if name else ("watch" if watch else "list")
        if watch and not name:
            name = _field(query, "metadata.name") or ""
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}[method]
    return Attributes(verb, group, resource, name)


def _field(query: dict[str, str], key: str) -> str | None:
    for term in (query.get("fieldSelector") or "").split(","):
        k, _, v = term.partition("=")
        if k == key:
            return v
    return None


def _json_body(body: bytes, content_type: str) -> Any:
    if content_type not in ("application/json", "application/json-patch+json",
                            "application/merge-patch+json",
                            "application/strategic-merge-patch+json"):
        raise ApiError(415, "UnsupportedMediaType", f"unsupported media type {content_type!r}")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"the body is not JSON: {exc}") from None


def _patch(store: Store, resource: str, ns: str, name: str, body: bytes,
           content_type: str) -> Obj:
    patch = _json_body(body, content_type)
    while store.before_patch:
        store.before_patch.pop(0)()
    if content_type == "application/json-patch+json":
        if not isinstance(patch, list):
            raise ApiError(400, "BadRequest", "a JSON Patch is a list of operations")
        return store.update(resource, ns, name, lambda o: json_patch(o, patch))
    if content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
        return store.update(resource, ns, name, lambda o: merge_patch(o, patch))
    raise ApiError(415, "UnsupportedMediaType", f"cannot patch with {content_type!r}")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 (strategic merge is the same for the maps and scalars served here)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def json_patch(doc: Obj, ops: list[Obj]) -> Obj:
    """RFC 6902 add/remove/replace/test on objects (arrays: add/replace by index, `-`)."""
    for op in ops:
        kind, path = op.get("op"), op.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ApiError(422, "Invalid", f"JSON Patch: bad path {path!r}")
        tokens = [_unescape(t) for t in path[1:].split("/")]
        parent: Any = doc
        for token in tokens[:-1]:
            try:
                parent = parent[int(token)] if isinstance(parent, list) else parent[token]
            except (KeyError, IndexError, ValueError, TypeError):
                raise ApiError(422, "Invalid",
                               f"JSON Patch: {kind} {path}: doc is missing path") from None
        last = tokens[-1]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(index, copy.deepcopy(op["value"]))
            elif kind == "replace":
                parent[index] = copy.deepcopy(op["value"])
            elif kind == "remove":
                parent.pop(index)
            else:
                raise ApiError(422, "Invalid", f"JSON Patch: {kind} on arrays is not served")
            continue
        if not isinstance(parent, dict):
            raise ApiError(422, "Invalid", f"JSON Patch: {kind} {path}: doc is missing path")
        if kind == "add":
            parent[last] = copy.deepcopy(op["value"])
        elif kind == "replace":
            if last not in parent:
                raise ApiError(422, "Invalid", f"JSON Patch: replace {path}: missing key")
            parent[last] = copy.deepcopy(op["value"])
        elif kind == "remove":
            if last not in parent:
                raise ApiError(422, "Invalid", f"JSON Patch: remove {path}: missing key")
            del parent[last]
        elif kind == "test":
            if parent.get(last) != op.get("value"):
                raise ApiError(422, "Invalid", f"JSON Patch: test {path} failed")
        else:
            raise ApiError(422, "Invalid", f"JSON Patch: operation {kind!r} is not served")
    return doc

