"""The tests' one way to wait for work done elsewhere (tests/waiting.py)."""

from __future__ import annotations

import itertools

import pytest

from tests.waiting import DETAILS_CHARS, wait_until


def test_returns_the_first_truthy_value_without_waiting_out_the_timeout():
    calls = itertools.count(1)
    assert wait_until(lambda: (n := next(calls)) >= 3 and n, "three calls", 5) == 3


def test_a_timeout_fails_naming_what_the_last_value_and_the_end_of_the_details():
    log = "early line\n" + "x" * DETAILS_CHARS + "\nthe last line"
    with pytest.raises(pytest.fail.Exception) as failed:
        wait_until(lambda: [], "the receiver's request", 0.05, details=lambda: log)
    message = str(failed.value)
    assert message.startswith("the receiver's request: not within 0.05 s (last [])")
    assert message.endswith("the last line") and "early line" not in message
