"""A date in a request body is written as API.md writes dates: ``YYYY-MM-DD``.

Pydantic's ``date`` also read a Unix timestamp (``1767225600``, as a number or a
string) and a datetime at midnight as a day, so a client's confusion of a day with a
time was stored as some day nobody named. Query parameters were made strict before
(``shared.time_bounds.parse_day``); bodies now answer the same 422 naming the field.
"""

from __future__ import annotations

import pytest

from tests.automation.conftest import RULES, create_rule

NOT_DAYS = [1767225600, "1767225600", "2026-01-01T00:00:00Z", "20260101", "2026-W01-4", True]
OFFICE = [{"weekday": d, "intervals": [{"start": "09:00", "end": "17:00"}]} for d in range(5)]


def _refused(resp, field: str) -> None:
    assert resp.status_code == 422, resp.text
    fields = [d["field"] for d in resp.json["error"]["details"]]
    assert fields == [field], resp.json


@pytest.mark.parametrize("day", NOT_DAYS)
def test_a_holiday_that_is_not_written_as_a_day_is_422(workspace, day):
    body = {"days": OFFICE, "holidays": [{"date": day, "name": "New year"}]}
    _refused(workspace.call("PUT", "/api/working-hours", json=body), "holidays[0].date")


def test_a_schedule_exception_that_is_not_written_as_a_day_is_422(workspace):
    rule = create_rule(workspace)
    path = f"{RULES}/{rule['id']}/schedule"
    for day in NOT_DAYS:
        body = {"timezone": "UTC", "days": OFFICE, "exceptions": [{"date": day}]}
        _refused(workspace.call("PATCH", path, json=body), "exceptions[0].date")


def test_days_written_as_days_still_pass(workspace):
    body = {"days": OFFICE, "holidays": [{"date": "2026-12-25", "name": "Christmas"}]}
    resp = workspace.call("PUT", "/api/working-hours", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json["holidays"] == [{"date": "2026-12-25", "name": "Christmas"}]
