"""Report periods (``7d``, ``30d``, ``90d``) and date ranges, refused with a 422 when wrong."""

from __future__ import annotations

import datetime as dt
import re

from shared.errors import ValidationFailed
from shared.time_bounds import EARLIEST_DAY, LATEST_DAY

PERIODS = {"7d": 7, "30d": 30, "90d": 90}
#: Longest ``start``..``end`` range of a WhatsApp insights request (Meta keeps ~a year).
MAX_RANGE_DAYS = 366
#: The one way a date is written (API.md): ``date.fromisoformat`` alone also reads
#: ``20240825`` and the week date ``2024-W34-7``.
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def period_days(period: str, field: str = "period") -> int:
    try:
        return PERIODS[period]
    except KeyError:
        raise ValidationFailed.field(field, f"must be one of {', '.join(PERIODS)}") from None


def last_days(today: dt.date, days: int) -> list[dt.date]:
    """The ``days`` local days ending with ``today``, oldest first."""
    return [today - dt.timedelta(days=days - 1 - n) for n in range(days)]


def parse_date(value: str | None, field: str) -> dt.date:
    if not value:
        raise ValidationFailed.field(field, "required (YYYY-MM-DD)")
    try:
        day = dt.date.fromisoformat(value) if _DATE.fullmatch(value) else None
    except ValueError:
        day = None
    if day is None:
        raise ValidationFailed.field(field, "must be a date like 2024-08-25")
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise ValidationFailed.field(field, f"must be between {EARLIEST_DAY} and {LATEST_DAY}")
    return day


def date_range(start: str | None, end: str | None) -> tuple[dt.date, dt.date]:
    """``start`` and ``end`` (inclusive) parsed and checked: in order, at most a year apart."""
    first, last = parse_date(start, "start"), parse_date(end, "end")
    if last < first:
        raise ValidationFailed.field("end", "must not be before start")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise ValidationFailed.field("end", f"the range is at most {MAX_RANGE_DAYS} days")
    return first, last
