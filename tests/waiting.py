"""Waiting in a test for what a worker, the scheduler or a peer does in its own time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

#: How much of the end of ``details()`` a failure shows (a log's last lines say most).
DETAILS_CHARS = 4000


def wait_until(
    predicate: Callable[[], T],
    what: str = "condition",
    timeout: float = 15.0,
    *,
    interval: float = 0.02,
    details: Callable[[], str] | None = None,
) -> T:
    """Return the first truthy ``predicate()``; fail the test after ``timeout`` seconds.

    The failure names ``what`` and the last value seen, then the end of what
    ``details()`` tells (a process's log, say), so a timeout in CI says what was missing.
    Tests poll instead of sleeping a fixed time: they finish as soon as the work is
    done, and a slow machine gets the whole ``timeout`` before one fails.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n--- details ---\n{details()[-DETAILS_CHARS:]}" if details else ""
            pytest.fail(f"{what}: not within {timeout} s (last {value!r}){extra}")
        time.sleep(interval)
