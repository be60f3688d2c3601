"""Fixtures for tests against a real `systemd --user` manager (see harness.py).

pytest here has no asyncio plugin: `async def` tests run in a fresh event loop each, with
a hard time limit, and fail if they leave asyncio tasks behind.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from dbus_fast.aio.message_bus import MessageBus
from um_harness import UserManager, running_user_manager

from pxhostd.systemd import Systemd

#: Upper bound for one async test; a hung test fails instead of hanging the run.
TEST_TIME_LIMIT = 90.0


@pytest.fixture(scope="session")
def user_manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserManager]:
    """One real user manager for the session; it fails (never skips) if it cannot start."""
    with running_user_manager(tmp_path_factory.mktemp("um")) as manager:
        yield manager


@asynccontextmanager
async def systemd_client(manager: UserManager) -> AsyncIterator[Systemd]:
    """A dbus-fast MessageBus on the manager's bus and a Systemd client on it."""
    bus = await MessageBus(bus_address=manager.bus_address).connect()
    try:
        async with await Systemd.connect(bus) as systemd:
            yield systemd
    finally:
        bus.disconnect()
        await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]


class Units:
    """Unit files for one test, named after it so tests never share a unit."""

    def __init__(self, manager: UserManager, stem: str) -> None:
        self.manager = manager
        self.stem = stem

    def name(self, suffix: str, kind: str = "service") -> str:
        return f"{self.stem}-{suffix}.{kind}"

    def write(self, name: str, text: str) -> Path:
        return self.manager.write_unit(name, text)

    def path(self, name: str) -> Path:
        return self.manager.unit_dir / name

    def script(self, name: str, text: str) -> Path:
        path = self.manager.base / "scripts" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return path


@pytest.fixture
def units(user_manager: UserManager, request: pytest.FixtureRequest) -> Units:
    stem = "t-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60]
    return Units(user_manager, stem)


def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(_run_bounded(func, kwargs))
    return True


async def _run_bounded(
    func: Callable[..., Coroutine[Any, Any, None]], kwargs: dict[str, Any]
) -> None:
    async with asyncio.timeout(TEST_TIME_LIMIT):
        await func(**kwargs)
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in left:
        task.cancel()
    assert not left, f"test left asyncio tasks running: {left}"
