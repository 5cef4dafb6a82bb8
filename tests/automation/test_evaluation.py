"""Rules evaluated by the real in-process worker on real events: actions, runs, loops, once-only."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select, update

from scheduler.jobs import sweep_automation_events
from shared.automation import queue
from shared.config import get_settings
from shared.db import session_scope
from shared.events import Actor, emit
from shared.models import AutomationEvent, Conversation, Message, Note, OutboxEvent, Tenant
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
from tests.waiting import wait_until
from workers.actors.automation import evaluate_rules


def outbox(ws, event_type: str) -> list[OutboxEvent]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.tenant_id == tid(ws), OutboxEvent.type == event_type)
                .order_by(OutboxEvent.occurred_at)
            )
        )


def test_a_rule_fires_on_a_real_message_and_its_actions_change_the_conversation(ws):
    agent, _ = ws.create_agent("agent")
    rule = create_rule(
        ws,
        actions=[
            {"type": "add_tags", "params": {"tags": ["refund"]}},
            {"type": "set_priority", "params": {"priority": "high"}},
            {"type": "assign_agent", "params": {"agent_id": agent["id"]}},
            {"type": "add_note", "params": {"body": "Refund asked by {{contact.name}}"}},
            {"type": "send_message", "params": {"body": "Hi {{contact.name}}, on it"}},
        ],
    )
    conv_id = add_conversation(ws)
    send_message(ws, conv_id, "Hello there")
    send_message(ws, conv_id, "I want a refund")
    wait_settled(ws, at_least_rows=3)

    after = conversation(conv_id)
    assert after.tags == ["refund"] and after.priority == "high"
    assert str(after.assignee_id) == agent["id"]
    with session_scope() as session:
        [note] = session.scalars(select(Note).where(Note.conversation_id == after.id)).all()
        sent = session.scalars(
            select(Message).where(
                Message.conversation_id == after.id, Message.sender_type == "automation"
            )
        ).all()
    assert note.body == "Refund asked by Carla Customer"
    assert str(note.author_id) == ws.admin["id"]
    assert [m.body for m in sent] == ["Hi Carla Customer, on it"]
    assert str(sent[0].sender_id) == rule["id"]

    by_status = {}
    for run in runs(ws):
        by_status.setdefault(run.status, []).append(run)
    # The greeting did not match; the refund matched; the rule's own reply is a loop.
    assert len(by_status["not_matched"]) == 1 and len(by_status["matched"]) == 1
    [skipped] = by_status["skipped"]
    assert skipped.error.startswith("loop")
    matched = by_status["matched"][0]
    assert matched.rule_version == 1 and matched.rule_snapshot["name"] == rule["name"]
    [leaf] = matched.condition_results
    assert leaf["attribute"] == "message.content" and leaf["matched"] is True
    assert leaf["seen"] == "I want a refund"
    assert [a["result"] for a in matched.action_results] == ["applied"] * 5
    assert all(a["duration_ms"] >= 0 for a in matched.action_results)
    assert matched.facts["contact.name"] == "Carla Customer"
    assert matched.facts["conversation.channel"] == "email"

    [tags_event] = outbox(ws, "conversation.tags_updated")
    assert tags_event.actor_type == "automation" and str(tags_event.actor_id) == rule["id"]
    assert tags_event.causation == {"rule_ids": [rule["id"]], "depth": 1}


def test_rules_run_in_priority_order_and_stop_processing_stops_the_rest(ws):
    first = create_rule(
        ws,
        name="first",
        priority=1,
        stop_processing=True,
        actions=[{"type": "add_tags", "params": {"tags": ["first"]}}],
    )
    create_rule(
        ws,
        name="second",
        priority=2,
        actions=[{"type": "add_tags", "params": {"tags": ["second"]}}],
    )
    conv_id = add_conversation(ws)
    send_message(ws, conv_id, "refund please")
    wait_settled(ws)
    assert conversation(conv_id).tags == ["first"]
    statuses = {run.rule_snapshot["name"]: (run.status, run.error) for run in runs(ws)}
    assert statuses["first"] == ("matched", None)
    assert statuses["second"] == ("skipped", f"stopped by rule {first['id']} (stop_processing)")


def test_rules_that_trigger_each_other_stop(ws):
    """A ring of three rules (t1 -> t2 -> t3 -> t1): loops and the depth bound end it."""
    for here, there in (("t1", "t2"), ("t2", "t3"), ("t3", "t1")):
        create_rule(
            ws,
            name=here,
            trigger_event_types=["conversation.tags_updated"],
            conditions={
                "match": "all",
                "conditions": [
                    {"attribute": "conversation.tags", "operator": "contains", "value": here}
                ],
            },
            actions=[
                {"type": "remove_tags", "params": {"tags": [here]}},
                {"type": "add_tags", "params": {"tags": [there]}},
            ],
        )
    conv_id = add_conversation(ws)
    resp = ws.call("PATCH", f"/api/conversations/{conv_id}/tags", json={"add": ["t1"]})
    assert resp.status_code == 200, resp.text
    # t1 (depth 0) -> t2 (depth 1) -> t3 (depth 2) -> t1 again at depth 3: the bound.
    wait_settled(ws, at_least_rows=4)
    assert get_settings().automation_max_chain_depth == 3
    assert conversation(conv_id).tags == ["t1"]
    changes = outbox(ws, "conversation.tags_updated")
    assert len(changes) == 1 + 3 * 2  # the agent's, then two per rule that fired
    last = [run for run in runs(ws) if run.automation_event_id == queue_rows(ws)[-1].id]
    assert {run.status for run in last} == {"skipped"}
    assert all("depth 3 reached the bound of 3" in run.error for run in last)


def test_the_same_event_processed_twice_applies_its_actions_once(ws):
    create_rule(ws)
    conv_id = add_conversation(ws)
    send_message(ws, conv_id, "refund")
    [row] = wait_settled(ws)
    # A duplicate message, a re-dispatch of the outbox event, and a row re-driven after
    # a worker "died" having claimed it: none applies the actions again.
    evaluate_rules.send(str(row.id))
    evaluate_rules.send(str(row.id))
    with session_scope() as session:
        outbox_event = session.get(OutboxEvent, row.outbox_event_id)
        queue.target(session, outbox_event)
    with session_scope() as session:
        session.execute(
            update(AutomationEvent)
            .where(AutomationEvent.id == row.id)
            .values(status="processing", sweep_at=AutomationEvent.created_at)
        )
        assert sweep_automation_events(session) >= 1
    wait_until(lambda: queue_rows(ws)[0].status == "done", "the re-driven row done")
    wait_settled(ws)
    assert len(queue_rows(ws)) == 1
    assert len(runs(ws)) == 1
    assert len(outbox(ws, "conversation.tags_updated")) == 1


def test_a_row_whose_worker_died_mid_evaluation_is_swept_and_applied_once(ws):
    """Killed mid-evaluation, only the claim is committed: the sweeper finishes the row."""
    create_rule(ws)
    conv_id = add_conversation(ws)
    with session_scope() as session:
        outbox_id = emit(
            session,
            "message.created",
            {"conversation_id": conv_id, "body": "refund", "direction": "inbound"},
            tenant_id=tid(ws),
            actor=Actor.system(),
        )
        # The row as a SIGKILLed worker leaves it: claimed (processing), no run, no action.
        session.add(
            AutomationEvent(
                tenant_id=tid(ws),
                outbox_event_id=outbox_id,
                event_type="message.created",
                conversation_id=uuid.UUID(conv_id),
                payload={"conversation_id": conv_id, "body": "refund", "direction": "inbound"},
                fingerprint="x" * 64,
                status="processing",
                attempts=1,
                sweep_at=func.now() - dt.timedelta(seconds=1),
            )
        )
    wait_until(lambda: not outbox_pending(ws), "the outbox dispatched")
    [row] = queue_rows(ws)
    assert row.status == "processing" and runs(ws) == []  # dispatch did not add a second row
    with session_scope() as session:
        # NOTE: at least: the count covers every tenant of the shared test database.
        assert sweep_automation_events(session) >= 1
    wait_until(lambda: queue_rows(ws)[0].status == "done", "the swept row done")
    assert conversation(conv_id).tags == ["refund"]
    assert len(runs(ws)) == 1 and queue_rows(ws)[0].attempts == 2


def outbox_pending(ws) -> bool:
    with session_scope() as session:
        return bool(
            session.scalar(
                select(func.count()).where(
                    OutboxEvent.tenant_id == tid(ws), OutboxEvent.status == "pending"
                )
            )
        )


def test_a_failing_event_ends_failed_and_retry_runs_it(ws, override):
    override(automation_max_attempts=1)
    create_rule(ws)
    with session_scope() as session:
        session.execute(update(Tenant).where(Tenant.id == tid(ws)).values(timezone="Mars/Base"))
    conv_id = add_conversation(ws)
    send_message(ws, conv_id, "refund")
    [row] = wait_settled(ws)
    assert row.status == "failed" and row.attempts == 1 and row.error
    assert conversation(conv_id).tags == [] and runs(ws) == []

    with session_scope() as session:
        session.execute(update(Tenant).where(Tenant.id == tid(ws)).values(timezone="Europe/Berlin"))
    retried = ws.call("POST", f"/api/automation/events/{row.id}/retry")
    assert retried.status_code == 202, retried.text
    wait_until(lambda: queue_rows(ws)[0].status == "done", "the retried row done")
    assert conversation(conv_id).tags == ["refund"]
    again = ws.call("POST", f"/api/automation/events/{row.id}/retry")
    assert again.status_code == 409


def test_reprocess_evaluates_the_stored_event_with_todays_rules(ws):
    create_rule(ws)
    conv_id = add_conversation(ws)
    send_message(ws, conv_id, "refund")
    [row] = wait_settled(ws)
    create_rule(ws, name="late", actions=[{"type": "add_tags", "params": {"tags": ["late"]}}])
    resp = ws.call("POST", f"/api/automation/events/{row.id}/reprocess")
    assert resp.status_code == 202, resp.text
    wait_until(lambda: len(runs(ws)) == 3, "the reprocess runs")
    wait_settled(ws)
    assert sorted(conversation(conv_id).tags) == ["late", "refund"]
    fresh = [run for run in runs(ws) if run.reprocess]
    assert len(fresh) == 2 and {r.status for r in fresh} == {"matched"}
    assert queue_rows(ws)[0].reprocess is False


def test_a_muted_conversation_triggers_no_rule(ws):
    create_rule(
        ws,
        name="mute",
        priority=1,
        actions=[{"type": "mute", "params": {"minutes": 60}}],
    )
    conv_id = add_conversation(ws)
    send_message(ws, conv_id, "refund")
    wait_settled(ws)
    send_message(ws, conv_id, "refund again")
    rows = wait_settled(ws, at_least_rows=2)
    assert rows[-1].status == "done" and rows[-1].error.startswith("conversation muted until")
    assert len(runs(ws)) == 1


def test_round_robin_picks_the_least_loaded_online_agent(ws):
    busy, _ = ws.create_agent("agent")
    free, _ = ws.create_agent("agent")
    ws.create_agent("agent")  # offline: never picked
    for agent in (busy, free):
        resp = ws.call("PATCH", f"/api/agents/{agent['id']}/status", json={"status": "online"})
        assert resp.status_code == 200, resp.text
    add_conversation(ws, assignee_id=uuid.UUID(busy["id"]))
    create_rule(ws, actions=[{"type": "assign_round_robin", "params": {}}])
    conv_id = add_conversation(ws)
    send_message(ws, conv_id, "refund")
    wait_settled(ws)
    assert str(conversation(conv_id).assignee_id) == free["id"]


def test_a_failed_action_fails_the_event_and_retry_reruns_only_that_rule(ws):
    ok = create_rule(
        ws,
        name="priority",
        priority=1,
        trigger_event_types=["conversation.tags_updated"],
        conditions=VIP,
        actions=[{"type": "set_priority", "params": {"priority": "urgent"}}],
    )
    greet = create_rule(
        ws,
        name="greet",
        priority=2,
        trigger_event_types=["conversation.tags_updated"],
        conditions=VIP,
        actions=[{"type": "send_message", "params": {"body": "Welcome back"}}],
    )
    # WhatsApp, and the contact never wrote: the 24-hour window is closed.
    conv_id = add_conversation(ws, channel="whatsapp")
    resp = ws.call("PATCH", f"/api/conversations/{conv_id}/tags", json={"add": ["vip"]})
    assert resp.status_code == 200, resp.text
    [row] = wait_settled(ws)
    assert row.status == "failed" and f"rule {greet['id']}" in row.error
    assert conversation(conv_id).priority == "urgent"
    by_rule = {str(r.rule_id): r for r in runs(ws)}
    assert by_rule[ok["id"]].status == "matched"
    failed = by_rule[greet["id"]]
    assert failed.status == "failed" and failed.action_results[0]["code"] == "window_closed"

    whatsapp_window(conv_id, open_=True)
    assert ws.call("POST", f"/api/automation/events/{row.id}/retry").status_code == 202
    wait_until(lambda: queue_rows(ws)[0].status == "done", "the retried event done")
    wait_settled(ws)
    by_rule = {str(r.rule_id): r for r in runs(ws) if r.automation_event_id == row.id}
    assert len([r for r in runs(ws) if r.automation_event_id == row.id]) == 2
    assert by_rule[ok["id"]].id == runs(ws)[0].id  # kept, not re-run
    assert by_rule[greet["id"]].status == "matched"
    with session_scope() as session:
        sent = session.scalars(
            select(Message.body).where(Message.conversation_id == uuid.UUID(conv_id))
        ).all()
    assert sent == ["Welcome back"]


VIP = {
    "match": "all",
    "conditions": [{"attribute": "conversation.tags", "operator": "contains", "value": "vip"}],
}


def listed(ws, path: str) -> list[dict]:
    resp = ws.call("GET", path)
    assert resp.status_code == 200, resp.text
    return resp.json["items"]


def tag_vip(ws, conv_id: str) -> AutomationEvent:
    resp = ws.call("PATCH", f"/api/conversations/{conv_id}/tags", json={"add": ["vip"]})
    assert resp.status_code == 200, resp.text
    [row] = wait_settled(ws)
    return row


def whatsapp_window(conv_id: str, *, open_: bool) -> None:
    """Open the contact's 24-hour window (it wrote here just now) or close it (it never
    wrote)."""
    with session_scope() as session:
        session.execute(
            update(Conversation)
            .where(Conversation.id == uuid.UUID(conv_id))
            .values(last_inbound_at=func.now() if open_ else None)
        )


def act_on(ws, event_id: uuid.UUID, operation: str) -> list[dict]:
    """Retry or reprocess the event; its runs once the queue has settled again."""
    before = queue_rows(ws)[0].finished_at
    resp = ws.call("POST", f"/api/automation/events/{event_id}/{operation}")
    assert resp.status_code == 202, resp.text
    wait_until(lambda: queue_rows(ws)[0].finished_at != before, f"the {operation} finished")
    wait_settled(ws)
    return listed(ws, f"/api/automation/events/{event_id}/runs")


def test_a_retry_after_a_reprocess_reruns_only_the_rules_that_failed_in_it(ws):
    greet = create_rule(
        ws,
        name="greet",
        priority=2,
        trigger_event_types=["conversation.tags_updated"],
        conditions=VIP,
        actions=[{"type": "send_message", "params": {"body": "Welcome back"}}],
    )
    conv_id = add_conversation(ws, channel="whatsapp")  # the window is closed: greet fails
    row = tag_vip(ws, conv_id)
    assert row.status == "failed"

    # A rule added later acts in the reprocess, while greet fails again.
    note = create_rule(
        ws,
        name="note",
        priority=1,
        trigger_event_types=["conversation.tags_updated"],
        conditions=VIP,
        actions=[{"type": "add_note", "params": {"body": "VIP!"}}],
    )
    act_on(ws, row.id, "reprocess")
    assert queue_rows(ws)[0].status == "failed"
    assert len(listed(ws, f"/api/conversations/{conv_id}/notes")) == 1

    whatsapp_window(conv_id, open_=True)
    after = act_on(ws, row.id, "retry")
    assert queue_rows(ws)[0].status == "done"
    assert [n["body"] for n in listed(ws, f"/api/conversations/{conv_id}/notes")] == ["VIP!"]
    sent = listed(ws, f"/api/conversations/{conv_id}/messages")
    assert [m["body"] for m in sent] == ["Welcome back"]
    latest = {}
    for run in sorted(after, key=lambda r: r["created_at"]):
        latest[run["rule_id"]] = run
    assert latest[note["id"]]["status"] == "matched" and latest[greet["id"]]["status"] == "matched"
    assert sum(r["rule_id"] == note["id"] for r in after) == 1  # not run again


def test_a_rule_that_acted_then_failed_in_a_reprocess_is_retried_within_the_reprocess(ws):
    greet = create_rule(
        ws,
        trigger_event_types=["conversation.tags_updated"],
        conditions=VIP,
        actions=[{"type": "send_message", "params": {"body": "Welcome back"}}],
    )
    conv_id = add_conversation(ws, channel="whatsapp")
    whatsapp_window(conv_id, open_=True)
    row = tag_vip(ws, conv_id)
    assert row.status == "done"

    whatsapp_window(conv_id, open_=False)
    act_on(ws, row.id, "reprocess")
    assert queue_rows(ws)[0].status == "failed"

    # The retry re-runs greet in place of its failed reprocess run; the evaluation's
    # own run of greet (which sent) is kept as it was.
    whatsapp_window(conv_id, open_=True)
    after = act_on(ws, row.id, "retry")
    assert queue_rows(ws)[0].status == "done", queue_rows(ws)[0].error
    assert sorted((r["reprocess"], r["status"]) for r in after) == [
        (False, "matched"),
        (True, "matched"),
    ]
    assert {r["rule_id"] for r in after} == {greet["id"]}
    sent = listed(ws, f"/api/conversations/{conv_id}/messages")
    assert [m["body"] for m in sent] == ["Welcome back", "Welcome back"]


def test_a_retried_rule_does_not_repeat_the_actions_that_succeeded(ws):
    rule = create_rule(
        ws,
        trigger_event_types=["conversation.tags_updated"],
        conditions=VIP,
        actions=[
            {"type": "add_note", "params": {"body": "VIP arrived"}},
            {"type": "send_message", "params": {"body": "Welcome back"}},
        ],
    )
    conv_id = add_conversation(ws, channel="whatsapp")  # the window is closed: the send fails
    row = tag_vip(ws, conv_id)
    assert row.status == "failed"
    [failed] = listed(ws, f"/api/automation/events/{row.id}/runs")
    assert [a["result"] for a in failed["action_results"]] == ["applied", "failed"]
    notes_path = f"/api/conversations/{conv_id}/notes"
    assert len(listed(ws, notes_path)) == 1

    whatsapp_window(conv_id, open_=True)
    [retried] = act_on(ws, row.id, "retry")
    assert queue_rows(ws)[0].status == "done"
    assert [n["body"] for n in listed(ws, notes_path)] == ["VIP arrived"]
    sent = listed(ws, f"/api/conversations/{conv_id}/messages")
    assert [m["body"] for m in sent] == ["Welcome back"]
    # The retry's run still lists both actions: the note as the failed run applied it.
    assert retried["status"] == "matched" and retried["error"] is None
    note, send = retried["action_results"]
    assert note == failed["action_results"][0] | {"already_done": True}
    assert send["result"] == "applied" and "already_done" not in send
    # Each action is counted once in the rule's stats: the note then, the send now; the
    # retried run counts once, as its final outcome (matched, not failed).
    path = f"/api/automation/rules/{rule['id']}/stats"
    final = {"runs": 1, "matches": 1, "failures": 0, "actions_executed": 2}

    def counted():
        totals = ws.call("GET", path).json["totals"]
        return totals if {k: totals[k] for k in final} == final else None

    wait_until(counted, f"the rule's stats at {final}", timeout=10.0)
    overall = ws.call("GET", "/api/automation/stats").json["totals"]
    assert {k: overall[k] for k in final} == final, overall


def test_a_rule_change_reaches_the_worker_at_the_next_event(ws):
    rule = create_rule(ws)
    conv_id = add_conversation(ws)
    send_message(ws, conv_id, "refund")
    wait_settled(ws)
    assert conversation(conv_id).tags == ["refund"]
    changed = {"actions": [{"type": "add_tags", "params": {"tags": ["changed"]}}]}
    assert ws.call("PATCH", f"/api/automation/rules/{rule['id']}", json=changed).status_code == 200
    send_message(ws, conv_id, "refund again")
    wait_settled(ws, at_least_rows=2)
    assert sorted(conversation(conv_id).tags) == ["changed", "refund"]
    assert runs(ws)[-1].rule_version == 2
    ws.call("POST", f"/api/automation/rules/{rule['id']}/toggle")  # inactive now
    send_message(ws, conv_id, "refund a third time")
    wait_until(lambda: not outbox_pending(ws), "the message dispatched")
    assert len(queue_rows(ws)) == 2 and len(runs(ws)) == 2  # no active rule: no queue row
