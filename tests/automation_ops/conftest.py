"""Fixtures for the automation operations tests: rules over HTTP, a movable clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from shared.automation import clock

RULES = "/api/automation/rules"
CONTROL = "/api/automation/control"


def ts(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class Clock:
    """The instant automation judges by, moved by the test (the worker sees it too)."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def move_to(self, instant: dt.datetime) -> None:
        self.now = instant

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def moved_clock() -> Iterator[Clock]:
    fake = Clock()
    with clock.travel(fake):
        yield fake


@pytest.fixture
def ws(worker, workspace):
    """A workspace with the in-process worker running."""
    return workspace
