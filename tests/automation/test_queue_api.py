"""Runs and the event queue through the API: lists, one item, replay, stats, CSV, cleanup."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid

from sqlalchemy import update

from shared.db import session_scope
from shared.models import AutomationEvent
from tests.automation.conftest import (
    RULES,
    add_conversation,
    create_rule,
    send_message,
    wait_settled,
)

EVENTS = "/api/automation/events"
RUNS = "/api/automation/runs"


def fired(ws):
    """A rule, a conversation and two messages (one matching): two queue rows, two runs."""
    rule = create_rule(ws)
    conv_id = add_conversation(ws)
    send_message(ws, conv_id, "hello")
    send_message(ws, conv_id, "refund")
    rows = wait_settled(ws, at_least_rows=2)
    return rule, conv_id, rows


def ids(resp) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [item["id"] for item in resp.json["items"]]


def test_runs_and_events_are_listed_filtered_and_replayed(ws):
    rule, conv_id, rows = fired(ws)
    all_runs = ws.call("GET", RUNS).json["items"]
    assert len(all_runs) == 2
    matched = ids(ws.call("GET", RUNS, params={"status": "matched"}))
    assert len(matched) == 1
    assert set(ids(ws.call("GET", f"{RULES}/{rule['id']}/runs"))) == {r["id"] for r in all_runs}
    assert ids(ws.call("GET", RUNS, params={"from": "2999-01-01T00:00:00Z"})) == []
    for row in rows:
        per_event = ids(ws.call("GET", f"{EVENTS}/{row.id}/runs"))
        assert len(per_event) == 1

    one = ws.call("GET", f"{RUNS}/{matched[0]}")
    assert one.status_code == 200 and one.json["facts"]["message.content"] == "refund"
    replay = ws.call("GET", f"{RUNS}/{matched[0]}/replay-context")
    assert replay.status_code == 200, replay.text
    body = replay.json
    assert body["same_decision"] is True
    assert body["replayed"] == {
        "matched": body["matched"],
        "condition_results": body["condition_results"],
    }
    assert body["rule_snapshot"]["version"] == 1 and body["event"]["payload"]["body"] == "refund"

    # The rule changes and is deleted: the run keeps its snapshot and still replays.
    ws.call(
        "PATCH", f"{RULES}/{rule['id']}", json={"conditions": {"match": "any", "conditions": []}}
    )
    ws.call("DELETE", f"{RULES}/{rule['id']}")
    again = ws.call("GET", f"{RUNS}/{matched[0]}/replay-context").json
    assert again["same_decision"] is True and again["rule_snapshot"]["version"] == 1

    listed = ids(ws.call("GET", EVENTS))
    assert listed == [str(r.id) for r in rows][::-1]
    assert ids(ws.call("GET", EVENTS, params={"status": "failed"})) == []
    assert len(ids(ws.call("GET", EVENTS, params={"event_type": "message.created"}))) == 2
    assert len(ids(ws.call("GET", f"/api/conversations/{conv_id}/automation-events"))) == 2
    by_print = ws.call("GET", f"{EVENTS}/by-fingerprint/{rows[0].fingerprint}")
    assert ids(by_print) == [str(rows[0].id)]
    one_event = ws.call("GET", f"{EVENTS}/{rows[0].id}")
    assert one_event.status_code == 200 and one_event.json["status"] == "done"

    stats = ws.call("GET", f"{EVENTS}/stats").json
    assert stats["counts"] == {"pending": 0, "processing": 0, "done": 2, "failed": 0}
    assert stats["oldest_pending_age_seconds"] is None


def test_csv_exports_stream_every_row(ws):
    fired(ws)
    resp = ws.call("GET", f"{RUNS}/export")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert len(rows) == 2 and {r["status"] for r in rows} == {"matched", "not_matched"}
    resp = ws.call("GET", f"{EVENTS}/export", params={"status": "done"})
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert len(rows) == 2 and rows[0]["event_type"] == "message.created"


def test_retry_failed_and_cleanup_act_on_failed_events_only(ws):
    _, _, rows = fired(ws)
    with session_scope() as session:
        session.execute(
            update(AutomationEvent)
            .where(AutomationEvent.id == rows[0].id)
            .values(status="failed", created_at=AutomationEvent.created_at - dt.timedelta(days=40))
        )
    cleaned = ws.call("POST", f"{EVENTS}/cleanup", json={"older_than_days": 30})
    assert cleaned.status_code == 200 and cleaned.json == {"deleted": 1}
    assert ws.call("GET", f"{EVENTS}/{rows[0].id}").status_code == 404
    assert ws.call("POST", f"{EVENTS}/cleanup", json={"older_than_days": -1}).status_code == 422
    retried = ws.call("POST", f"{EVENTS}/retry-failed")
    assert retried.status_code == 202 and retried.json["count"] == 0


def test_another_tenants_runs_and_events_answer_404(ws, other_workspace):
    _, conv_id, rows = fired(other_workspace)
    run_id = other_workspace.call("GET", RUNS).json["items"][0]["id"]
    event_id = str(rows[0].id)
    for method, path in [
        ("GET", f"{RUNS}/{run_id}"),
        ("GET", f"{RUNS}/{run_id}/replay-context"),
        ("GET", f"{EVENTS}/{event_id}"),
        ("GET", f"{EVENTS}/{event_id}/runs"),
        ("POST", f"{EVENTS}/{event_id}/retry"),
        ("POST", f"{EVENTS}/{event_id}/reprocess"),
        ("GET", f"/api/conversations/{conv_id}/automation-events"),
        ("GET", f"{RUNS}/{uuid.uuid4()}"),
    ]:
        resp = ws.call(method, path)
        assert resp.status_code == 404, (method, path, resp.text)
    assert ws.call("GET", RUNS).json["items"] == []
    assert ws.call("GET", EVENTS).json["items"] == []
    assert ws.call("GET", f"{EVENTS}/by-fingerprint/{rows[0].fingerprint}").json["items"] == []
    assert ws.call("GET", f"{EVENTS}/stats").json["total"] == 0
    exported = ws.call("GET", f"{RUNS}/export").text.strip().splitlines()
    assert len(exported) == 1  # the header only
