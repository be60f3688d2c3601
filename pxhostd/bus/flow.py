"""Per-caller limits on replies nobody reads, so a hostile client cannot stall the bus.

The bus daemon keeps every reply pxhostd sent until its recipient reads it, and counts
those bytes against pxhostd's own connection: once they reach its limit (127 MiB on the
system bus) it stops reading from pxhostd, and root's replies stall behind a client that
never reads. D-Bus has no delivery acknowledgement, but every client library answers
`org.freedesktop.DBus.Peer.Ping` by itself, and a connection's messages arrive in order: a
Ping answered means every reply sent before it has been read.

So each non-root connection has a window of unconfirmed replies (WINDOW bytes or
WINDOW_MESSAGES messages; a uid at most UID_WINDOW / UID_WINDOW_MESSAGES over all its
connections; all non-root callers together TOTAL_WINDOW). Past half the window pxhostd
pings the caller; the answer frees the window. A reply that does not fit waits in a small
per-caller queue (HELD_MAX, PEER_HELD_BYTES; past its own window a connection shares
UID_HELD_BYTES with its uid's others); past that it is dropped, and so are
the caller's further calls, before any work is done for them (`shedding`), until it reads
again. Root is never limited. A normal client (pxhostctl: a few small replies) never
reaches a window; a client that reads as fast as it calls is pinged every few dozen
replies and never waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

WINDOW = 256 * 1024
WINDOW_MESSAGES = 32
UID_WINDOW = 2 * 1024 * 1024
UID_WINDOW_MESSAGES = 256
TOTAL_WINDOW = 32 * 1024 * 1024
HELD_MAX = 16
UID_HELD_BYTES = 512 * 1024
#: What one connection may have waiting here: with the bus's 256 connections per uid, a
#: uid costs pxhostd at most 16 MiB of held replies, a connection 64 KiB.
PEER_HELD_BYTES = 64 * 1024
#: Seconds before pinging again a peer whose last ping got no answer of its own.
PING_RETRY = 1.0
#: Pings in flight at most, per uid and in all. The bus allows pxhostd 128 calls awaiting a
#: reply, and pings to clients that never read stay unanswered: they must never crowd out
#: pxhostd's calls to systemd and to the bus.
TOTAL_PINGS = 48
UID_PINGS = TOTAL_PINGS // 2

WriteFn = Callable[[bytes, "asyncio.Future[None] | None"], None]
#: ping(name, on_answer): send Peer.Ping to `name`; on_answer(True) once the peer answered.
PingFn = Callable[[str, Callable[[bool], None]], None]


@dataclass
class _Peer:
    uid: int
    sent: int = 0
    confirmed: int = 0
    sent_msgs: int = 0
    confirmed_msgs: int = 0
    ping_mark: tuple[int, int] | None = None
    held: deque[tuple[bytes, asyncio.Future[None] | None]] = field(default_factory=deque)
    held_bytes: int = 0
    dropped: int = 0

    @property
    def outstanding(self) -> int:
        return self.sent - self.confirmed

    @property
    def outstanding_msgs(self) -> int:
        return self.sent_msgs - self.confirmed_msgs


class FlowControl:
    def __init__(self, write: WriteFn, ping: PingFn) -> None:
        self._write = write
        self._ping = ping
        self._peers: dict[str, _Peer] = {}
        self._uid_out: dict[int, int] = {}
        self._uid_msgs: dict[int, int] = {}
        self._uid_held: dict[int, int] = {}
        self._total = 0
        self._pings: dict[int, int] = {}
        self._waiting_for_ping: dict[str, None] = {}
        self.dropped = 0
        self.shed = 0
        self.shed = 0

    # -- accounting ----------------------------------------------------------------------

    def outstanding(self, name: str | None = None) -> int:
        if name is None:
            return self._total
        peer = self._peers.get(name)
        return peer.outstanding if peer else 0

    def held_bytes(self) -> int:
        return sum(self._uid_held.values())

    def shedding(self, name: str) -> bool:
        """Whether a new call from `name` would only be dropped: skip it unprocessed."""
        peer = self._peers.get(name)
        if peer is None:
            return False
        return len(peer.held) >= HELD_MAX or (
            self._over_own_window(peer) and self._uid_held.get(peer.uid, 0) >= UID_HELD_BYTES
        )

    @staticmethod
    def _over_own_window(peer: _Peer) -> bool:
        return peer.outstanding >= WINDOW or peer.outstanding_msgs >= WINDOW_MESSAGES

    def _fits(self, peer: _Peer, size: int) -> bool:
        if not peer.outstanding_msgs:
            return True  # one reply is always let through: the peer may then confirm it
        if peer.outstanding + size > WINDOW or peer.outstanding_msgs >= WINDOW_MESSAGES:
            return False
        if self._uid_out.get(peer.uid, 0) + size > UID_WINDOW:
            return False
        if self._uid_msgs.get(peer.uid, 0) >= UID_WINDOW_MESSAGES:
            return False
        return self._total + size <= TOTAL_WINDOW

    def _account(self, peer: _Peer, delta: int, msgs: int) -> None:
        self._uid_out[peer.uid] = self._uid_out.get(peer.uid, 0) + delta
        self._uid_msgs[peer.uid] = self._uid_msgs.get(peer.uid, 0) + msgs
        if not self._uid_msgs[peer.uid]:
            del self._uid_out[peer.uid], self._uid_msgs[peer.uid]
        self._total += delta

    # -- the way out ---------------------------------------------------------------------

    def admit(self, name: str, uid: int, data: bytes, future: asyncio.Future[None] | None) -> None:
        """Send `data` (a reply to non-root `name`) now, later, or never."""
        peer = self._peers.get(name)
        if peer is None:
            peer = self._peers[name] = _Peer(uid)
        if not peer.held and self._fits(peer, len(data)):
            self._send(name, peer, data, future)
            return
        # A connection within its own window (it reads; only its uid's budget is spent,
        # by other connections) always gets its place in the queue, so it is never starved.
        held = self._uid_held.get(uid, 0)
        if (len(peer.held) < HELD_MAX and peer.held_bytes + len(data) <= PEER_HELD_BYTES
                and (held + len(data) <= UID_HELD_BYTES or not self._over_own_window(peer))):
            peer.held.append((data, future))
            peer.held_bytes += len(data)
            self._uid_held[uid] = held + len(data)
            self._maybe_ping(name, peer, force=True)
            return
        peer.dropped += 1
        self.dropped += 1
        if peer.dropped == 1:
            log.warning("%s (uid %d) does not read its replies; dropping them until it does",
                        name, uid)
        if future is not None and not future.done():
            future.set_result(None)

    def _send(self, name: str, peer: _Peer, data: bytes,
              future: asyncio.Future[None] | None) -> None:
        peer.sent += len(data)
        peer.sent_msgs += 1
        self._account(peer, len(data), 1)
        self._write(data, future)
        self._maybe_ping(name, peer)

    def _maybe_ping(self, name: str, peer: _Peer, force: bool = False) -> None:
        if peer.ping_mark is not None or not peer.outstanding_msgs:
            return
        if (not force and peer.outstanding <= WINDOW // 2
                and peer.outstanding_msgs < WINDOW_MESSAGES // 2):
            return
        if (self._pings.get(peer.uid, 0) >= UID_PINGS
                or sum(self._pings.values()) >= TOTAL_PINGS):
            self._waiting_for_ping[name] = None  # pinged when a ping slot frees
            return
        self._waiting_for_ping.pop(name, None)
        mark = peer.ping_mark = (peer.sent, peer.sent_msgs)
        self._pings[peer.uid] = self._pings.get(peer.uid, 0) + 1

        def answered(ok: bool) -> None:
            self._pings[peer.uid] -= 1
            if not self._pings[peer.uid]:
                del self._pings[peer.uid]
            self._ping_waiting()
            if self._peers.get(name) is not peer:
                return  # forgotten meanwhile
            peer.ping_mark = None
            if ok:
                self._confirm(name, peer, mark)
            elif peer.held:
                # No answer from the peer itself (the bus refused or gave up): try again
                # later, never at once (a refusal comes back at once: that would spin).
                asyncio.get_running_loop().call_later(PING_RETRY, self._retry_ping, name)

        self._ping(name, answered)

    def _ping_waiting(self) -> None:
        """A ping slot freed: ping the connections that waited for one."""
        for name in list(self._waiting_for_ping):
            peer = self._peers.get(name)
            if peer is None:
                self._waiting_for_ping.pop(name, None)
            elif self._pings.get(peer.uid, 0) < UID_PINGS:
                self._maybe_ping(name, peer, force=True)
            if sum(self._pings.values()) >= TOTAL_PINGS:
                return

    def _retry_ping(self, name: str) -> None:
        peer = self._peers.get(name)
        if peer is not None and peer.held:
            self._maybe_ping(name, peer, force=True)

    def _confirm(self, name: str, peer: _Peer, mark: tuple[int, int]) -> None:
        sent, sent_msgs = mark
        freed, freed_msgs = sent - peer.confirmed, sent_msgs - peer.confirmed_msgs
        if freed_msgs > 0:
            peer.confirmed, peer.confirmed_msgs = sent, sent_msgs
            self._account(peer, -freed, -freed_msgs)
        self._release_all()
        self._maybe_ping(name, peer, force=bool(peer.held))

    def _release_all(self) -> None:
        """Send held replies that fit now, each caller's in order."""
        for name, peer in list(self._peers.items()):
            while peer.held and self._fits(peer, len(peer.held[0][0])):
                data, future = peer.held.popleft()
                peer.held_bytes -= len(data)
                self._uid_held[peer.uid] -= len(data)
                self._send(name, peer, data, future)
            if not self._uid_held.get(peer.uid, 1):
                del self._uid_held[peer.uid]

    def forget(self, name: str) -> None:
        """The peer has gone: what it did not read is freed by the bus, and here."""
        self._waiting_for_ping.pop(name, None)
        peer = self._peers.pop(name, None)
        if peer is None:
            return
        self._account(peer, -peer.outstanding, -peer.outstanding_msgs)
        for _, future in peer.held:
            if future is not None and not future.done():
                future.set_result(None)
        if peer.held_bytes:
            self._uid_held[peer.uid] -= peer.held_bytes
            if not self._uid_held[peer.uid]:
                del self._uid_held[peer.uid]
        peer.held.clear()
        self._release_all()
