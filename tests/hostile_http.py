"""Hostile and ordinary HTTP clients on loopback, for the servers on pxhostd.httpserve.

Blocking sockets, each bound to a chosen 127.0.0.N source address, since the servers cap
connections per peer address: the "attacker" and the "probe" are different peers. Waits
are on conditions (EOF, a count), each with a generous deadline; nothing is timed.
"""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

#: Long enough for a loaded machine; only ever a limit on waiting, never asserted.
PATIENCE = 120.0
ATTACKER = "127.0.0.2"
PROBE = "127.0.0.3"
OTHER = "127.0.0.4"
#: Half a request head: a slowloris that never finishes.
HALF_HEAD = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Ag"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def parse(data: bytes) -> Answer:
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"incomplete answer {data[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:])}
    return Answer(int(lines[0].split(" ")[1]), headers, body)


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(PATIENCE)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def read_to_eof(sock: socket.socket) -> bytes:
    """Everything until the server closes (a reset after an answer counts as a close)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def exchange(port: int, request: bytes, source: str = "127.0.0.1") -> Answer:
    with connect(port, source) as sock:
        sock.sendall(request)
        return parse(read_to_eof(sock))


def get(port: int, path: str = "/", source: str = "127.0.0.1", method: str = "GET") -> Answer:
    return exchange(port, f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(), source)


def concurrent_gets(port: int, path: str, count: int) -> list[Answer]:
    """`count` GETs at once, each on its own connection, all connected before any is sent."""
    socks = [connect(port) for _ in range(count)]
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        for sock in socks:
            sock.sendall(request)
        with ThreadPoolExecutor(max_workers=32) as pool:
            return [parse(data) for data in pool.map(read_to_eof, socks)]
    finally:
        for sock in socks:
            sock.close()


@contextmanager
def half_open(port: int, count: int, source: str = ATTACKER) -> Iterator[list[socket.socket]]:
    """`count` connections that send nothing (even ones) or half a head (odd ones)."""
    socks: list[socket.socket] = []
    try:
        for i in range(count):
            sock = connect(port, source)
            if i % 2:
                sock.sendall(HALF_HEAD)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def wait_all_closed(socks: list[socket.socket]) -> list[bytes]:
    """Wait until the server has closed every one; what each received before its EOF."""
    received = {sock.fileno(): b"" for sock in socks}
    open_ = {sock.fileno(): sock for sock in socks}
    deadline = time.monotonic() + PATIENCE
    with selectors.DefaultSelector() as sel:
        for sock in socks:
            sel.register(sock, selectors.EVENT_READ)
        while open_:
            left = deadline - time.monotonic()
            assert left > 0, f"{len(open_)} of {len(socks)} connections still open"
            for key, _ in sel.select(timeout=left):
                sock = open_[key.fd]
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    received[key.fd] += chunk
                else:
                    sel.unregister(sock)
                    del open_[key.fd]
    return [received[sock.fileno()] for sock in socks]


def answer_status(data: bytes) -> int | None:
    """The status of a received answer; None when the server closed without one."""
    return parse(data).status if data else None


def wait_for(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"still not {what}"
        time.sleep(0.05)


@dataclass(frozen=True)
class Usage:
    fds: int
    threads: int


def usage(pid: int) -> Usage:
    """Open file descriptors and threads of process `pid`."""
    return Usage(len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task")))


@contextmanager
def server_process(argv: list[str], env: dict[str, str], cwd: str) -> Iterator[tuple[int, int]]:
    """Run a server that prints its URL or port as the last word of its first line.

    Yields (pid, port); stops it with SIGTERM at the end.
    """
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=cwd)
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        assert line, f"server did not start: {proc.communicate(timeout=30)[1]}"
        port = int(line.split()[-1].rstrip("/").rsplit(":", 1)[-1])
        yield proc.pid, port
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


# -- the scenarios both servers must pass ---------------------------------------------------


def check_concurrent(port: int, path: str, expected: Answer, count: int = 200) -> None:
    """`count` concurrent requests: every one answered, and answered right."""
    answers = concurrent_gets(port, path, count)
    assert len(answers) == count
    assert all((a.status, a.body) == (expected.status, expected.body) for a in answers), {
        (a.status, a.body[:80]) for a in answers
    }


def check_half_open(
    pid: int, port: int, path: str, expected: Answer, *, held_at_most: int, count: int = 400
) -> None:
    """`count` half-open connections from one peer: others are served meanwhile, the
    server takes no thread per connection and at most `held_at_most` descriptors (its
    per-peer cap and the refused ones it lets linger),
    and closes every one of them itself (408 after the head timeout, or 503 overloaded
    over the cap)."""
    assert get(port, path).status == expected.status  # warm: the first worker thread exists
    before = usage(pid)
    with half_open(port, count) as socks:
        during = get(port, path, source=PROBE)
        assert (during.status, during.body) == (expected.status, expected.body)
        held = usage(pid)
        answers = wait_all_closed(socks)
    # Not one thread per connection (a thread pool's few at most), nor a descriptor.
    assert held.threads < before.threads + 40, (before, held)
    assert held.fds <= before.fds + held_at_most + 8, (before, held)
    statuses = [answer_status(a) for a in answers]
    assert set(statuses) <= {408, 503}, set(statuses)
    for data in answers:
        answer = parse(data)
        if answer.status == 503:
            assert answer.body == b"overloaded\n"
        assert answer.headers["connection"] == "close"
    wait_for("back to the descriptors before", lambda: usage(pid).fds <= before.fds)
    assert usage(pid).threads <= before.threads + 40


def check_probe_beside_attacker(port: int, path: str, expected: Answer, count: int = 100) -> None:
    """A probe from one peer while another holds `count` half-open connections."""
    with half_open(port, count, source=ATTACKER):
        for _ in range(3):
            answer = get(port, path, source=PROBE)
            assert (answer.status, answer.body) == (expected.status, expected.body)
            assert answer.body != b"overloaded\n"


def check_get_with_body(port: int, path: str) -> None:
    """A body on GET is refused (400, closed), and never served as a second request."""
    smuggled = f"GET {path}?smuggled=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    for framing in (f"Content-Length: {len(smuggled)}\r\n".encode(),
                    b"Transfer-Encoding: chunked\r\n"):
        body = smuggled if framing.startswith(b"Content") else (
            f"{len(smuggled):x}\r\n".encode() + smuggled + b"\r\n0\r\n\r\n")
        for method in (b"GET", b"HEAD"):
            with connect(port) as sock:
                sock.sendall(method + b" " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             + framing + b"\r\n" + body)
                data = read_to_eof(sock)
            assert data.count(b"HTTP/1.1 ") == 1, data
            answer = parse(data)
            assert answer.status == 400, data
            assert answer.headers["connection"] == "close"
