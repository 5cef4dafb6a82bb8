"""CSAT figures: the analytics rollup (through the real worker) and the filtered report."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import text

from shared.db import session_scope
from tests.analytics.conftest import wait_settled
from tests.csat.conftest import assign, conversation, enable, link_of, set_status, survey_messages


def _rate(client, conversation_id: str, ws, rating: int) -> None:
    (message,) = survey_messages(ws, conversation_id)
    survey_id, token = link_of(message)
    resp = client.simulate_patch(
        f"/api/public/csat-surveys/{survey_id}", json={"token": token, "rating": rating}
    )
    assert resp.status_code == 200, resp.text


def _division(ws, name: str) -> str:
    resp = ws.call("POST", "/api/divisions", json={"name": name})
    assert resp.status_code == 201, resp.text
    return resp.json["id"]


def test_ratings_flow_into_the_analytics_csat_endpoint(ws, client):
    enable(ws, ["api"])
    ada, _ = ws.create_agent("agent", full_name="Ada Agent")
    bob, _ = ws.create_agent("agent", full_name="Bob Agent")
    convs = {name: conversation(ws, f"cust-{name}") for name in ("a1", "a2", "b1", "none")}
    for name, agent in (("a1", ada), ("a2", ada), ("b1", bob)):
        assign(ws, convs[name], agent["id"])
    for conv in convs.values():
        set_status(ws, conv, "resolved")
    _rate(client, convs["a1"], ws, 5)
    _rate(client, convs["a2"], ws, 2)
    _rate(client, convs["b1"], ws, 4)
    # A reassignment after the survey does not move its rating to another agent.
    set_status(ws, convs["b1"], "open")
    assign(ws, convs["b1"], ada["id"])

    wait_settled(ws)
    report = ws.call("GET", "/api/analytics/csat", params={"period": "7d"}).json
    assert report["summary"] == {
        "total_surveys": 4,
        "rated_count": 3,
        "average_rating": 3.67,
        "rating_1": 0,
        "rating_2": 1,
        "rating_3": 0,
        "rating_4": 1,
        "rating_5": 1,
    }
    assert report["agents"] == [
        {
            "agent_id": ada["id"],
            "agent_name": "Ada Agent",
            "total_surveys": 2,
            "rated_count": 2,
            "average_rating": 3.5,
        },
        {
            "agent_id": bob["id"],
            "agent_name": "Bob Agent",
            "total_surveys": 1,
            "rated_count": 1,
            "average_rating": 4.0,
        },
    ]
    # The survey endpoint's report, unfiltered, says the same for the default 30 days.
    same = ws.call("GET", "/api/csat-surveys/analytics").json
    assert same["summary"] == report["summary"] and same["agents"] == report["agents"]


def test_the_csat_report_filters_by_agent_division_channel_and_days(ws, client):
    enable(ws, ["api"])
    ada, _ = ws.create_agent("agent", full_name="Ada Agent")
    support = _division(ws, "Support")
    first, second = conversation(ws, "cust-1"), conversation(ws, "cust-2")
    assign(ws, first, ada["id"])
    resp = ws.call(
        "POST",
        "/api/conversations/bulk",
        json={"ids": [second], "action": "set_division", "division_id": support},
    )
    assert resp.status_code == 200, resp.text
    for conv in (first, second):
        set_status(ws, conv, "resolved")
    _rate(client, first, ws, 3)
    _rate(client, second, ws, 5)

    def report(**params) -> dict:
        resp = ws.call("GET", "/api/csat-surveys/analytics", params=params)
        assert resp.status_code == 200, resp.text
        return resp.json

    by_agent = report(agent_id=ada["id"])
    assert by_agent["summary"]["total_surveys"] == 1 and by_agent["summary"]["rating_3"] == 1
    by_division = report(division_id=support)
    assert by_division["summary"]["rating_5"] == 1 and by_division["agents"] == []
    assert report(channel="api")["summary"]["rated_count"] == 2
    assert report(channel="whatsapp")["summary"]["total_surveys"] == 0

    # Move time: the first survey was sent and rated 40 days ago.
    with session_scope() as session:
        session.execute(
            text(
                "UPDATE csat_surveys SET sent_at = sent_at - interval '40 days',"
                " rated_at = rated_at - interval '40 days' WHERE conversation_id = :c"
            ),
            {"c": first},
        )
    recent = report()
    assert recent["summary"]["total_surveys"] == 1 and recent["summary"]["rating_5"] == 1
    today = dt.date.today()
    old = report(
        **{
            "from": (today - dt.timedelta(days=45)).isoformat(),
            "to": (today - dt.timedelta(days=35)).isoformat(),
        }
    )
    assert old["summary"]["rating_3"] == 1 and old["summary"]["total_surveys"] == 1
    assert old["period"] == f"{today - dt.timedelta(days=45)}/{today - dt.timedelta(days=35)}"


def test_bad_report_filters_are_refused(ws):
    for params in (
        {"from": "2026-02-30"},
        {"from": "2026-05-02", "to": "2026-05-01"},
        {"from": "2020-01-01", "to": "2026-01-01"},
        # The default range before the first day, the day after the last: no OverflowError.
        {"to": "0001-01-01"},
        {"from": "9999-12-31"},
        {"agent_id": "nope"},
        {"unknown": "1"},
    ):
        resp = ws.call("GET", "/api/csat-surveys/analytics", params=params)
        assert resp.status_code in (400, 422), (params, resp.text)
        assert set(resp.json["error"]) == {"code", "message", "details"}


def test_the_nightly_reconcile_recounts_csat_from_the_surveys(ws, client):
    from shared.analytics import reconcile

    enable(ws, ["api"])
    ada, _ = ws.create_agent("agent", full_name="Ada Agent")
    conv = conversation(ws)
    assign(ws, conv, ada["id"])
    set_status(ws, conv, "resolved")
    _rate(client, conv, ws, 2)
    wait_settled(ws)
    # Move time: the survey and its counts are from two days ago (today is never recounted).
    with session_scope() as session:
        session.execute(
            text(
                "UPDATE csat_surveys SET sent_at = sent_at - interval '2 days',"
                " rated_at = rated_at - interval '2 days' WHERE conversation_id = :c"
            ),
            {"c": conv},
        )
        session.execute(
            text("UPDATE analytics_csat_daily SET day = day - 2 WHERE tenant_id = :t"),
            {"t": ws.tenant["id"]},
        )
    before = ws.call("GET", "/api/analytics/csat", params={"period": "7d"}).json
    assert before["summary"]["rating_2"] == 1
    with session_scope() as session:  # drift: the day's counts are lost
        session.execute(
            text("DELETE FROM analytics_csat_daily WHERE tenant_id = :t"), {"t": ws.tenant["id"]}
        )
    assert ws.call("GET", "/api/analytics/csat").json["summary"]["total_surveys"] == 0

    tenant = uuid.UUID(ws.tenant["id"])
    with session_scope() as session:
        result = reconcile.reconcile_tenant(session, tenant, days=3)
    assert result.corrections["csat_rows"] == 1
    assert ws.call("GET", "/api/analytics/csat", params={"period": "7d"}).json == before
    with session_scope() as session:
        again = reconcile.reconcile_tenant(session, tenant, days=3)
    assert again.corrections["csat_rows"] == 0


#: Every date-only query parameter of the API (API.md): the path, its parameter, and the
#: other parameters the route needs to reach the date check.
DATE_PARAMETERS = [
    ("/api/csat-surveys/analytics", "from", {}),
    ("/api/csat-surveys/analytics", "to", {}),
    ("/api/ai-agents/usage", "from", {}),
    ("/api/ai-agents/usage", "to", {}),
    ("/api/wa-insights/messages", "start", {"end": "2026-11-02"}),
    ("/api/wa-insights/messages", "end", {"start": "2026-11-01"}),
]


@pytest.mark.parametrize(
    "bad",
    [
        "1704067200",  # a Unix timestamp: read as 2024-01-01
        "2024-01-01T00:00:00Z",  # a datetime at midnight: read as its day
        "2024-01-01T00:00:00",
        "20240101",
        "2024-W01-1",
    ],
)
def test_every_date_parameter_reads_only_yyyy_mm_dd_with_one_422(ws, bad):
    """CSAT analytics (and the AI usage report) took ``from=1704067200`` and
    ``2024-01-01T00:00:00Z`` for 2024-01-01, and answered other forms with a 400 in
    pydantic's words, while WhatsApp insights took only ``YYYY-MM-DD``. A client could not
    tell which form a date parameter wants: every one now answers the same 422 naming it."""
    answers = []
    for path, field, others in DATE_PARAMETERS:
        resp = ws.call("GET", path, params=others | {field: bad})
        assert resp.status_code == 422, (path, field, resp.text)
        error = resp.json["error"]
        assert error["code"] == "validation_error"
        (detail,) = error["details"]
        assert detail["field"] == field, (path, resp.text)
        assert "YYYY-MM-DD" in detail["message"]
        answers.append(detail["message"])
    assert len(set(answers)) == 1, answers
