"""The one place where exceptions become D-Bus error replies.

A deliberate PxError keeps its name (`com.portworx.pxhostd1.Error.<Name>`) and message; any
other exception is logged here with its traceback and answered as `Error.Failed` with a
short text, so a traceback never crosses the bus.
"""

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from dbus_fast import DBusError

from pxhostd.errors import ERROR_PREFIX, PxError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def to_dbus_error(exc: BaseException) -> DBusError:
    if isinstance(exc, DBusError):
        return exc
    if isinstance(exc, PxError):
        return DBusError(exc.dbus_name, str(exc) or exc.name)
    log.error("internal error while serving a D-Bus call", exc_info=exc)
    return DBusError(ERROR_PREFIX + "Failed", f"internal error ({type(exc).__name__})")


def dbus_errors(fn: F) -> F:
    """Wrap an exported method (sync or async) so every failure is a named D-Bus error."""
    import asyncio

    if asyncio.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                raise to_dbus_error(exc) from None

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise to_dbus_error(exc) from None

    return wrapper  # type: ignore[return-value]


AsyncFn = Callable[..., Awaitable[Any]]
