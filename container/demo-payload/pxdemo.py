#!/usr/bin/python3 -S
"""pxdemo: a small real program that stands in for Portworx in tests, demos and benchmarks.

It behaves the way pxhostd expects a storage payload to behave: reads /etc/pwx/config.json,
serves the node health endpoint on 127.0.0.1:9001, tells systemd READY=1 only once its
socket listens, and stops promptly on SIGTERM. Standard library only, so it runs under the
node's own /usr/bin/python3 (with -S: no site packages, a faster start). `build.py` bakes
the version (and the broken/slow-start switches) into a copy of this file; the constants
below are the defaults of an unbuilt copy.
"""

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import http.server

VERSION = "0.0.0-dev"
#: A broken build exits at once with a non-zero status (exercises rollback).
BROKEN = False
#: Seconds to wait before listening and sending READY=1 (exercises start timeouts).
SLOW_START = 0.0
DEFAULT_ADDR = "127.0.0.1"
DEFAULT_PORT = 9001
DEFAULT_CONFIG = "/etc/pwx/config.json"
#: Exit status of a broken build and of a bad configuration.
EXIT_BROKEN = 3
EXIT_BAD_CONFIG = 2

PROG = "pxdemo"
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def log(message: str) -> None:
    """One line to stderr; systemd puts it in the journal."""
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


def sd_notify(message: str) -> bool:
    """Send one datagram to $NOTIFY_SOCKET (the whole sd_notify protocol); False if unset."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address[0] not in ("/", "@"):
        log(f"ignoring unsupported NOTIFY_SOCKET {address!r}")
        return False
    target = "\0" + address[1:] if address[0] == "@" else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(message.encode())
    except OSError as exc:
        log(f"sd_notify failed: {exc}")
        return False
    return True


class Config:
    """What pxdemo knows of /etc/pwx/config.json."""

    def __init__(self, path: str, present: bool, cluster: str) -> None:
        self.path = path
        self.present = present
        self.cluster = cluster


class ConfigError(Exception):
    """The config file exists but cannot be used."""


def load_config(path: str, cluster_arg: str) -> Config:
    """Read the Portworx-style config; a missing file is fine, a malformed one is fatal."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return Config(path, False, cluster_arg)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"config {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a JSON object")
    cluster = data.get("clusterid", cluster_arg)
    if not isinstance(cluster, str):
        raise ConfigError(f"config {path}: clusterid must be a string")
    return Config(path, True, cluster)


def write_initial_config(path: str, cluster: str) -> bool:
    """Like Portworx's first start: record the cluster in a new config (atomic, durable)."""
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        os.makedirs(directory, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"clusterid": cluster}, f)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        log(f"cannot write the initial config {path}: {exc.strerror}")
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False
    return True


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    env = os.environ
    parser = argparse.ArgumentParser(prog=PROG, description="Portworx stand-in payload.")
    parser.add_argument("--config", default=env.get("PXDEMO_CONFIG", DEFAULT_CONFIG))
    parser.add_argument("--addr", default=env.get("PXDEMO_ADDR", DEFAULT_ADDR))
    parser.add_argument("--port", type=int, default=int(env.get("PXDEMO_PORT", DEFAULT_PORT)))
    parser.add_argument(
        "--slow-start", type=float, default=float(env.get("PXDEMO_SLOW_START", SLOW_START))
    )
    # Portworx's own -c CLUSTER; every other Portworx argument is accepted and ignored.
    parser.add_argument("-c", "--cluster", default="")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser.parse_known_args(argv)


def make_server(
    addr: str, port: int, config: Config, started: float
) -> "http.server.ThreadingHTTPServer":
    # Imported here so a broken build or a bad config exits before paying for http.server.
    import http.server

    node = socket.gethostname()

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = f"{PROG}/{VERSION}"
        protocol_version = "HTTP/1.0"

        def _answer(self, with_body: bool) -> None:
            path = self.path.split("?", 1)[0]
            doc: dict[str, object]
            if path == "/v1/cluster/nodehealth":
                doc = {
                    "status": "healthy",
                    "version": VERSION,
                    "node": node,
                    "cluster": config.cluster,
                }
            elif path == "/status":
                doc = {
                    "version": VERSION,
                    "uptime": round(time.monotonic() - started, 3),
                    "config_present": config.present,
                    "config": config.path,
                    "cluster": config.cluster,
                    "pid": os.getpid(),
                }
            else:
                self.send_error(404, "not found")
                return
            body = (json.dumps(doc, sort_keys=True) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer(True)

        def do_HEAD(self) -> None:
            self._answer(False)

        def log_message(self, format: str, *args: object) -> None:
            # Health probes arrive every few seconds; keep them out of the journal.
            if os.environ.get("PXDEMO_DEBUG"):
                log(format % args)

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET

    return Server((addr, port), Handler)


def main(argv: list[str]) -> int:
    started = time.monotonic()
    args, ignored = parse_args(argv)
    if args.version:
        print(VERSION)
        return 0
    if BROKEN:
        log(f"{VERSION} is a deliberately broken build (built with --broken); exiting with "
            f"status {EXIT_BROKEN}")
        return EXIT_BROKEN
    # Block the stop signals before any thread exists; the main thread takes them with
    # sigwait, so the HTTP threads never see them and shutdown is orderly.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    log(f"{VERSION} starting (pid {os.getpid()})")
    if ignored:
        # Values may be secrets (tokens, passwords): report the count only.
        log(f"ignoring {len(ignored)} argument(s) meant for Portworx")
    try:
        config = load_config(args.config, args.cluster)
    except ConfigError as exc:
        log(f"{exc}; exiting with status {EXIT_BAD_CONFIG}")
        return EXIT_BAD_CONFIG
    if config.present:
        log(f"config {config.path}: cluster {config.cluster or '(unnamed)'}")
    elif config.cluster and write_initial_config(config.path, config.cluster):
        config = Config(config.path, True, config.cluster)
        log(f"wrote the initial config {config.path} for cluster {config.cluster}")
    else:
        log(f"no config at {config.path}; running without one")
    if args.slow_start > 0:
        sd_notify(f"STATUS=pxdemo {VERSION} slow start: {args.slow_start:g} s")
        log(f"slow start: waiting {args.slow_start:g} s before listening")
        if signal.sigtimedwait(STOP_SIGNALS, args.slow_start) is not None:
            log("stop requested during slow start")
            return 0
    try:
        server = make_server(args.addr, args.port, config, started)
    except OSError as exc:
        log(f"cannot listen on {args.addr}:{args.port}: {exc.strerror}")
        return 1
    import threading

    host, port = str(server.server_address[0]), int(server.server_address[1])
    listening = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    sd_notify(f"READY=1\nSTATUS=pxdemo {VERSION} serving on {listening}")
    log(f"{VERSION} serving on {listening}")
    received = signal.sigwait(STOP_SIGNALS)
    sd_notify(f"STOPPING=1\nSTATUS=pxdemo {VERSION} stopping")
    log(f"{signal.Signals(received).name} received; stopping")
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
