"""The bus writer's two lanes on a real socket whose peer reads slowly (as a loaded bus
daemon does): an urgent message never waits behind a backlog of bulk ones, each lane keeps
its order, and a message half written is finished before anything else."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Iterator

import pytest

from pxhostd.bus.writer import BULK_OUTQ, BackpressureWriter, unread_bytes

SIZE = 3000  # about an Introspect reply


def frame(lane: str, n: int, size: int = SIZE) -> bytes:
    """A length-prefixed record, so the reader can split the byte stream again."""
    body = f"{lane}{n:06d}".encode().ljust(size - 4, b".")
    return struct.pack("!I", len(body)) + body


def split(stream: bytes) -> list[str]:
    out = []
    while stream:
        (n,) = struct.unpack("!I", stream[:4])
        out.append(stream[4:4 + n][:7].decode())
        stream = stream[4 + n:]
    return out


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


async def read_all(sock: socket.socket, want: int) -> bytes:
    """Read slowly, 2 KiB at a time with pauses, as dbus-daemon under a flood does."""
    got = bytearray()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while len(got) < want and loop.time() < deadline:
        with contextlib.suppress(BlockingIOError):
            got += sock.recv(2048)
        await asyncio.sleep(0.001)
    return bytes(got)


def test_urgent_overtakes_a_bulk_backlog_and_both_lanes_keep_order(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair

    async def main() -> tuple[list[str], int, int]:
        loop = asyncio.get_running_loop()
        errors: list[BaseException] = []
        writer = BackpressureWriter(ours, loop, errors.append)
        bulk = [frame("B", n) for n in range(200)]
        for data in bulk:
            writer.enqueue_bulk(data, None)
        held_in_kernel = unread_bytes(ours.fileno())
        queued_before = writer.queued_bulk_bytes
        urgent = [frame("U", n, 500) for n in range(3)]
        futures = [loop.create_future() for _ in urgent]
        for data, future in zip(urgent, futures, strict=True):
            writer.enqueue(data, future)
        total = sum(map(len, bulk)) + sum(map(len, urgent))
        stream = await read_all(theirs, total)
        assert all(f.done() for f in futures)
        assert not errors
        assert writer.queued_bytes == 0
        return split(stream), held_in_kernel, queued_before

    order, held_in_kernel, queued_before = asyncio.run(main())
    # The socket was never filled with bulk: most of it waited in the writer.
    assert held_in_kernel < BULK_OUTQ + 2 * SIZE
    assert queued_before > 150 * SIZE
    assert sorted(order) == sorted([f"B{n:06d}" for n in range(200)]
                                   + [f"U{n:06d}" for n in range(3)])
    bulk_seen = [x for x in order if x[0] == "B"]
    urgent_seen = [x for x in order if x[0] == "U"]
    assert bulk_seen == sorted(bulk_seen)
    assert urgent_seen == ["U000000", "U000001", "U000002"]
    # What went out before the urgent ones is what the socket held when they came.
    ahead = order.index("U000000")
    assert ahead * SIZE <= BULK_OUTQ + 2 * SIZE, order[: ahead + 1]


def test_a_half_written_message_finishes_before_an_urgent_one(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        writer = BackpressureWriter(ours, loop, pytest.fail)
        big = frame("B", 0, 256 * 1024)  # far more than the socket takes at once
        writer.enqueue_bulk(big, None)
        assert writer.queued_bytes > 0  # the rest of it waits, first in line
        writer.enqueue(frame("U", 0, 100), None)
        stream = await read_all(theirs, len(big) + 100)
        return split(stream)

    assert asyncio.run(main()) == ["B000000", "U000000"]
