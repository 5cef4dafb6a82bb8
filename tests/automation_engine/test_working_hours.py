"""Working hours: validation, open/closed across time zones, DST and holidays."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from shared.timekeeping.working_hours import (
    is_open,
    next_change,
    time_facts,
    validate_schedule,
    validate_timezone,
)
from tests.automation_engine.support import codes

UTC = dt.UTC
NY = "America/New_York"
JAKARTA = "Asia/Jakarta"


def weekdays(start="09:00", end="17:00", days=range(5)):
    return {"days": [{"weekday": d, "intervals": [{"start": start, "end": end}]} for d in days]}


OFFICE = weekdays()
OFFICE_XMAS = {**OFFICE, "holidays": [{"date": "2026-12-25", "name": "Christmas"}]}
SPLIT = {
    "days": [
        {
            "weekday": 0,
            "intervals": [{"start": "08:00", "end": "12:00"}, {"start": "13:00", "end": "17:30"}],
        }
    ]
}
NIGHT = {  # Monday 22:00 to Tuesday 06:00, split at midnight
    "days": [
        {"weekday": 0, "intervals": [{"start": "22:00", "end": "24:00"}]},
        {"weekday": 1, "intervals": [{"start": "00:00", "end": "06:00"}]},
    ]
}
EARLY_SUNDAY = {"days": [{"weekday": 6, "intervals": [{"start": "02:30", "end": "04:00"}]}]}
SUNDAY_ONE_TO_TWO = {"days": [{"weekday": 6, "intervals": [{"start": "01:00", "end": "02:00"}]}]}
ALWAYS = weekdays("00:00", "24:00", range(7))
ALWAYS_XMAS = {**ALWAYS, "holidays": [{"date": "2026-12-25", "name": "Christmas"}]}


def utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


def local(tz, *args, fold=0):
    return dt.datetime(*args, tzinfo=ZoneInfo(tz), fold=fold).astimezone(UTC)


@pytest.mark.parametrize(
    ("schedule", "tz", "at", "expected"),
    [
        # New York, winter (UTC-5): Monday 2026-01-05
        (OFFICE, NY, local(NY, 2026, 1, 5, 9, 0), True),
        (OFFICE, NY, local(NY, 2026, 1, 5, 8, 59, 59), False),
        (OFFICE, NY, local(NY, 2026, 1, 5, 16, 59, 59), True),
        (OFFICE, NY, local(NY, 2026, 1, 5, 17, 0), False),
        (OFFICE, NY, utc(2026, 1, 5, 14, 0), True),  # 09:00 EST
        (OFFICE, NY, utc(2026, 1, 5, 13, 59), False),
        # ... and summer (UTC-4): the wall-clock hours stay, the UTC ones move
        (OFFICE, NY, utc(2026, 7, 6, 13, 0), True),  # 09:00 EDT
        (OFFICE, NY, utc(2026, 7, 6, 12, 59), False),
        (OFFICE, NY, utc(2026, 7, 6, 21, 0), False),  # 17:00 EDT
        # weekend
        (OFFICE, NY, local(NY, 2026, 1, 10, 12, 0), False),
        (OFFICE, NY, local(NY, 2026, 1, 11, 12, 0), False),
        # Jakarta (UTC+7, no DST): Monday 09:00 WIB is Monday 02:00 UTC
        (OFFICE, JAKARTA, utc(2026, 1, 5, 2, 0), True),
        (OFFICE, JAKARTA, utc(2026, 1, 5, 1, 59), False),
        (OFFICE, JAKARTA, utc(2026, 1, 5, 10, 0), False),  # 17:00 WIB
        # Sunday 23:00 UTC is already Monday 06:00 in Jakarta: closed until 09:00
        (OFFICE, JAKARTA, utc(2026, 1, 4, 23, 0), False),
        (OFFICE, JAKARTA, utc(2026, 1, 5, 3, 0), True),
        # Friday 20:00 UTC is Saturday 03:00 in Jakarta
        (weekdays("00:00", "24:00", [5]), JAKARTA, utc(2026, 1, 9, 20, 0), True),
        # holidays close the whole local date
        (OFFICE_XMAS, NY, local(NY, 2026, 12, 25, 12, 0), False),
        (OFFICE_XMAS, NY, local(NY, 2026, 12, 24, 12, 0), True),
        (ALWAYS_XMAS, NY, utc(2026, 12, 26, 4, 59), False),  # still the 25th in New York
        (ALWAYS_XMAS, NY, utc(2026, 12, 26, 5, 0), True),  # 00:00 on the 26th
        (ALWAYS_XMAS, NY, utc(2026, 12, 25, 4, 59), True),  # 23:59 on the 24th
        (ALWAYS_XMAS, JAKARTA, utc(2026, 12, 24, 17, 0), False),  # 00:00 on the 25th in Jakarta
        (ALWAYS_XMAS, JAKARTA, utc(2026, 12, 24, 16, 59), True),  # 23:59 on the 24th
        (ALWAYS_XMAS, JAKARTA, utc(2026, 12, 25, 17, 0), True),  # 00:00 on the 26th
        # split and overnight intervals
        (SPLIT, NY, local(NY, 2026, 1, 5, 12, 30), False),
        (SPLIT, NY, local(NY, 2026, 1, 5, 13, 0), True),
        (SPLIT, NY, local(NY, 2026, 1, 5, 17, 29), True),
        (NIGHT, NY, local(NY, 2026, 1, 5, 23, 0), True),
        (NIGHT, NY, local(NY, 2026, 1, 6, 0, 0), True),
        (NIGHT, NY, local(NY, 2026, 1, 6, 5, 59), True),
        (NIGHT, NY, local(NY, 2026, 1, 6, 6, 0), False),
        (NIGHT, NY, local(NY, 2026, 1, 6, 23, 0), False),
        # DST spring forward (2026-03-08, 02:00 EST -> 03:00 EDT)
        (EARLY_SUNDAY, NY, utc(2026, 3, 8, 6, 59), False),  # 01:59 EST
        (EARLY_SUNDAY, NY, utc(2026, 3, 8, 7, 0), True),  # 03:00 EDT
        (EARLY_SUNDAY, NY, utc(2026, 3, 8, 7, 59), True),
        (EARLY_SUNDAY, NY, utc(2026, 3, 8, 8, 0), False),  # 04:00 EDT
        # DST fall back (2026-11-01, 02:00 EDT -> 01:00 EST): 01:00-02:00 happens twice
        (SUNDAY_ONE_TO_TWO, NY, utc(2026, 11, 1, 4, 59), False),
        (SUNDAY_ONE_TO_TWO, NY, utc(2026, 11, 1, 5, 0), True),  # 01:00 EDT
        (SUNDAY_ONE_TO_TWO, NY, utc(2026, 11, 1, 6, 30), True),  # 01:30 EST
        (SUNDAY_ONE_TO_TWO, NY, utc(2026, 11, 1, 7, 0), False),  # 02:00 EST
        # always / never
        (ALWAYS, NY, utc(2026, 3, 8, 7, 0), True),
        ({"days": []}, NY, utc(2026, 3, 8, 7, 0), False),
        ({"days": [{"weekday": 0, "intervals": []}]}, NY, local(NY, 2026, 1, 5, 12, 0), False),
        # a non-UTC aware input is the same instant
        (OFFICE, JAKARTA, dt.datetime(2026, 1, 5, 9, 0, tzinfo=ZoneInfo(JAKARTA)), True),
    ],
)
def test_is_open(schedule, tz, at, expected):
    assert validate_schedule(schedule) == []
    assert is_open(schedule, tz, at) is expected


@pytest.mark.parametrize(
    ("schedule", "tz", "at", "expected"),
    [
        (OFFICE, NY, local(NY, 2026, 1, 5, 8, 0), local(NY, 2026, 1, 5, 9, 0)),
        (OFFICE, NY, local(NY, 2026, 1, 5, 9, 0), local(NY, 2026, 1, 5, 17, 0)),
        (OFFICE, NY, local(NY, 2026, 1, 5, 12, 0), local(NY, 2026, 1, 5, 17, 0)),
        (OFFICE, NY, local(NY, 2026, 1, 9, 17, 0), local(NY, 2026, 1, 12, 9, 0)),  # weekend
        (OFFICE, JAKARTA, utc(2026, 1, 4, 23, 0), utc(2026, 1, 5, 2, 0)),
        # the next opening after a DST change is on the new offset
        (OFFICE, NY, local(NY, 2026, 3, 6, 18, 0), utc(2026, 3, 9, 13, 0)),
        (OFFICE, NY, local(NY, 2026, 10, 30, 18, 0), utc(2026, 11, 2, 14, 0)),
        # spring forward: opening at the skipped 02:30 happens at the jump
        (EARLY_SUNDAY, NY, utc(2026, 3, 8, 5, 0), utc(2026, 3, 8, 7, 0)),
        (EARLY_SUNDAY, NY, utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 8, 0)),
        # fall back: no change at the repeated 01:00, closes at 02:00 EST
        (SUNDAY_ONE_TO_TWO, NY, utc(2026, 11, 1, 5, 0), utc(2026, 11, 1, 7, 0)),
        (SUNDAY_ONE_TO_TWO, NY, utc(2026, 11, 1, 4, 0), utc(2026, 11, 1, 5, 0)),
        # midnight joins the two halves of an overnight shift
        (NIGHT, NY, local(NY, 2026, 1, 5, 23, 0), local(NY, 2026, 1, 6, 6, 0)),
        # a holiday skips a day
        (OFFICE_XMAS, NY, local(NY, 2026, 12, 24, 17, 0), local(NY, 2026, 12, 28, 9, 0)),
        (OFFICE_XMAS, NY, local(NY, 2026, 12, 24, 8, 0), local(NY, 2026, 12, 24, 9, 0)),
        # always open except a holiday: closes at its local midnight
        (
            {**ALWAYS, "holidays": [{"date": "2026-12-25", "name": "x"}]},
            JAKARTA,
            utc(2026, 12, 1, 0, 0),
            local(JAKARTA, 2026, 12, 25, 0, 0),
        ),
        (
            {**ALWAYS, "holidays": [{"date": "2028-02-29", "name": "far"}]},
            JAKARTA,
            utc(2026, 12, 1, 0, 0),
            local(JAKARTA, 2028, 2, 29, 0, 0),
        ),
        # never changes
        (ALWAYS, NY, utc(2026, 1, 1), None),
        ({"days": []}, NY, utc(2026, 1, 1), None),
        (
            {"days": [], "holidays": [{"date": "2026-02-01", "name": "x"}]},
            NY,
            utc(2026, 1, 1),
            None,
        ),
    ],
)
def test_next_change(schedule, tz, at, expected):
    assert validate_schedule(schedule) == []
    changed = next_change(schedule, tz, at)
    assert changed == expected
    if changed is not None:
        assert changed.tzinfo is not None
        before = is_open(schedule, tz, changed - dt.timedelta(seconds=1))
        assert is_open(schedule, tz, changed) is not before


def test_next_change_walks_a_year_consistently():
    """Every reported change flips the state, and nothing flips in between (sampled hourly)."""
    at = utc(2026, 1, 1)
    end = utc(2026, 12, 31)
    changes = []
    while at < end:
        at = next_change(OFFICE_XMAS, NY, at)
        changes.append(at)
    open_days = [
        day
        for day in (dt.date(2026, 1, 1) + dt.timedelta(days=n) for n in range(364))
        if day.weekday() < 5 and day != dt.date(2026, 12, 25)
    ]
    # An opening and a closing per open day up to Dec 30, then Dec 31's opening.
    assert len(changes) == 2 * len(open_days) + 1
    previous, state, change_index = utc(2026, 1, 1), is_open(OFFICE_XMAS, NY, utc(2026, 1, 1)), 0
    probe = previous
    while probe < utc(2026, 12, 30):
        probe += dt.timedelta(hours=1)
        while change_index < len(changes) and changes[change_index] <= probe:
            state = not state
            change_index += 1
        assert is_open(OFFICE_XMAS, NY, probe) is state


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="aware"):
        is_open(OFFICE, NY, dt.datetime(2026, 1, 5, 12, 0))


@pytest.mark.parametrize(
    ("at", "tz", "schedule", "expected"),
    [
        (utc(2026, 1, 5, 14, 0), NY, OFFICE, (True, "monday", 9)),
        (utc(2026, 1, 5, 13, 0), NY, OFFICE, (False, "monday", 8)),
        (utc(2026, 1, 4, 23, 0), JAKARTA, OFFICE, (False, "monday", 6)),
        (utc(2026, 1, 4, 23, 0), JAKARTA, None, (True, "monday", 6)),  # no schedule: open
        (utc(2026, 1, 4, 23, 0), "UTC", None, (True, "sunday", 23)),
        (utc(2026, 3, 8, 7, 0), NY, EARLY_SUNDAY, (True, "sunday", 3)),
        (utc(2026, 11, 1, 6, 30), NY, SUNDAY_ONE_TO_TWO, (True, "sunday", 1)),
    ],
)
def test_time_facts(at, tz, schedule, expected):
    facts = time_facts(at, tz, schedule)
    assert facts == dict(
        zip(("time.inside_working_hours", "time.weekday", "time.local_hour"), expected, strict=True)
    )


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("x", [("", "not_an_object")]),
        ({}, [("days", "not_a_list")]),
        ({"days": {}}, [("days", "not_a_list")]),
        ({"days": [], "holidays": {}}, [("holidays", "not_a_list")]),
        ({"days": [], "timezone": "UTC"}, [("timezone", "unknown_field")]),
        ({"days": ["monday"]}, [("days[0]", "not_an_object")]),
        ({"days": [{"weekday": 7, "intervals": []}]}, [("days[0].weekday", "invalid_weekday")]),
        ({"days": [{"weekday": -1, "intervals": []}]}, [("days[0].weekday", "invalid_weekday")]),
        ({"days": [{"weekday": True, "intervals": []}]}, [("days[0].weekday", "invalid_weekday")]),
        ({"days": [{"weekday": "0", "intervals": []}]}, [("days[0].weekday", "invalid_weekday")]),
        (
            {"days": [{"weekday": 1, "intervals": []}, {"weekday": 1, "intervals": []}]},
            [("days[1].weekday", "duplicate_weekday")],
        ),
        ({"days": [{"weekday": 1}]}, [("days[0].intervals", "not_a_list")]),
        (
            {"days": [{"weekday": 1, "intervals": [{"start": "9:00", "end": "17:00"}]}]},
            [("days[0].intervals[0].start", "invalid_time")],
        ),
        (
            {"days": [{"weekday": 1, "intervals": [{"start": "09:00", "end": "24:01"}]}]},
            [("days[0].intervals[0].end", "invalid_time")],
        ),
        (
            {"days": [{"weekday": 1, "intervals": [{"start": "24:00", "end": "24:00"}]}]},
            [("days[0].intervals[0].start", "invalid_time")],
        ),
        (
            {"days": [{"weekday": 1, "intervals": [{"start": "09:60", "end": "10:00"}]}]},
            [("days[0].intervals[0].start", "invalid_time")],
        ),
        (
            {"days": [{"weekday": 1, "intervals": [{"start": 9, "end": None}]}]},
            [
                ("days[0].intervals[0].start", "invalid_time"),
                ("days[0].intervals[0].end", "invalid_time"),
            ],
        ),
        (
            {"days": [{"weekday": 1, "intervals": [{"start": "22:00", "end": "06:00"}]}]},
            [("days[0].intervals[0].end", "invalid_interval")],
        ),
        (
            {"days": [{"weekday": 1, "intervals": [{"start": "09:00", "end": "09:00"}]}]},
            [("days[0].intervals[0].end", "invalid_interval")],
        ),
        (
            {
                "days": [
                    {
                        "weekday": 1,
                        "intervals": [
                            {"start": "09:00", "end": "12:00"},
                            {"start": "11:59", "end": "13:00"},
                        ],
                    }
                ]
            },
            [("days[0].intervals[1]", "overlapping_intervals")],
        ),
        (
            {
                "days": [
                    {"weekday": 1, "intervals": [{"start": "09:00", "end": "10:00", "tz": "x"}]}
                ]
            },
            [("days[0].intervals[0].tz", "unknown_field")],
        ),
        (
            {
                "days": [
                    {
                        "weekday": 1,
                        "intervals": [
                            {"start": f"{h:02}:00", "end": f"{h:02}:30"} for h in range(9)
                        ],
                    }
                ]
            },
            [("days[0].intervals", "too_many_intervals")],
        ),
        (
            {"days": [], "holidays": [{"date": "2026-02-30"}]},
            [("holidays[0].date", "invalid_date")],
        ),
        ({"days": [], "holidays": [{"date": "2026-2-3"}]}, [("holidays[0].date", "invalid_date")]),
        ({"days": [], "holidays": [{"name": "x"}]}, [("holidays[0].date", "invalid_date")]),
        (
            {"days": [], "holidays": [{"date": "2026-12-25"}, {"date": "2026-12-25"}]},
            [("holidays[1].date", "duplicate_holiday")],
        ),
        (
            {"days": [], "holidays": [{"date": "2026-12-25", "name": 5}]},
            [("holidays[0].name", "wrong_value_type")],
        ),
        ({"days": [], "holidays": ["2026-12-25"]}, [("holidays[0]", "not_an_object")]),
    ],
)
def test_refused_schedule(schedule, expected):
    assert codes(validate_schedule(schedule)) == expected


@pytest.mark.parametrize(
    "schedule",
    [
        OFFICE,
        OFFICE_XMAS,
        SPLIT,
        NIGHT,
        ALWAYS,
        {"days": []},
        {
            "days": [
                {
                    "weekday": 0,
                    "intervals": [
                        {"start": "09:00", "end": "12:00"},
                        {"start": "12:00", "end": "13:00"},
                    ],
                }
            ]
        },
    ],
)
def test_accepted_schedule(schedule):
    assert validate_schedule(schedule) == []


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("Asia/Jakarta", True),
        ("America/New_York", True),
        ("UTC", True),
        ("Mars/Olympus", False),
        ("", False),
        (None, False),
        ("../etc/passwd", False),
        ("US/Eastern", True),  # a backward link, still a place
        ("localtime", False),  # the host's own zone: another server, another answer
        ("right/UTC", False),  # counts leap seconds: 27 s from UTC
        ("posixrules", False),
        ("Factory", False),
    ],
)
def test_validate_timezone(name, ok):
    assert (validate_timezone(name) == []) is ok


def _changes_between(schedule, tz, start, end):
    changes, at = [], start
    while (at := next_change(schedule, tz, at)) is not None and at < end:
        changes.append(at)
    return changes


MIXED = {
    "days": [
        {"weekday": 0, "intervals": [{"start": "00:00", "end": "24:00"}]},
        {
            "weekday": 1,
            "intervals": [{"start": "00:00", "end": "02:30"}, {"start": "09:15", "end": "17:45"}],
        },
        {
            "weekday": 2,
            "intervals": [{"start": "01:30", "end": "02:15"}, {"start": "22:00", "end": "24:00"}],
        },
        {"weekday": 3, "intervals": [{"start": "00:00", "end": "24:00"}]},
        {"weekday": 4, "intervals": [{"start": "00:00", "end": "24:00"}]},
        {"weekday": 6, "intervals": [{"start": "01:00", "end": "03:00"}]},
    ],
    "holidays": [{"date": "2026-04-02", "name": "x"}, {"date": "2026-10-08", "name": "y"}],
}


@pytest.mark.parametrize(
    ("tz", "start"),
    [
        (NY, utc(2026, 3, 1)),  # spring forward on Sunday March 8
        (NY, utc(2026, 10, 25)),  # fall back on Sunday November 1
        ("Europe/London", utc(2026, 3, 22)),  # forward on Sunday March 29, 01:00
        ("Australia/Lord_Howe", utc(2026, 3, 29)),  # back 30 minutes on April 5
        ("Australia/Lord_Howe", utc(2026, 9, 27)),  # forward 30 minutes on October 4
        (JAKARTA, utc(2026, 3, 29)),
    ],
)
def test_next_change_agrees_with_is_open_through_dst(tz, start):
    """Sampled every 5 minutes for three weeks: the state flips exactly at reported changes."""
    assert validate_schedule(MIXED) == []
    end = start + dt.timedelta(days=21)
    changes = _changes_between(MIXED, tz, start, end + dt.timedelta(days=1))
    assert changes == sorted(set(changes)) and len(changes) > 20
    state, pending = is_open(MIXED, tz, start), list(changes)
    probe = start
    while probe < end:
        probe += dt.timedelta(minutes=5)
        while pending and pending[0] <= probe:
            state = not state
            pending.pop(0)
        assert is_open(MIXED, tz, probe) is state, probe
    for change in changes:  # and each change is an instant where the state really flips
        assert is_open(MIXED, tz, change) is not is_open(
            MIXED, tz, change - dt.timedelta(seconds=1)
        )
