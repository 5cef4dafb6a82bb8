"""The global control: the API, the activity log, and a real worker pausing, resuming, capping."""

from __future__ import annotations

import datetime as dt
import threading
import time

from sqlalchemy import func, select, update

from scheduler.jobs import sweep_automation_events
from shared.db import session_scope
from shared.models import ActivityLog, AutomationEvent, AutomationRun
from tests.automation.conftest import (
    add_conversation,
    conversation,
    create_rule,
    queue_rows,
    runs,
    send_message,
    tid,
    wait_settled,
)
from tests.automation_ops.conftest import CONTROL
from tests.waiting import wait_until


def _patch(ws, body: dict, **kwargs):
    return ws.call("PATCH", CONTROL, json=body, **kwargs)


def _held(ws) -> list[AutomationEvent]:
    return [row for row in queue_rows(ws) if (row.error or "").startswith("held:")]


def test_the_control_is_read_changed_audited_and_validated(workspace, other_workspace):
    initial = workspace.call("GET", CONTROL)
    assert initial.status_code == 200, initial.text
    assert initial.json | {"actions_this_minute": None} == {
        "enabled": True,
        "paused_event_types": [],
        "max_actions_per_minute": None,
        "pause_reason": None,
        "updated_at": None,
        "updated_by": None,
        "held_events": 0,
        "actions_this_minute": None,
    }
    resp = _patch(
        workspace,
        {
            "enabled": False,
            "pause_reason": "incident 42",
            "paused_event_types": ["message.created", "message.created"],
            "max_actions_per_minute": 500,
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json
    assert body["enabled"] is False and body["pause_reason"] == "incident 42"
    assert body["paused_event_types"] == ["message.created"]
    assert body["max_actions_per_minute"] == 500
    assert body["updated_by"] == workspace.admin["id"] and body["updated_at"]
    assert workspace.call("GET", CONTROL).json["enabled"] is False
    assert other_workspace.call("GET", CONTROL).json["enabled"] is True  # per tenant

    cleared = _patch(workspace, {"max_actions_per_minute": None, "enabled": True})
    assert cleared.json["max_actions_per_minute"] is None and cleared.json["enabled"] is True
    assert cleared.json["paused_event_types"] == ["message.created"]  # not sent: kept

    with session_scope() as session:
        logs = session.scalars(
            select(ActivityLog)
            .where(
                ActivityLog.tenant_id == tid(workspace),
                ActivityLog.action == "automation_control.updated",
            )
            .order_by(ActivityLog.created_at)
        ).all()
    assert len(logs) == 2
    assert logs[0].before["enabled"] is True and logs[0].after["enabled"] is False
    assert logs[0].after["max_actions_per_minute"] == 500
    assert logs[1].after["max_actions_per_minute"] is None

    bad = {
        "paused_event_types": (
            {"paused_event_types": ["message.created", "no.such_type"]},
            "paused_event_types[1]",
        ),
        "not triggerable": ({"paused_event_types": ["campaign.started"]}, "paused_event_types[0]"),
        "ceiling": ({"max_actions_per_minute": 0}, "max_actions_per_minute"),
        "null enabled": ({"enabled": None}, "enabled"),
        "unknown field": ({"pasued": True}, "pasued"),
    }
    for name, (payload, field) in bad.items():
        resp = _patch(workspace, payload)
        assert resp.status_code == 422, (name, resp.text)
        assert resp.json["error"]["details"][0]["field"] == field, name


def test_supervisors_read_the_control_and_only_admins_change_it(workspace):
    _, supervisor = workspace.create_agent("supervisor")
    _, agent = workspace.create_agent("agent")
    assert workspace.call("GET", CONTROL, token=supervisor).status_code == 200
    assert workspace.call("GET", CONTROL, token=agent).status_code == 403
    for token in (supervisor, agent):
        resp = _patch(workspace, {"enabled": False}, token=token)
        assert resp.status_code == 403 and resp.json["error"]["code"] == "forbidden"
    assert workspace.call("GET", CONTROL).json["enabled"] is True


def test_paused_events_wait_unevaluated_and_run_when_re_enabled(ws):
    create_rule(ws)
    _patch(ws, {"enabled": False, "pause_reason": "maintenance"})
    conversation_id = add_conversation(ws)
    send_message(ws, conversation_id, "refund please")
    [held] = wait_until(lambda: _held(ws), "the event held")
    assert held.status == "pending" and held.attempts == 0
    assert held.error == "held: automation is paused for the workspace: maintenance"
    assert runs(ws) == [] and conversation(conversation_id).tags == []
    assert ws.call("GET", CONTROL).json["held_events"] == 1
    # the sweeper never re-drives a held event (judged by its due time, which a re-drive
    # moves: the sweeper's count covers every tenant of the shared test database)
    with session_scope() as session:
        sweep_automation_events(session)
    assert [row.sweep_at for row in _held(ws)] == [held.sweep_at]

    assert _patch(ws, {"enabled": True}).json["held_events"] == 0
    [row] = wait_settled(ws)
    assert row.status == "done" and row.error is None
    assert conversation(conversation_id).tags == ["refund"]
    assert [run.status for run in runs(ws)] == ["matched"]


def test_a_paused_event_type_waits_while_the_others_run(ws):
    create_rule(ws)
    create_rule(
        ws,
        name="on status",
        trigger_event_types=["conversation.status_changed"],
        conditions={"match": "all", "conditions": []},
        actions=[{"type": "add_tags", "params": {"tags": ["status"]}}],
    )
    _patch(ws, {"paused_event_types": ["message.created"]})
    conversation_id = add_conversation(ws)
    send_message(ws, conversation_id, "refund please")
    resp = ws.call(
        "PATCH", f"/api/conversations/{conversation_id}/status", json={"status": "pending"}
    )
    assert resp.status_code == 200, resp.text
    wait_until(lambda: conversation(conversation_id).tags == ["status"], "the status rule ran")
    [held] = wait_until(lambda: _held(ws), "the message event held")
    assert held.event_type == "message.created"
    assert held.error == "held: automation is paused for message.created events"

    _patch(ws, {"paused_event_types": []})
    wait_settled(ws, at_least_rows=2)
    assert sorted(conversation(conversation_id).tags) == ["refund", "status"]


def test_a_pause_stops_a_running_workers_actions_within_a_second(ws):
    create_rule(ws)
    conversation_ids = [add_conversation(ws) for _ in range(4)]
    stop = threading.Event()
    sent: list[str] = []

    def produce() -> None:
        n = 0
        while not stop.is_set():
            send_message(ws, conversation_ids[n % 4], f"refund {n}")
            sent.append(str(n))
            n += 1
            time.sleep(0.02)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        wait_until(lambda: len(runs(ws)) >= 5, "the worker acting", timeout=20)
        assert _patch(ws, {"enabled": False}).status_code == 200
        with session_scope() as session:
            paused_at = session.scalar(select(func.clock_timestamp()))
        time.sleep(1.5)  # real time on purpose: the load keeps coming while paused
    finally:
        stop.set()
        producer.join(timeout=10)
    with session_scope() as session:
        late = session.scalar(
            select(func.count()).where(
                AutomationRun.tenant_id == tid(ws),
                AutomationRun.created_at > paused_at + dt.timedelta(seconds=1),
            )
        )
    assert late == 0
    assert _held(ws), "events that came in while paused wait"

    _patch(ws, {"enabled": True})
    wait_settled(ws, at_least_rows=len(sent))
    assert len(runs(ws)) == len(sent)  # every event ran once, none lost, none twice
    assert {run.status for run in runs(ws)} == {"matched"}


def test_past_the_action_ceiling_events_wait_for_the_next_minute(ws, moved_clock):
    moved_clock.move_to(dt.datetime(2026, 6, 1, 10, 0, 5, tzinfo=dt.UTC))
    create_rule(ws)
    _patch(ws, {"max_actions_per_minute": 2})
    conversation_ids = [add_conversation(ws) for _ in range(3)]
    for conversation_id in conversation_ids:
        send_message(ws, conversation_id, "refund please")

    def deferred():
        rows = queue_rows(ws)
        done = [r for r in rows if r.status == "done"]
        waiting = [r for r in rows if (r.error or "").startswith("deferred:")]
        return waiting if len(done) == 2 and len(waiting) == 1 else None

    [waiting] = wait_until(deferred, "two events run, the third deferred")
    assert waiting.status == "pending" and waiting.attempts == 0
    assert waiting.error == "deferred: action ceiling of 2/min reached"
    assert len(runs(ws)) == 2
    assert ws.call("GET", CONTROL).json["actions_this_minute"] == 2

    # the next minute: the sweeper sends the event again (its due time moved, not slept)
    moved_clock.move_to(dt.datetime(2026, 6, 1, 10, 1, 0, tzinfo=dt.UTC))
    with session_scope() as session:
        session.execute(
            update(AutomationEvent)
            .where(AutomationEvent.id == waiting.id)
            .values(sweep_at=func.now() - dt.timedelta(seconds=1))
        )
    with session_scope() as session:
        # NOTE: at least: the count covers every tenant of the shared test database.
        assert sweep_automation_events(session) >= 1
    wait_settled(ws, at_least_rows=3)
    assert [conversation(c).tags for c in conversation_ids] == [["refund"]] * 3
    assert ws.call("GET", CONTROL).json["actions_this_minute"] == 1


def test_an_event_needing_more_than_the_ceiling_runs_alone_in_a_fresh_minute(ws, moved_clock):
    moved_clock.move_to(dt.datetime(2026, 6, 2, 10, 0, 5, tzinfo=dt.UTC))
    create_rule(
        ws,
        actions=[
            {"type": "add_tags", "params": {"tags": ["refund"]}},
            {"type": "set_priority", "params": {"priority": "high"}},
        ],
    )
    _patch(ws, {"max_actions_per_minute": 1})
    first, second = add_conversation(ws), add_conversation(ws)
    send_message(ws, first, "refund please")
    wait_settled(ws)
    assert conversation(first).tags == ["refund"]  # 2 actions > 1, but the minute was fresh
    send_message(ws, second, "refund please")
    waiting = wait_until(
        lambda: [r for r in queue_rows(ws) if (r.error or "").startswith("deferred:")],
        "the second event deferred",
    )
    assert len(waiting) == 1 and conversation(second).tags == []
    assert ws.call("GET", CONTROL).json["actions_this_minute"] == 2
