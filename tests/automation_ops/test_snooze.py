"""Snoozing rules over HTTP: one, many in one transaction, listing, ending by itself."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select

from shared.db import session_scope
from shared.models import ActivityLog
from tests.automation.conftest import create_rule, tid
from tests.automation_ops.conftest import RULES, parse, ts


def _state(ws, rule_id: str) -> dict:
    resp = ws.call("GET", f"{RULES}/{rule_id}/effective-state")
    assert resp.status_code == 200, resp.text
    return resp.json


def test_a_snooze_stops_the_rule_until_its_time_and_then_ends_by_itself(workspace, moved_clock):
    rule = create_rule(workspace)
    until = moved_clock.now + dt.timedelta(hours=2)
    resp = workspace.call("POST", f"{RULES}/{rule['id']}/snooze", json={"until": ts(until)})
    assert resp.status_code == 200, resp.text
    assert parse(resp.json["snoozed_until"]) == until
    assert resp.json["version"] == rule["version"]  # what the rule does has not changed

    state = _state(workspace, rule["id"])
    assert state["state"] == "inactive" and state["runs"] is False
    assert state["reasons"] == [f"snoozed until {ts(until)}"]
    snooze = next(c for c in state["checks"] if c["check"] == "snooze")
    assert snooze["ok"] is False and parse(snooze["snoozed_until"]) == until

    listed = workspace.call("GET", f"{RULES}/snoozed").json["items"]
    assert [r["id"] for r in listed] == [rule["id"]]

    moved_clock.move_to(until + dt.timedelta(seconds=1))  # no job runs: time passes
    state = _state(workspace, rule["id"])
    assert state["state"] == "active" and state["reasons"] == []
    assert workspace.call("GET", f"{RULES}/snoozed").json["items"] == []


def test_unsnooze_ends_the_snooze_now_and_is_harmless_when_not_snoozed(workspace):
    rule = create_rule(workspace)
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    workspace.call("POST", f"{RULES}/{rule['id']}/snooze", json={"until": ts(until)})
    resp = workspace.call("POST", f"{RULES}/{rule['id']}/unsnooze")
    assert resp.status_code == 200 and resp.json["snoozed_until"] is None
    assert _state(workspace, rule["id"])["state"] == "active"
    again = workspace.call("POST", f"{RULES}/{rule['id']}/unsnooze")
    assert again.status_code == 200 and again.json["snoozed_until"] is None
    with session_scope() as session:
        actions = session.scalars(
            select(ActivityLog.action)
            .where(ActivityLog.tenant_id == tid(workspace))
            .where(ActivityLog.entity_id == uuid.UUID(rule["id"]))
            .order_by(ActivityLog.created_at)
        ).all()
    assert actions == [
        "automation_rule.created",
        "automation_rule.snoozed",
        "automation_rule.unsnoozed",
    ]


def test_past_or_far_snooze_times_are_422_naming_the_field(workspace):
    rule = create_rule(workspace)
    now = dt.datetime.now(dt.UTC)
    for until in (now - dt.timedelta(minutes=1), now + dt.timedelta(days=400)):
        resp = workspace.call("POST", f"{RULES}/{rule['id']}/snooze", json={"until": ts(until)})
        assert resp.status_code == 422, resp.text
        assert resp.json["error"]["details"][0]["field"] == "until"
        resp = workspace.call(
            "POST", f"{RULES}/snooze", json={"rule_ids": [rule["id"]], "until": ts(until)}
        )
        assert resp.status_code == 422
        assert resp.json["error"]["details"][0]["field"] == "until"
    naive = workspace.call(
        "POST", f"{RULES}/{rule['id']}/snooze", json={"until": "2030-01-01T00:00:00"}
    )
    assert naive.status_code == 422 and naive.json["error"]["details"][0]["field"] == "until"
    assert workspace.call("GET", f"{RULES}/{rule['id']}").json["snoozed_until"] is None


def test_bulk_snooze_is_one_transaction_with_a_result_per_rule(workspace, other_workspace):
    first, second = create_rule(workspace, name="a"), create_rule(workspace, name="b")
    foreign = create_rule(other_workspace)
    unknown = str(uuid.uuid4())
    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    body = {
        "rule_ids": [first["id"], foreign["id"], second["id"], unknown, first["id"]],
        "until": ts(until),
    }
    resp = workspace.call("POST", f"{RULES}/snooze", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json["snoozed"] == 2 and resp.json["not_found"] == 2
    assert [(r["rule_id"], r["status"]) for r in resp.json["results"]] == [
        (first["id"], "snoozed"),
        (foreign["id"], "not_found"),  # another tenant's rule is unknown here
        (second["id"], "snoozed"),
        (unknown, "not_found"),
    ]
    snoozed = {r["id"] for r in workspace.call("GET", f"{RULES}/snoozed").json["items"]}
    assert snoozed == {first["id"], second["id"]}
    assert other_workspace.call("GET", f"{RULES}/{foreign['id']}").json["snoozed_until"] is None

    empty = workspace.call("POST", f"{RULES}/snooze", json={"rule_ids": [], "until": ts(until)})
    assert empty.status_code == 422
    assert empty.json["error"]["details"][0]["field"] == "rule_ids"


def test_another_tenants_rule_is_404_and_permissions_hold(workspace, other_workspace):
    foreign = create_rule(other_workspace)
    until = ts(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    for method, suffix, body in (
        ("POST", "snooze", {"until": until}),
        ("POST", "unsnooze", None),
        ("GET", "effective-state", None),
        ("GET", "schedule/preview", None),
        ("PATCH", "rollout", {"rollout_percentage": 10}),
        ("PATCH", "schedule", {"enabled": False}),
    ):
        resp = workspace.call(method, f"{RULES}/{foreign['id']}/{suffix}", json=body)
        assert resp.status_code == 404, (suffix, resp.text)
        assert resp.json["error"]["code"] == "not_found"

    rule = create_rule(workspace)
    _, supervisor = workspace.create_agent("supervisor")
    _, agent = workspace.create_agent("agent")
    assert workspace.call("GET", f"{RULES}/snoozed", token=supervisor).status_code == 200
    assert (
        workspace.call("GET", f"{RULES}/{rule['id']}/effective-state", token=supervisor)
    ).status_code == 200
    for token, expected in ((supervisor, 403), (agent, 403)):
        resp = workspace.call(
            "POST", f"{RULES}/{rule['id']}/snooze", json={"until": until}, token=token
        )
        assert resp.status_code == expected
        resp = workspace.call(
            "POST", f"{RULES}/snooze", json={"rule_ids": [rule["id"]], "until": until}, token=token
        )
        assert resp.status_code == expected
    assert workspace.call("GET", f"{RULES}/snoozed", token=agent).status_code == 403
    not_a_trigger = workspace.call(
        "GET", f"{RULES}/{rule['id']}/effective-state?event_type=note.created"
    )
    assert not_a_trigger.status_code == 422
    assert not_a_trigger.json["error"]["details"][0]["field"] == "event_type"
