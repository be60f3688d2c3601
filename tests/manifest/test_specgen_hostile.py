"""pxhostd-specgen under hostile and heavy load, over real sockets on loopback."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_http import (
    Answer,
    check_concurrent,
    check_get_with_body,
    check_half_open,
    check_probe_beside_attacker,
    exchange,
    get,
    server_process,
)

from pxhostd.manifest.web import LIMITS

REPO = Path(__file__).resolve().parents[2]
HEALTHY = Answer(200, {}, b"ok\n")


@pytest.fixture
def specgen_fast_timeout() -> Iterator[tuple[int, int]]:
    """A real pxhostd-specgen whose clients have 1 s to send their request head."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "pxhostd.manifest.web", "--port", "0", "--head-timeout", "1"]
    with server_process(argv, env, str(REPO)) as running:
        yield running


def test_200_concurrent_requests_are_all_answered(
    specgen_fast_timeout: tuple[int, int],
) -> None:
    _, port = specgen_fast_timeout
    check_concurrent(port, "/healthz", HEALTHY)
    check_concurrent(port, "/", Answer(200, {}, _body(port, "/")))


def test_400_half_open_connections_neither_block_nor_exhaust(
    specgen_fast_timeout: tuple[int, int],
) -> None:
    pid, port = specgen_fast_timeout
    check_half_open(
        pid, port, "/healthz", HEALTHY, held_at_most=LIMITS.per_peer + LIMITS.lingering
    )


def test_a_probe_beside_64_plus_half_open_connections(
    specgen_fast_timeout: tuple[int, int],
) -> None:
    _, port = specgen_fast_timeout
    check_probe_beside_attacker(port, "/healthz", HEALTHY)


def test_a_get_with_a_body_is_400(specgen_fast_timeout: tuple[int, int]) -> None:
    _, port = specgen_fast_timeout
    check_get_with_body(port, "/healthz")
    check_get_with_body(port, "/")


def _body(port: int, path: str) -> bytes:
    answer = get(port, path)
    assert answer.status == 200
    return answer.body


def test_limits_of_the_head_and_the_form_body(specgen_fast_timeout: tuple[int, int]) -> None:
    _, port = specgen_fast_timeout
    long_target = f"GET /?c={'x' * (LIMITS.max_target + 1)} HTTP/1.1\r\nHost: h\r\n\r\n"
    assert exchange(port, long_target.encode()).status == 414
    many = b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * (LIMITS.max_fields + 1) + b"\r\n"
    assert exchange(port, many).status == 431
    big_form = (f"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {LIMITS.max_body + 1}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n\r\n").encode()
    assert exchange(port, big_form).status == 413
