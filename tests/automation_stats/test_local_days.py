"""Day series count the tenant's local days, across a daylight-saving change."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import update

from shared.automation import stats as rollups
from shared.db import session_scope
from shared.models import Tenant
from tests.automation.conftest import create_rule, tid
from tests.automation_stats.conftest import RULES, SERIES, stats

UTC = dt.UTC
#: New York left daylight time at 2026-11-01 06:00 UTC: that local day has 25 hours.
RUNS_AT = [
    dt.datetime(2026, 10, 31, 3, 30, tzinfo=UTC),  # Oct 30, 23:30 EDT
    dt.datetime(2026, 11, 1, 3, 30, tzinfo=UTC),  # Oct 31, 23:30 EDT
    dt.datetime(2026, 11, 1, 4, 30, tzinfo=UTC),  # Nov 1, 00:30 EDT
    dt.datetime(2026, 11, 2, 4, 30, tzinfo=UTC),  # Nov 1, 23:30 EST (hour 25 of the day)
    dt.datetime(2026, 11, 2, 5, 30, tzinfo=UTC),  # Nov 2, 00:30 EST
]
RANGE = {
    "from": dt.datetime(2026, 10, 30, 12, tzinfo=UTC),
    "to": dt.datetime(2026, 11, 2, 12, tzinfo=UTC),
}


def _roll_up(tenant_id: uuid.UUID, rule_id: str) -> None:
    """Count one matched run at each instant, through the workers' own roll-up."""
    pending = [(at, [[rule_id, "matched", 1, 2.0]]) for at in RUNS_AT]
    with session_scope() as session:
        rollups.add(session, tenant_id, rollups.sums(pending))


def _set_timezone(tenant_id: uuid.UUID, zone: str) -> None:
    with session_scope() as session:
        session.execute(update(Tenant).where(Tenant.id == tenant_id).values(timezone=zone))


def test_a_day_series_counts_local_days_of_23_to_25_hours(ws):
    rule = create_rule(ws, name="refund")
    _roll_up(tid(ws), rule["id"])
    _set_timezone(tid(ws), "America/New_York")

    local = stats(ws, SERIES, granularity="day", **RANGE)
    assert local["timezone"] == "America/New_York"
    assert [p["start"] for p in local["points"]] == [
        "2026-10-30T04:00:00Z",
        "2026-10-31T04:00:00Z",
        "2026-11-01T04:00:00Z",
        "2026-11-02T05:00:00Z",  # the 25-hour day ended an hour later in UTC
    ]
    assert [p["runs"] for p in local["points"]] == [1, 1, 2, 1]
    assert local["start"] == "2026-10-30T04:00:00Z" and local["end"] == "2026-11-03T05:00:00Z"

    per_rule = stats(ws, f"{RULES}/{rule['id']}/stats/timeseries", granularity="day", **RANGE)
    assert [p["runs"] for p in per_rule["points"]] == [1, 1, 2, 1]

    # Another zone asked for: the same runs cut at UTC midnights.
    utc = stats(ws, SERIES, granularity="day", timezone="UTC", **RANGE)
    assert utc["timezone"] == "UTC" and utc["points"][0]["start"] == "2026-10-30T00:00:00Z"
    assert [p["runs"] for p in utc["points"]] == [0, 1, 2, 2]

    # The tenant moves: every past day is re-cut at once (nothing stored was keyed by it).
    _set_timezone(tid(ws), "Asia/Tokyo")
    tokyo = stats(ws, SERIES, granularity="day", **RANGE)
    assert tokyo["points"][0]["start"] == "2026-10-29T15:00:00Z"  # Oct 30, 00:00 JST
    assert sum(p["runs"] for p in tokyo["points"]) == 5

    # Hours and minutes stay UTC buckets.
    hourly = stats(ws, SERIES, granularity="hour", **RANGE)
    assert hourly["timezone"] == "UTC" and sum(p["runs"] for p in hourly["points"]) == 5


def test_an_unknown_timezone_is_a_bad_query_naming_it(ws):
    resp = ws.call("GET", SERIES, params={"granularity": "day", "timezone": "Mars/Olympus"})
    assert resp.status_code == 400, resp.text
    assert resp.json["error"]["details"][0]["field"] == "timezone"
