"""What every fuzz run draws besides schemathesis's defaults.

Dates and instants at the ends of what Python's ``datetime`` holds: year 1 and year
9999, with the widest offsets, whose conversion to UTC or a day's arithmetic leaves
that range (an ``OverflowError``, a 500). Drawn as often as ordinary ones, because a
uniform year from 1 to 9999 almost never lands there.
"""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st
from schemathesis.specs.openapi.formats import rfc3339_values

EDGE_DATES = ("0001-01-01", "0001-01-02", "9999-12-30", "9999-12-31")
EDGE_DATE_TIMES = (
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T23:59:59-14:00",
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T00:00:00+14:00",
)

schemathesis.openapi.format(
    "date-time", st.one_of(rfc3339_values("date-time"), st.sampled_from(EDGE_DATE_TIMES))
)
schemathesis.openapi.format(
    "date", st.one_of(rfc3339_values("full-date"), st.sampled_from(EDGE_DATES))
)
