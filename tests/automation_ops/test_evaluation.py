"""The real worker applies the effective state: snoozes ending, windows opening, the dry-run."""

from __future__ import annotations

import datetime as dt

from tests.automation.conftest import (
    add_conversation,
    conversation,
    create_rule,
    runs,
    send_message,
    wait_settled,
)
from tests.automation_ops.conftest import CONTROL, RULES, ts

UTC = dt.UTC


def test_a_snoozed_rule_is_skipped_with_its_reason_until_the_snooze_ends(ws, moved_clock):
    moved_clock.move_to(dt.datetime(2026, 7, 1, 9, 0, tzinfo=UTC))
    rule = create_rule(ws)
    until = dt.datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    # the snooze is judged on the moved clock, like the evaluator
    resp = ws.call("POST", f"{RULES}/{rule['id']}/snooze", json={"until": ts(until)})
    assert resp.status_code == 200, resp.text
    conversation_id = add_conversation(ws)
    send_message(ws, conversation_id, "refund please")
    wait_settled(ws)
    [skipped] = runs(ws)
    assert skipped.status == "skipped" and skipped.error == "snoozed until 2026-07-01T12:00:00Z"
    assert conversation(conversation_id).tags == []

    moved_clock.move_to(until)  # the snooze ends at its time, by itself
    send_message(ws, conversation_id, "refund again")
    wait_settled(ws, at_least_rows=2)
    assert [run.status for run in runs(ws)] == ["skipped", "matched"]
    assert conversation(conversation_id).tags == ["refund"]


def test_the_worker_runs_a_rule_only_inside_its_windows_across_a_dst_change(ws, moved_clock):
    rule = create_rule(ws)
    days = [{"weekday": d, "intervals": [{"start": "09:00", "end": "17:00"}]} for d in range(7)]
    ws.call(
        "PATCH",
        f"{RULES}/{rule['id']}/schedule",
        json={"timezone": "America/New_York", "days": days},
    )
    # New York springs forward on 2026-03-08: 13:30 UTC is 08:30 EST the day before
    # (closed) and 09:30 EDT that day (open).
    conversation_id = add_conversation(ws)
    moved_clock.move_to(dt.datetime(2026, 3, 7, 13, 30, tzinfo=UTC))
    send_message(ws, conversation_id, "refund please")
    wait_settled(ws)
    moved_clock.move_to(dt.datetime(2026, 3, 8, 13, 30, tzinfo=UTC))
    send_message(ws, conversation_id, "refund please")
    wait_settled(ws, at_least_rows=2)
    statuses = [(run.status, run.error) for run in runs(ws)]
    assert statuses == [("skipped", "outside its schedule windows"), ("matched", None)]
    # and the preview said so beforehand, from the same code
    moved_clock.move_to(dt.datetime(2026, 3, 7, 13, 30, tzinfo=UTC))
    preview = ws.call("GET", f"{RULES}/{rule['id']}/schedule/preview?count=1").json
    assert preview["inside_now"] is False
    assert preview["windows"][0]["start"] == "2026-03-07T14:00:00Z"  # 09:00 EST


def test_the_dry_run_says_why_a_rule_would_not_run(ws, moved_clock):
    rule = create_rule(ws)
    conversation_id = add_conversation(ws)
    payload = {"conversation_id": conversation_id, "body": "refund please"}

    def dry_run() -> dict:
        resp = ws.call("POST", f"{RULES}/{rule['id']}/dry-run", json={"payload": payload})
        assert resp.status_code == 200, resp.text
        return resp.json

    assert dry_run()["effective_state"]["runs"] is True
    until = moved_clock.now + dt.timedelta(hours=1)
    ws.call("POST", f"{RULES}/{rule['id']}/snooze", json={"until": ts(until)})
    ws.call("PATCH", CONTROL, json={"paused_event_types": ["message.created"]})
    ws.call("PATCH", f"{RULES}/{rule['id']}/rollout", json={"rollout_percentage": 0})
    result = dry_run()
    assert result["matched"] is True  # the conditions hold...
    state = result["effective_state"]  # ...but the rule would not run, and here is why
    assert state["state"] == "inactive" and state["runs"] is False
    assert state["reasons"] == [
        f"snoozed until {ts(until)}",
        "automation is paused for message.created events",
        "rolled out to 0 % of conversations",
    ]
    assert [a["would_run"] for a in result["actions"]] == [False]
    # unsaved edits switch the rule off: that reason comes first
    off = ws.call(
        "POST",
        f"{RULES}/{rule['id']}/dry-run",
        json={"payload": payload, "rule": {"is_active": False}},
    ).json["effective_state"]
    assert off["reasons"][0] == "the rule is inactive"
    # the dry-run changed nothing
    assert conversation(conversation_id).tags == []
