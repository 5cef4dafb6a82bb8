"""Working-time arithmetic: across nights, weekends, a holiday and DST in both directions."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.timekeeping.business_time import add_working_time, working_time_between

UTC = dt.UTC
NY = "America/New_York"


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


OFFICE = {
    "days": [{"weekday": d, "intervals": [{"start": "09:00", "end": "17:00"}]} for d in range(5)]
}
NIGHT_SHIFT = {  # 01:00-03:00 every day: holds both New York DST changes
    "days": [{"weekday": d, "intervals": [{"start": "01:00", "end": "03:00"}]} for d in range(7)]
}


@pytest.mark.parametrize(
    ("schedule", "tz", "start", "minutes", "due"),
    [
        # no hours set: always open, plain arithmetic
        (None, "UTC", at(2026, 3, 6, 22, 0), 90, at(2026, 3, 6, 23, 30)),
        # inside an interval
        (OFFICE, "UTC", at(2026, 3, 2, 10, 0), 60, at(2026, 3, 2, 11, 0)),
        # Friday 16:50 + 30 working minutes = Monday 09:20
        (OFFICE, "UTC", at(2026, 3, 6, 16, 50), 30, at(2026, 3, 9, 9, 20)),
        # started while closed (Saturday): the clock starts Monday 09:00
        (OFFICE, "UTC", at(2026, 3, 7, 12, 0), 15, at(2026, 3, 9, 9, 15)),
        # a whole working day spans to the next morning
        (OFFICE, "UTC", at(2026, 3, 2, 13, 0), 8 * 60, at(2026, 3, 3, 13, 0)),
        # New York, spring forward (8 March 2026): 01:00-03:00 local has 1 real hour
        (NIGHT_SHIFT, NY, at(2026, 3, 8, 6, 0), 90, at(2026, 3, 9, 5, 30)),
        # New York, fall back (1 November 2026): 01:00-03:00 local has 3 real hours
        (NIGHT_SHIFT, NY, at(2026, 11, 1, 5, 0), 150, at(2026, 11, 1, 7, 30)),
    ],
)
def test_add_working_time(schedule, tz, start, minutes, due):
    assert add_working_time(schedule, tz, start, dt.timedelta(minutes=minutes)) == due


def test_a_holiday_is_skipped():
    xmas = {**OFFICE, "holidays": [{"date": "2026-12-25", "name": "Christmas"}]}
    # Thursday 24 Dec 16:00 + 2 h: Friday is a holiday, so Monday 28 Dec 10:00
    due = add_working_time(xmas, "UTC", at(2026, 12, 24, 16, 0), dt.timedelta(hours=2))
    assert due == at(2026, 12, 28, 10, 0)


def test_a_schedule_that_never_opens_has_no_due_time():
    closed = {"days": []}
    assert add_working_time(closed, "UTC", at(2026, 1, 1), dt.timedelta(minutes=1)) is None


@pytest.mark.parametrize(
    ("schedule", "tz", "start", "end", "minutes"),
    [
        (None, "UTC", at(2026, 3, 6, 10), at(2026, 3, 6, 12), 120),
        (OFFICE, "UTC", at(2026, 3, 6, 16), at(2026, 3, 9, 10), 120),
        (NIGHT_SHIFT, NY, at(2026, 3, 8, 0), at(2026, 3, 9, 0), 60),
        (NIGHT_SHIFT, NY, at(2026, 11, 1, 0), at(2026, 11, 2, 0), 180),
        (OFFICE, "UTC", at(2026, 3, 6, 12), at(2026, 3, 6, 11), 0),
    ],
)
def test_working_time_between(schedule, tz, start, end, minutes):
    assert working_time_between(schedule, tz, start, end) == dt.timedelta(minutes=minutes)


def test_adding_then_measuring_gives_the_same_duration():
    start = at(2026, 10, 30, 15, 17)
    for minutes in (1, 59, 61, 600, 3000):
        for schedule, tz in ((OFFICE, "Europe/Berlin"), (NIGHT_SHIFT, NY)):
            due = add_working_time(schedule, tz, start, dt.timedelta(minutes=minutes))
            assert working_time_between(schedule, tz, start, due) == dt.timedelta(minutes=minutes)
