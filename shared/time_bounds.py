"""The calendar a client may name: the years 1900 to 9000, for times and days alike.

Python's dates run from year 1 to 9999, and the platform does arithmetic on what a
client sends: a time converted to UTC, rounded to a bucket or moved by a day; a report's
default range before ``to``, the day after ``end``, a local midnight in UTC. Near either
end of Python's calendar that arithmetic raises OverflowError (a 500). No real request
needs those years, so the request schemas and the report days refuse them up front.
"""

from __future__ import annotations

import datetime as dt

EARLIEST_DAY, LATEST_DAY = dt.date(1900, 1, 1), dt.date(9000, 12, 31)
