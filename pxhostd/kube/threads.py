"""Run a blocking client call off the event loop, in a daemon thread.

The Kubernetes client is synchronous (urllib3). A long watch must never hold the loop (the
health endpoint answers throughout) nor hold up exit: asyncio's default executor is joined
at shutdown, so each call gets its own daemon thread instead, and a pod told to stop simply
abandons a call still waiting on the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def set_result(value: T) -> None:
        if not future.done():
            future.set_result(value)

    def set_exception(exc: BaseException) -> None:
        if not future.done():
            future.set_exception(exc)

    def body() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the awaiting task
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(set_exception, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(set_result, result)

    threading.Thread(target=body, name=getattr(fn, "__name__", "kube-call"),
                     daemon=True).start()
    return await future
