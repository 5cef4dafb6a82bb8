"""Times a client sends are refused outside the years 1900 to 9000, never a 500.

Year 1 or 9999 with an offset leaves Python's datetimes once converted to UTC, rounded
to a bucket or moved by a day (an OverflowError). The fuzz tests draw such values
(tests/fuzz/conftest.py); these cases pin down the answer where they found 500s, and
the same rule in a body, in a query and for a time without an offset.
"""

from __future__ import annotations

import pytest

from tests.automation.conftest import create_rule
from tests.inbox_conversations.conftest import add_conversation

YEAR_1 = "0001-01-01T00:00:00+14:00"
YEAR_9999 = "9999-12-31T23:59:59-14:00"


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/automation/stats", {"to": YEAR_1}, "to"),
        ("/api/automation/stats", {"from": YEAR_9999}, "from"),
        ("/api/automation/stats/timeseries", {"to": YEAR_1}, "to"),
        ("/api/automation/stats/alerts", {"from": YEAR_1}, "from"),
        ("/api/messages/search", {"q": "order", "to": YEAR_1}, "to"),
        ("/api/conversations", {"updated_since": YEAR_9999}, "updated_since"),
    ],
)
def test_a_query_time_outside_the_years_is_400_naming_it(workspace, path, params, field):
    resp = workspace.call("GET", path, params=params)
    assert resp.status_code == 400, resp.text
    error = resp.json["error"]
    assert error["details"][0]["field"] == field, error
    assert "1900 to 9000" in error["details"][0]["message"], error


def test_a_rules_stats_outside_the_years_is_400(workspace):
    rule = create_rule(workspace)
    resp = workspace.call("GET", f"/api/automation/rules/{rule['id']}/stats", params={"to": YEAR_1})
    assert resp.status_code == 400, resp.text


def test_a_body_time_outside_the_years_is_422_and_nothing_is_written(workspace):
    rule = create_rule(workspace)
    resp = workspace.call(
        "POST", f"/api/automation/rules/{rule['id']}/snooze", json={"until": YEAR_9999}
    )
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "until"
    state = workspace.call("GET", f"/api/automation/rules/{rule['id']}/effective-state").json
    assert state["snoozed_until"] is None


@pytest.mark.parametrize(
    "run_at", ["9999-12-31T23:59:59", "0001-01-01T00:00:00", YEAR_9999, YEAR_1]
)
def test_a_time_without_an_offset_is_bounded_too(workspace, run_at):
    """A wall-clock time is placed in its zone: year 9999 there may be year 10000 in UTC."""
    conversation = add_conversation(workspace, channel="api")
    path = f"/api/conversations/{conversation}/scheduled-messages"
    body = {"body": "later", "run_at": run_at, "timezone": "Pacific/Kiritimati"}
    resp = workspace.call("POST", path, json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "run_at"
    assert workspace.call("GET", path).json["items"] == []
