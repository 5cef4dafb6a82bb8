"""Alerts: settings over HTTP, the scheduler's check firing once per incident, alert stats."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select

from scheduler.jobs import evaluate_automation_alerts
from shared.db import session_scope
from shared.models import OutboxEvent
from tests.automation.conftest import add_conversation, create_rule, send_message, tid, wait_settled
from tests.automation_stats.conftest import ALERTS, RULES, T0, stats, ts, wait_runs

VIP = {
    "match": "all",
    "conditions": [{"attribute": "conversation.tags", "operator": "contains", "value": "vip"}],
}


def _alerts(ws, rule_id: str, body: dict, **kwargs):
    return ws.call("PATCH", f"{RULES}/{rule_id}/alerts", json=body, **kwargs)


def _check() -> None:
    with session_scope() as session:
        evaluate_automation_alerts(session)


def _emitted(ws) -> list[dict]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(OutboxEvent.data)
                .where(
                    OutboxEvent.tenant_id == tid(ws),
                    OutboxEvent.type == "automation.alert_triggered",
                )
                .order_by(OutboxEvent.occurred_at)
            )
        )


def _alerted_only_after_ten_minutes(ws, moved_clock, rule) -> None:
    """A 10-minute no_runs window counted from now: quiet at 9 minutes, alerted at 11."""
    moved_clock.advance(minutes=9)
    _check()
    assert _emitted(ws) == []
    moved_clock.advance(minutes=2)
    _check()
    [event] = _emitted(ws)
    assert event["kind"] == "no_runs" and event["rule_id"] == rule["id"]


def _tag(ws, conversation_id: str, tag: str) -> None:
    resp = ws.call("PATCH", f"/api/conversations/{conversation_id}/tags", json={"add": [tag]})
    assert resp.status_code == 200, resp.text


def _vip_greeting(ws, name: str, body: str) -> dict:
    """A rule that answers a conversation tagged "vip" with ``body``."""
    return create_rule(
        ws,
        name=name,
        trigger_event_types=["conversation.tags_updated"],
        conditions=VIP,
        actions=[{"type": "send_message", "params": {"body": body}}],
    )


def test_a_failure_rate_alert_fires_once_per_incident_and_resolves(ws, moved_clock):
    moved_clock.move_to(T0)
    rule = _vip_greeting(ws, "greet", "Welcome back")
    resp = _alerts(
        ws,
        rule["id"],
        {"failure_rate": {"threshold_percent": 50, "window_minutes": 15, "min_runs": 2}},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json["alert_settings"]["failure_rate"]["threshold_percent"] == 50
    conversation_id = add_conversation(ws, channel="whatsapp")  # window closed: sends fail
    _tag(ws, conversation_id, "vip")
    wait_settled(ws)
    wait_runs(ws, 1)
    _check()  # one run: under min_runs
    assert _emitted(ws) == []

    _tag(ws, conversation_id, "gold")
    wait_settled(ws, at_least_rows=2)
    wait_runs(ws, 2)
    moved_clock.advance(minutes=1)
    _check()
    [event] = _emitted(ws)
    assert event["kind"] == "failure_rate" and event["rule_id"] == rule["id"]
    assert event["observed"] == 100.0 and event["threshold"] == 50.0
    assert event["rule_name"] == "greet" and event["details"]["failures"] == 2

    for minutes in (4, 5):  # still failing: the same incident, no new event
        moved_clock.advance(minutes=minutes)
        _check()
    assert len(_emitted(ws)) == 1
    body = stats(ws, ALERTS)
    assert body["open_now"] == 1 and body["by_kind"]["failure_rate"] == 1
    [item] = body["items"]
    assert item["status"] == "open" and item["resolved_at"] is None
    assert item["id"] == event["alert_id"] and item["rule_name"] == "greet"

    moved_clock.move_to(T0 + dt.timedelta(minutes=30))  # the failures left the window
    _check()
    [item] = stats(ws, ALERTS)["items"]
    assert item["status"] == "resolved" and item["resolved_at"].startswith("2026-11-02T10:45")
    assert stats(ws, ALERTS)["open_now"] == 0

    # Failing again is a new incident: a second row and a second event.
    _tag(ws, conversation_id, "silver")
    _tag(ws, conversation_id, "bronze")
    wait_settled(ws, at_least_rows=4)
    wait_runs(ws, 4)
    _check()
    _check()
    assert len(_emitted(ws)) == 2
    body = stats(ws, ALERTS)
    assert [i["status"] for i in body["items"]] == ["open", "resolved"]
    assert body["by_status"] == {"open": 1, "resolved": 1} and body["triggered"] == 2
    assert stats(ws, ALERTS, status="resolved")["triggered"] == 1
    assert stats(ws, ALERTS, rule_id=str(uuid.uuid4()))["items"] == []


def test_a_no_runs_alert_waits_for_the_period_and_clears_with_a_run(ws, moved_clock):
    rule = create_rule(ws, name="refunds")
    resp = _alerts(ws, rule["id"], {"no_runs": {"period_minutes": 10}})
    assert resp.status_code == 200, resp.text
    _check()  # younger than the period: not watched yet
    assert _emitted(ws) == []
    moved_clock.advance(minutes=11)
    _check()
    [event] = _emitted(ws)
    assert event["kind"] == "no_runs" and event["threshold"] == 10.0 and event["observed"] == 0

    send_message(ws, add_conversation(ws), "refund please")
    wait_settled(ws)
    wait_runs(ws, 1)
    moved_clock.advance(minutes=1)
    _check()
    body = stats(ws, ALERTS)
    assert body["open_now"] == 0 and body["items"][0]["status"] == "resolved"

    # Switching the kind off resolves nothing twice and stops the checks.
    cleared = _alerts(ws, rule["id"], {"no_runs": None})
    assert cleared.status_code == 200 and cleared.json["alert_settings"] is None
    moved_clock.advance(minutes=30)
    _check()
    assert len(_emitted(ws)) == 1


def test_a_no_runs_alert_counts_the_silence_from_when_the_rule_ran_again(ws, moved_clock):
    """Off for an hour, then on (by toggle, by PATCH, or a snooze ended): not silent yet."""
    rule = create_rule(ws, name="refunds")
    path = f"{RULES}/{rule['id']}"
    assert _alerts(ws, rule["id"], {"no_runs": {"period_minutes": 10}}).status_code == 200
    assert ws.call("POST", f"{path}/toggle").json["is_active"] is False
    moved_clock.advance(minutes=60)
    _check()  # off: not watched
    assert ws.call("POST", f"{path}/toggle").json["is_active"] is True
    _check()  # switched on a moment ago: no silence yet
    assert _emitted(ws) == []

    moved_clock.advance(minutes=5)
    assert ws.call("PATCH", path, json={"is_active": False}).status_code == 200
    moved_clock.advance(minutes=60)
    assert ws.call("PATCH", path, json={"is_active": True}).status_code == 200
    moved_clock.advance(minutes=9)
    _check()
    assert _emitted(ws) == []

    until = ts(moved_clock.now + dt.timedelta(hours=2))
    assert ws.call("POST", f"{path}/snooze", json={"until": until}).status_code == 200
    moved_clock.advance(minutes=60)
    assert ws.call("POST", f"{path}/unsnooze").status_code == 200
    _alerted_only_after_ten_minutes(ws, moved_clock, rule)  # counted from the snooze's end


def test_a_no_runs_alert_does_not_count_the_hours_outside_the_rules_schedule(ws, moved_clock):
    """Open Mondays 09:00-17:00: quiet before it opens is not a fault; quiet once open is."""
    monday_8 = T0.replace(hour=8, minute=0, second=0)
    moved_clock.move_to(monday_8)
    rule = create_rule(ws, name="office hours")
    path = f"{RULES}/{rule['id']}"
    hours = {
        "days": [{"weekday": 0, "intervals": [{"start": "09:00", "end": "17:00"}]}],
        "timezone": "UTC",
    }
    assert ws.call("PATCH", f"{path}/schedule", json=hours).status_code == 200
    assert _alerts(ws, rule["id"], {"no_runs": {"period_minutes": 60}}).status_code == 200
    moved_clock.move_to(monday_8 + dt.timedelta(minutes=90))  # 09:30: open for 30 minutes
    _check()
    assert _emitted(ws) == []

    moved_clock.move_to(monday_8 + dt.timedelta(minutes=121))  # 10:01: open and silent 61
    _check()
    [event] = _emitted(ws)
    assert event["kind"] == "no_runs" and event["rule_id"] == rule["id"]

    moved_clock.move_to(monday_8 + dt.timedelta(hours=10, minutes=30))  # 18:30: closed
    _check()
    monday = {"from": monday_8, "to": monday_8 + dt.timedelta(hours=11)}
    [item] = stats(ws, ALERTS, **monday)["items"]
    assert item["status"] == "resolved" and len(_emitted(ws)) == 1


def test_a_no_runs_alert_waits_while_the_control_pauses_the_rule(ws, moved_clock):
    """Paused for the workspace or for its trigger type, the rule cannot run: no alert
    then, and the silence counts from when the control lets it run again."""
    rule = create_rule(ws, name="refunds")  # triggered by message.created
    assert _alerts(ws, rule["id"], {"no_runs": {"period_minutes": 10}}).status_code == 200
    control = "/api/automation/control"
    assert ws.call("PATCH", control, json={"enabled": False}).status_code == 200
    moved_clock.advance(minutes=60)
    _check()
    assert ws.call("PATCH", control, json={"enabled": True}).status_code == 200
    moved_clock.advance(minutes=9)
    _check()
    assert _emitted(ws) == []

    paused = {"paused_event_types": ["message.created"]}
    assert ws.call("PATCH", control, json=paused).status_code == 200
    moved_clock.advance(minutes=60)
    _check()
    assert ws.call("PATCH", control, json={"paused_event_types": []}).status_code == 200
    _alerted_only_after_ten_minutes(ws, moved_clock, rule)  # counted from the pause's end


def test_alert_settings_are_validated_and_tenant_scoped(workspace, other_workspace):
    rule = create_rule(workspace)
    bad = {
        "rate zero": ({"failure_rate": {"threshold_percent": 0}}, "failure_rate.threshold_percent"),
        "rate high": (
            {"failure_rate": {"threshold_percent": 150}},
            "failure_rate.threshold_percent",
        ),
        "window": (
            {"failure_rate": {"threshold_percent": 5, "window_minutes": 1}},
            "failure_rate.window_minutes",
        ),
        "period": ({"no_runs": {"period_minutes": 2}}, "no_runs.period_minutes"),
        "latency": ({"latency": {"p95_ms": -1}}, "latency.p95_ms"),
        "missing": ({"latency": {}}, "latency.p95_ms"),
        "unknown kind": ({"volume": {"max": 3}}, "volume"),
        "unknown field": ({"no_runs": {"period_minutes": 10, "x": 1}}, "no_runs.x"),
    }
    for name, (body, field) in bad.items():
        resp = _alerts(workspace, rule["id"], body)
        assert resp.status_code == 422, (name, resp.text)
        assert resp.json["error"]["details"][0]["field"] == field, (name, resp.json)

    both = {"latency": {"p95_ms": 250}, "no_runs": {"period_minutes": 60}}
    resp = _alerts(workspace, rule["id"], both)
    assert resp.status_code == 200, resp.text
    assert resp.json["alert_settings"] == {
        "latency": {"p95_ms": 250.0, "window_minutes": 15, "min_runs": 1},
        "no_runs": {"period_minutes": 60},
    }
    kept = _alerts(workspace, rule["id"], {"latency": None}).json["alert_settings"]
    assert kept == {"no_runs": {"period_minutes": 60}}

    assert _alerts(other_workspace, rule["id"], both).status_code == 404
    assert other_workspace.call("GET", ALERTS).json["items"] == []
    _, supervisor = workspace.create_agent("supervisor")
    assert _alerts(workspace, rule["id"], both, token=supervisor).status_code == 403
    assert workspace.call("GET", ALERTS, token=supervisor).status_code == 200


def test_a_latency_alert_fires_once_when_p95_crosses_and_resolves_when_the_window_empties(
    ws, moved_clock
):
    moved_clock.move_to(T0)
    rule = _vip_greeting(ws, "slow", "On it")
    # Any real evaluation takes longer than 10 µs, so p95 crosses it once enough runs count.
    settings = {"latency": {"p95_ms": 0.01, "window_minutes": 15, "min_runs": 2}}
    assert _alerts(ws, rule["id"], settings).status_code == 200
    conversation_id = add_conversation(ws)
    _tag(ws, conversation_id, "vip")
    wait_settled(ws)
    wait_runs(ws, 1)
    _check()  # one run: under min_runs
    assert _emitted(ws) == []

    _tag(ws, conversation_id, "gold")
    wait_settled(ws, at_least_rows=2)
    wait_runs(ws, 2)
    moved_clock.advance(minutes=1)
    _check()
    _check()  # the same incident: checked again, not emitted again
    [event] = _emitted(ws)
    assert event["kind"] == "latency" and event["rule_id"] == rule["id"]
    assert event["threshold"] == 0.01 and event["observed"] > 0.01
    assert event["details"] == {"window_minutes": 15, "runs": 2}
    [item] = stats(ws, ALERTS)["items"]
    assert item["status"] == "open" and item["kind"] == "latency"

    moved_clock.move_to(T0 + dt.timedelta(minutes=30))  # the runs left the window
    _check()
    [item] = stats(ws, ALERTS)["items"]
    assert item["status"] == "resolved" and len(_emitted(ws)) == 1


def test_deleting_a_rule_resolves_its_open_alert(ws, moved_clock):
    rule = create_rule(ws, name="gone")
    assert _alerts(ws, rule["id"], {"no_runs": {"period_minutes": 10}}).status_code == 200
    moved_clock.advance(minutes=11)
    _check()
    assert stats(ws, ALERTS)["open_now"] == 1

    assert ws.call("DELETE", f"{RULES}/{rule['id']}").status_code in (200, 204)
    moved_clock.advance(minutes=5)
    _check()
    body = stats(ws, ALERTS)
    assert body["open_now"] == 0, body
    assert body["items"][0]["status"] == "resolved"


def test_a_failure_rate_just_under_the_threshold_does_not_fire(ws, moved_clock):
    moved_clock.move_to(T0)
    rule = _vip_greeting(ws, "greet", "Welcome back")
    settings = {"failure_rate": {"threshold_percent": 66.67, "window_minutes": 15, "min_runs": 3}}
    assert _alerts(ws, rule["id"], settings).status_code == 200
    failing = add_conversation(ws, channel="whatsapp")  # window closed: sends fail
    _tag(ws, failing, "vip")
    _tag(ws, failing, "gold")
    _tag(ws, add_conversation(ws), "vip")
    wait_settled(ws, at_least_rows=3)
    totals = wait_runs(ws, 3)["totals"]
    assert totals["failures"] == 2, totals  # 66.666... %: under 66.67 %
    moved_clock.advance(minutes=1)
    _check()
    assert _emitted(ws) == []


def test_a_no_runs_alert_waits_while_the_rule_is_rolled_out_to_no_one(ws, moved_clock):
    """At 0 % the rule runs on no conversation by design: no alert then, and its silence
    counts from when the rollout lets it run on some again."""
    rule = create_rule(ws, name="refunds")
    rollout = f"{RULES}/{rule['id']}/rollout"
    assert _alerts(ws, rule["id"], {"no_runs": {"period_minutes": 10}}).status_code == 200
    resp = ws.call("PATCH", rollout, json={"rollout_percentage": 0})
    assert resp.status_code == 200, resp.text
    moved_clock.advance(minutes=60)
    _check()
    assert _emitted(ws) == []

    resp = ws.call("PATCH", rollout, json={"rollout_percentage": 25})
    assert resp.status_code == 200, resp.text
    _alerted_only_after_ten_minutes(ws, moved_clock, rule)  # counted from the rollout
