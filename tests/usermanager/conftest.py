"""Fixtures for tests against a real `systemd --user` manager (see um_harness.py).

pytest here has no asyncio plugin: `async def` tests run in a fresh event loop each, with
a hard time limit, and fail if they leave asyncio tasks behind.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from um_harness import UserManager, running_user_manager
from um_helpers import Units

#: Upper bound for one async test; a hung test fails instead of hanging the run.
TEST_TIME_LIMIT = 90.0


@pytest.fixture(scope="session")
def user_manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserManager]:
    """One real user manager for the session; it fails (never skips) if it cannot start."""
    with running_user_manager(tmp_path_factory.mktemp("um")) as manager:
        yield manager


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
