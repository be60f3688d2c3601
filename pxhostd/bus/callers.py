"""Who is calling: the uid behind each bus connection, asked once and forgotten when it goes.

The bus daemon knows every peer's uid (`org.freedesktop.DBus.GetConnectionUnixUser`); a
peer cannot lie about it. The answer is cached per unique name (unique names are never
reused) and dropped when the bus announces that the name has gone (`NameOwnerChanged`
with an empty new owner), so the cache holds only live connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from dbus_fast import Message, MessageType

log = logging.getLogger(__name__)

#: A bound for the cache even if NameOwnerChanged were missed (the bus allows 256
#: connections per user; this is many users' worth).
MAX_CALLERS = 8192
ROOT = 0
#: Stands for a caller whose uid the bus did not tell (it refused the lookup): such a caller
#: gets what any non-root caller gets.
UNKNOWN = -1

NO_OWNER = "org.freedesktop.DBus.Error.NameHasNoOwner"

CallFn = Callable[[Message, Callable[[Message | None, Exception | None], None]], None]


class Callers:
    def __init__(self, call: CallFn) -> None:
        self._call = call
        self._uids: dict[str, asyncio.Future[int | None]] = {}

    def __len__(self) -> int:
        return len(self._uids)

    def uid(self, name: str) -> asyncio.Future[int | None]:
        """The uid of `name`; None once it is known that the peer has gone; UNKNOWN if the
        bus would not say (asked again next time)."""
        future = self._uids.get(name)
        if future is not None:
            return future
        future = asyncio.get_running_loop().create_future()
        self._uids[name] = future
        while len(self._uids) > MAX_CALLERS:
            self._uids.pop(next(iter(self._uids)))

        def answered(reply: Message | None, err: Exception | None) -> None:
            uid: int | None = None
            if reply is not None and reply.message_type == MessageType.METHOD_RETURN:
                uid = int(reply.body[0])
            else:
                self._uids.pop(name, None)  # ask again next time
                if reply is None or reply.error_name != NO_OWNER:
                    uid = UNKNOWN
                    log.warning("the bus did not tell the uid of %s (%s)", name,
                                reply.error_name if reply is not None else err)
            if not future.done():
                future.set_result(uid)

        self._call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="GetConnectionUnixUser",
                signature="s",
                body=[name],
            ),
            answered,
        )
        return future

    def known(self, name: str) -> bool:
        return name in self._uids

    def forget(self, name: str) -> None:
        future = self._uids.pop(name, None)
        if future is not None and not future.done():
            future.set_result(None)
