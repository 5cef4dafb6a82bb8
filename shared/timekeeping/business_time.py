"""Working-time arithmetic: "30 working minutes after 16:50 on Friday" is Monday 09:20.

Built on :func:`~shared.timekeeping.working_hours.next_change`, so holidays, several
intervals a day and DST follow the same rules as ``is_open``. Durations are real
elapsed seconds while open: on a fall-back day an open 01:00-02:00 lasts two hours,
on a spring-forward day the skipped hour is not counted.

``schedule=None`` (a tenant with no working hours) is always open: plain arithmetic.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from shared.timekeeping.working_hours import is_open, next_change, week_open_seconds

Schedule = Mapping[str, Any] | None


def add_working_time(
    schedule: Schedule,
    tz_name: str,
    start: dt.datetime,
    duration: dt.timedelta,
    *,
    horizon: dt.timedelta | None = None,
) -> dt.datetime | None:
    """The instant when ``duration`` of working time has passed since ``start``.

    None when the schedule never opens again (e.g. no working days at all), or, with
    ``horizon``, when that instant is not within ``horizon`` of ``start``. PERF: a horizon
    bounds the walk (one step per open/close change): a year's target over an hour a week
    took 4-8 s, and over a minute a week it walked past year 9999 and raised. A duration
    more than the horizon's weeks can hold is answered at once.
    """
    if schedule is None:
        return start + duration
    if horizon is not None:
        # Holidays only take time away; a DST change may add an hour, once a year.
        weeks, years = horizon / dt.timedelta(weeks=1) + 1, horizon.days // 365 + 1
        most = dt.timedelta(seconds=week_open_seconds(schedule) * weeks + 3600 * years)
        if duration > most:
            return None
    remaining, at = duration, start
    while horizon is None or at - start <= horizon:
        change = next_change(schedule, tz_name, at)
        if is_open(schedule, tz_name, at):
            if change is None or change - at >= remaining:
                done = at + remaining
                return done if horizon is None or done - start <= horizon else None
            remaining -= change - at
        elif change is None:
            return None
        at = change
    return None


def working_time_between(
    schedule: Schedule, tz_name: str, start: dt.datetime, end: dt.datetime
) -> dt.timedelta:
    """How much working time lies in ``[start, end)`` (zero when ``end <= start``)."""
    if end <= start:
        return dt.timedelta(0)
    if schedule is None:
        return end - start
    total, at = dt.timedelta(0), start
    while at < end:
        change = next_change(schedule, tz_name, at)
        stop = end if change is None else min(change, end)
        if is_open(schedule, tz_name, at):
            total += stop - at
        at = stop
    return total
