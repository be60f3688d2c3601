"""Remember each test's reports so fixtures can save diagnostics when a test failed."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(hookwrapper=True)  # type: ignore[untyped-decorator]
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    item.stash.setdefault(REPORTS, {})[str(report.when)] = report


def item_failed(item: pytest.Item) -> bool:
    """True if the test's set-up or body failed (called from a fixture's teardown)."""
    reports = item.stash.get(REPORTS, {})
    return any(r.failed for r in reports.values())
