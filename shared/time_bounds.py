"""The calendar a client may name: the years 1900 to 9000, for times and days alike.

Python's dates run from year 1 to 9999, and the platform does arithmetic on what a
client sends: a time converted to UTC, rounded to a bucket or moved by a day; a report's
default range before ``to``, the day after ``end``, a local midnight in UTC. Near either
end of Python's calendar that arithmetic raises OverflowError (a 500). No real request
needs those years, so the request schemas and the report days refuse them up front.

A date-only parameter is written one way, ``YYYY-MM-DD`` (API.md), and read by
:func:`parse_day` on every route, with the same 422 naming the field; a body's date
field is held to the same form (:func:`written_as_day`, ``api.schemas.common.BodyDay``).
"""

from __future__ import annotations

import datetime as dt
import re

from shared.errors import ValidationFailed

EARLIEST_DAY, LATEST_DAY = dt.date(1900, 1, 1), dt.date(9000, 12, 31)

#: The one way a date-only parameter is written (API.md: ``YYYY-MM-DD``). Python's
#: ``date.fromisoformat`` alone also reads ``20240825`` and the week date ``2024-W34-7``,
#: and pydantic's ``date`` reads a Unix timestamp and a datetime at midnight.
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: What a date-only parameter that is not one is told (the same on every route).
NOT_A_DAY = "must be a date written YYYY-MM-DD, like 2024-08-25"


def written_as_day(value: object) -> bool:
    """Whether ``value`` is a day written the one way (``YYYY-MM-DD``), for body fields."""
    return isinstance(value, str) and _DAY.fullmatch(value) is not None


def parse_day(value: str | None, field: str) -> dt.date | None:
    """A date-only parameter: ``YYYY-MM-DD`` in the years above, else 422 naming ``field``.

    Every date-only query parameter goes through here (its schema takes it as text), so
    each route answers the same 422 for the same value. Left out (or empty): ``None``.
    """
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value) if _DAY.fullmatch(value) else None
    except ValueError:
        day = None
    if day is None:
        raise ValidationFailed.field(field, NOT_A_DAY)
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise ValidationFailed.field(field, f"must be between {EARLIEST_DAY} and {LATEST_DAY}")
    return day


def required_day(value: str | None, field: str) -> dt.date:
    """:func:`parse_day` for a parameter that must be sent."""
    day = parse_day(value, field)
    if day is None:
        raise ValidationFailed.field(field, "required (YYYY-MM-DD)")
    return day
