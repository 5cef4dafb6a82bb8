"""Report periods (``7d``, ``30d``, ``90d``) and date ranges, refused with a 422 when wrong."""

from __future__ import annotations

import datetime as dt

from shared.errors import ValidationFailed
from shared.time_bounds import required_day

PERIODS = {"7d": 7, "30d": 30, "90d": 90}
#: Longest ``start``..``end`` range of a WhatsApp insights request (Meta keeps ~a year).
MAX_RANGE_DAYS = 366


def period_days(period: str, field: str = "period") -> int:
    try:
        return PERIODS[period]
    except KeyError:
        raise ValidationFailed.field(field, f"must be one of {', '.join(PERIODS)}") from None


def last_days(today: dt.date, days: int) -> list[dt.date]:
    """The ``days`` local days ending with ``today``, oldest first."""
    return [today - dt.timedelta(days=days - 1 - n) for n in range(days)]


def date_range(start: str | None, end: str | None) -> tuple[dt.date, dt.date]:
    """``start`` and ``end`` (inclusive) parsed and checked: in order, at most a year apart."""
    first = required_day(start, "start")
    last = required_day(end, "end")
    if last < first:
        raise ValidationFailed.field("end", "must not be before start")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise ValidationFailed.field("end", f"the range is at most {MAX_RANGE_DAYS} days")
    return first, last
