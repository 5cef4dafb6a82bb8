"""Fixtures for the automation stats and alerts tests: a movable clock, rules over HTTP."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.automation.conftest import ws  # noqa: F401  (fixture)
from tests.automation_ops.conftest import Clock, moved_clock, ts  # noqa: F401  (fixtures)
from tests.waiting import wait_until

STATS = "/api/automation/stats"
SERIES = "/api/automation/stats/timeseries"
ALERTS = "/api/automation/stats/alerts"
RULES = "/api/automation/rules"
#: A Monday morning, UTC; tests move the clock from here.
T0 = dt.datetime(2026, 11, 2, 10, 15, 30, tzinfo=dt.UTC)


def stats(space, path: str = STATS, **params: Any) -> dict[str, Any]:
    query = {k: ts(v) if isinstance(v, dt.datetime) else v for k, v in params.items()}
    resp = space.call("GET", path, params=query)
    assert resp.status_code == 200, resp.text
    return resp.json


def wait_runs(space, runs: int, **params: Any) -> dict[str, Any]:
    """The overview once the rollups count ``runs`` runs in total (the workers roll up)."""

    def counted():
        body = stats(space, **params)
        return body if body["totals"]["runs"] >= runs else None

    body = wait_until(counted, f"{runs} runs rolled up", timeout=20.0)
    assert body["totals"]["runs"] == runs, body
    return body
