"""Stats: runs counted by the worker into rollups, read back as totals and time series."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select

from shared.automation import stats as rollups
from shared.db import session_scope
from shared.models import AutomationStats, AutomationStatsPending
from tests.automation.conftest import add_conversation, create_rule, send_message, tid, wait_settled
from tests.automation_stats.conftest import RULES, SERIES, STATS, T0, stats, wait_runs


def _rules(ws):
    refund = create_rule(ws, name="refund")
    never = create_rule(
        ws,
        name="never",
        conditions={
            "match": "all",
            "conditions": [
                {"attribute": "message.content", "operator": "contains", "value": "zzz-none"}
            ],
        },
    )
    return refund, never


def test_runs_are_rolled_up_per_rule_and_in_total_as_totals_and_series(ws, moved_clock):
    moved_clock.move_to(T0)
    refund, never = _rules(ws)
    conversation_id = add_conversation(ws)
    for _ in range(3):
        send_message(ws, conversation_id, "refund please")
    wait_settled(ws, at_least_rows=3)
    body = wait_runs(ws, 6)
    totals = body["totals"]
    counts = (totals["runs"], totals["matches"], totals["skipped"], totals["failures"])
    assert counts == (6, 3, 0, 0)
    assert totals["actions_executed"] == 3 and totals["failure_rate"] == 0.0
    assert 0 < totals["p50_ms"] <= totals["p95_ms"] and totals["avg_ms"] > 0
    assert body["start"] == "2026-11-01T10:15:00Z" and body["end"] == "2026-11-02T10:16:00Z"
    by_rule = {r["rule_id"]: r for r in body["rules"]}
    assert by_rule.keys() == {refund["id"], never["id"]}, body
    assert by_rule[refund["id"]]["name"] == "refund"
    assert (by_rule[refund["id"]]["runs"], by_rule[refund["id"]]["matches"]) == (3, 3)
    assert (by_rule[never["id"]]["runs"], by_rule[never["id"]]["matches"]) == (3, 0)
    assert by_rule[never["id"]]["actions_executed"] == 0

    # An hour later: one more event, in the next hour's bucket.
    moved_clock.move_to(T0 + dt.timedelta(hours=1))
    send_message(ws, conversation_id, "refund again")
    wait_settled(ws, at_least_rows=4)
    wait_runs(ws, 8)
    hourly = stats(
        ws,
        SERIES,
        granularity="hour",
        **{"from": T0 - dt.timedelta(hours=1), "to": T0 + dt.timedelta(hours=2)},
    )
    assert hourly["granularity"] == "hour" and len(hourly["points"]) == 4
    assert [p["runs"] for p in hourly["points"]] == [0, 6, 2, 0]
    assert hourly["points"][1]["start"] == "2026-11-02T10:00:00Z"
    assert hourly["points"][0]["p95_ms"] is None and hourly["points"][0]["failure_rate"] is None

    minutes = stats(
        ws,
        f"{RULES}/{refund['id']}/stats/timeseries",
        granularity="minute",
        **{"from": T0 - dt.timedelta(minutes=1), "to": T0 + dt.timedelta(minutes=61)},
    )
    assert minutes["rule_id"] == refund["id"] and len(minutes["points"]) == 63
    assert [p["runs"] for p in minutes["points"] if p["runs"]] == [3, 1]
    assert minutes["points"][1]["start"] == "2026-11-02T10:15:00Z"

    daily = stats(ws, SERIES, granularity="day", **{"from": T0 - dt.timedelta(days=29)})
    assert len(daily["points"]) == 30 and daily["points"][-1]["runs"] == 8

    # One rule's totals over a range that is part days, part hours, part minutes.
    one = stats(
        ws,
        f"{RULES}/{refund['id']}/stats",
        **{
            "from": T0 - dt.timedelta(days=2, minutes=7),
            "to": T0 + dt.timedelta(hours=1, minutes=1),
        },
    )
    assert one["name"] == "refund" and one["totals"]["runs"] == 4
    assert one["totals"]["matches"] == 4 and one["totals"]["actions_executed"] == 4
    # A range that ends before the later event counts only the first three.
    early = stats(ws, f"{RULES}/{refund['id']}/stats", to=T0 + dt.timedelta(minutes=30))
    assert early["totals"]["runs"] == 3

    # A duplicate or late roll-up message counts nothing twice.
    counted, again = rollups.drain(tid(ws))
    assert (counted, again) == (0, False)
    assert stats(ws)["totals"]["runs"] == 8


def test_skipped_and_failed_runs_are_counted(ws, moved_clock):
    moved_clock.move_to(T0)
    vip = {
        "match": "all",
        "conditions": [{"attribute": "conversation.tags", "operator": "contains", "value": "vip"}],
    }
    failing = create_rule(
        ws,
        name="greet",
        trigger_event_types=["conversation.tags_updated"],
        conditions=vip,
        actions=[{"type": "send_message", "params": {"body": "Welcome back"}}],
    )
    snoozed = create_rule(ws, name="snoozed", trigger_event_types=["conversation.tags_updated"])
    resp = ws.call(
        "POST",
        f"{RULES}/{snoozed['id']}/snooze",
        json={"until": (T0 + dt.timedelta(days=1)).isoformat()},
    )
    assert resp.status_code == 200, resp.text
    conversation_id = add_conversation(ws, channel="whatsapp")  # window closed: send fails
    resp = ws.call("PATCH", f"/api/conversations/{conversation_id}/tags", json={"add": ["vip"]})
    assert resp.status_code == 200, resp.text
    wait_settled(ws)
    body = wait_runs(ws, 2)
    assert body["totals"]["failures"] == 1 and body["totals"]["skipped"] == 1
    assert body["totals"]["failure_rate"] == 0.5 and body["totals"]["actions_executed"] == 0
    by_rule = {r["rule_id"]: r for r in body["rules"]}
    assert by_rule.keys() == {failing["id"], snoozed["id"]}, body
    assert by_rule[failing["id"]]["failures"] == 1 and by_rule[failing["id"]]["matches"] == 1
    assert by_rule[snoozed["id"]]["skipped"] == 1 and by_rule[snoozed["id"]]["matches"] == 0
    with session_scope() as session:
        assert (
            session.scalar(select(func.count()).where(AutomationStatsPending.tenant_id == tid(ws)))
            == 0
        )
        granularities = session.scalars(
            select(AutomationStats.granularity)
            .where(AutomationStats.tenant_id == tid(ws))
            .distinct()
        ).all()
    assert sorted(granularities) == ["day", "hour", "minute"]


def test_bad_ranges_are_422_and_stats_are_tenant_scoped(workspace, other_workspace):
    rule = create_rule(workspace)
    cases = {
        "inverted": (STATS, {"from": "2026-11-02T10:00:00Z", "to": "2026-11-01T10:00:00Z"}, "from"),
        "too long": (STATS, {"from": "2024-01-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "from"),
        "points": (
            SERIES,
            {"granularity": "minute", "from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"},
            "granularity",
        ),
    }
    for name, (path, params, field) in cases.items():
        resp = workspace.call("GET", path, params=params)
        assert resp.status_code == 422, (name, resp.text)
        assert resp.json["error"]["details"][0]["field"] == field, (name, resp.json)
    # Query parameters of the wrong shape are 400, as everywhere.
    for params, field in (
        ({"from": "2026-11-01T10:00:00"}, "from"),
        ({"granularity": "week"}, "granularity"),
    ):
        resp = workspace.call("GET", SERIES, params=params)
        assert resp.status_code == 400, resp.text
        assert resp.json["error"]["details"][0]["field"] == field, resp.json

    for path in (f"{RULES}/{rule['id']}/stats", f"{RULES}/{rule['id']}/stats/timeseries"):
        assert other_workspace.call("GET", path).status_code == 404
        assert workspace.call("GET", path).status_code == 200
    assert workspace.call("GET", f"{RULES}/{uuid.uuid4()}/stats").status_code == 404
    empty = other_workspace.call("GET", STATS).json
    assert empty["totals"]["runs"] == 0 and empty["rules"] == []
    _, agent = workspace.create_agent("agent")
    assert workspace.call("GET", STATS, token=agent).status_code == 403
    _, supervisor = workspace.create_agent("supervisor")
    assert workspace.call("GET", SERIES, token=supervisor).status_code == 200
