"""``next_change`` against brute force, over many random schedules a tenant can save."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from zoneinfo import ZoneInfo

import pytest

from shared.timekeeping.working_hours import next_change, validate_schedule

UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)
#: Offsets and DST changes on whole minutes, none at midnight (the day scan below assumes it).
ZONES = (
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Asia/Jakarta",
)
#: ... and zones whose clocks change at midnight (the day skipped or repeated starts late).
MIDNIGHT_ZONES = ("America/Santiago", "America/Havana", "Asia/Beirut")
#: Instants around DST changes of those zones, and a plain week.
STARTS = (
    dt.datetime(2026, 3, 6, tzinfo=UTC),
    dt.datetime(2026, 3, 27, tzinfo=UTC),
    dt.datetime(2026, 4, 3, tzinfo=UTC),
    dt.datetime(2026, 9, 3, tzinfo=UTC),
    dt.datetime(2026, 10, 2, tzinfo=UTC),
    dt.datetime(2026, 10, 23, tzinfo=UTC),
    dt.datetime(2026, 10, 30, tzinfo=UTC),
    dt.datetime(2026, 6, 10, tzinfo=UTC),
)


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02}:{minute % 60:02}"


def _random_day(rng: random.Random) -> list[dict[str, str]]:
    """Up to 8 intervals, often touching (``12:00``-``13:00`` + ``13:00``-...) or whole."""
    if rng.random() < 0.3:
        cuts = sorted(rng.sample(range(15, 1440, 15), rng.randint(0, 7)))
        edges = [0, *cuts, 1440]
        return [{"start": _hhmm(a), "end": _hhmm(b)} for a, b in itertools.pairwise(edges)]
    edges = sorted(rng.sample(range(0, 1441, 30), 2 * rng.randint(1, 4)))
    intervals, index = [], 0
    while index < len(edges):
        start, end = edges[index], edges[index + 1]
        if intervals and rng.random() < 0.4:  # touch the previous one
            start = _minutes(intervals[-1]["end"])
        if start < end:
            intervals.append({"start": _hhmm(start), "end": _hhmm(end)})
        index += 2
    return intervals


def _minutes(text: str) -> int:
    return int(text[:2]) * 60 + int(text[3:])


def _oracle(schedule):
    """Open or not at an instant, straight from the schedule body (no code shared with
    the module under test)."""
    holidays = {dt.date.fromisoformat(h["date"]) for h in schedule.get("holidays", [])}
    spans = {
        day["weekday"]: [(_minutes(i["start"]), _minutes(i["end"])) for i in day["intervals"]]
        for day in schedule["days"]
    }

    def is_open(zone, at: dt.datetime) -> bool:
        local = at.astimezone(zone)
        if local.date() in holidays:
            return False
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in spans.get(local.weekday(), ()))

    return is_open


def _brute_force(schedule, zone, at: dt.datetime, limit: dt.timedelta) -> dt.datetime | None:
    """The first whole UTC minute after ``at`` whose state differs (every boundary and
    offset change of :data:`ZONES` is on one), or None within ``limit``."""
    is_open = _oracle(schedule)
    state = is_open(zone, at)
    probe = at.replace(second=0, microsecond=0) + MINUTE
    while probe <= at + limit:
        if is_open(zone, probe) is not state:
            return probe
        probe += MINUTE
    return None


@pytest.mark.parametrize("seed", range(12))
def test_next_change_matches_a_minute_scan(seed):
    rng = random.Random(seed)
    for _ in range(40):
        days = rng.sample(range(7), rng.randint(1, 7))
        start = rng.choice(STARTS) + dt.timedelta(minutes=rng.randrange(7 * 1440))
        holidays = {
            (start + dt.timedelta(days=rng.randint(-2, 16))).date().isoformat()
            for _ in range(rng.randint(0, 6))
        }
        schedule = {
            "days": [{"weekday": d, "intervals": _random_day(rng)} for d in days],
            "holidays": [{"date": h, "name": ""} for h in sorted(holidays)],
        }
        assert validate_schedule(schedule) == [], schedule
        tz = rng.choice(ZONES + MIDNIGHT_ZONES)
        limit = dt.timedelta(days=24)
        expected = _brute_force(schedule, ZoneInfo(tz), start, limit)
        got = next_change(schedule, tz, start)
        if expected is None:
            assert got is None or got > start + limit, (schedule, tz, start, got)
        else:
            assert got == expected, (schedule, tz, start)


def _always_open(rng: random.Random) -> list[dict]:
    """Every day open from midnight to midnight, in one piece or several touching ones."""
    days = []
    for weekday in range(7):
        cuts = sorted(rng.sample(range(30, 1440, 30), rng.choice((0, 0, 1, 2, 7))))
        edges = [0, *cuts, 1440]
        intervals = [{"start": _hhmm(a), "end": _hhmm(b)} for a, b in itertools.pairwise(edges)]
        days.append({"weekday": weekday, "intervals": intervals})
    return days


@pytest.mark.parametrize("seed", range(6))
def test_next_change_of_always_open_hours_matches_a_day_scan(seed):
    """Always open but on holidays, some decades away: the change is the first local
    midnight where "holiday" flips, found here by walking the dates one by one."""
    rng = random.Random(seed)
    for _ in range(10):
        start = dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(
            minutes=rng.randrange(366 * 1440)
        )
        first = start.date() + dt.timedelta(days=rng.choice((-1, 0, 1, 40, 4000, 30000)))
        holidays = {first + dt.timedelta(days=rng.randrange(30)) for _ in range(rng.randint(1, 9))}
        schedule = {
            "days": _always_open(rng),
            "holidays": [{"date": h.isoformat(), "name": ""} for h in sorted(holidays)],
        }
        assert validate_schedule(schedule) == []
        tz = rng.choice(ZONES)
        zone = ZoneInfo(tz)
        day = start.astimezone(zone).date()
        closed = day in holidays
        last = max(holidays)
        while day <= last and (day in holidays) is closed:
            day += dt.timedelta(days=1)
        expected = None
        if (day in holidays) is not closed:
            expected = dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(UTC)
        assert next_change(schedule, tz, start) == expected, (schedule, tz, start)


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        ("America/New_York", dt.datetime(9999, 12, 31, 5, 0, tzinfo=UTC)),
        ("Pacific/Kiritimati", dt.datetime(9999, 12, 30, 10, 0, tzinfo=UTC)),
    ],
)
def test_a_holiday_on_the_last_day_of_the_calendar(tz, expected):
    """The day after it is past ``date.max``: the search stops there, without an error."""
    schedule = {
        "days": [
            {"weekday": d, "intervals": [{"start": "00:00", "end": "24:00"}]} for d in range(7)
        ],
        "holidays": [{"date": "9999-12-31", "name": ""}],
    }
    assert next_change(schedule, tz, dt.datetime(2026, 12, 7, tzinfo=UTC)) == expected
    assert next_change(schedule, tz, expected) is None
