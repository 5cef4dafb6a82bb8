"""Events committed together are evaluated together: one claim and transaction per batch,
in the order they were queued, each event seeing what the ones before it did; a batch
that fails falls back to one event at a time, so only the bad event fails. Events
committed one per transaction while an evaluation waits or runs join the next batch."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import select

from shared import dispatch
from shared.db import session_scope
from shared.events import Actor, emit
from shared.models import Conversation, OutboxEvent
from tests.automation.conftest import (
    add_conversation,
    conversation,
    create_rule,
    queue_rows,
    runs,
    tid,
    wait_settled,
    waiting_on_a_lock,
)
from tests.outbox_rows import unswept_event
from tests.waiting import wait_until

UNTAGGED = {
    "match": "all",
    "conditions": [
        {"attribute": "message.content", "operator": "contains", "value": "refund"},
        {"attribute": "conversation.tags", "operator": "not_contains", "value": "refund"},
    ],
}


def emit_messages(tenant_id: uuid.UUID, *messages: tuple[str, str]) -> None:
    """``message.created`` for each ``(conversation, body)``, in one transaction."""
    with session_scope() as session:
        for conversation_id, body in messages:
            emit(
                session,
                "message.created",
                {"conversation_id": conversation_id, "body": body, "direction": "inbound"},
                tenant_id=tenant_id,
                actor=Actor("contact"),
            )


def test_a_batch_sees_the_actions_of_its_earlier_events_and_applies_them_once(ws):
    create_rule(ws, conditions=UNTAGGED)
    first, second = add_conversation(ws), add_conversation(ws)
    emit_messages(
        tid(ws),
        (first, "refund please"),
        (second, "refund now"),
        (first, "still waiting for my refund"),
        (first, "refund!"),
    )
    rows = wait_settled(ws, at_least_rows=4)
    assert [row.status for row in rows] == ["done"] * 4
    assert len({row.started_at for row in rows}) == 1  # claimed together
    assert conversation(first).tags == ["refund"] and conversation(second).tags == ["refund"]
    statuses: dict[str, list[str]] = {first: [], second: []}
    by_row = {row.id: str(row.conversation_id) for row in rows}
    for run in runs(ws):
        statuses[by_row[run.automation_event_id]].append(run.status)
    # The first message on each conversation acts; the later ones see its tag.
    assert sorted(statuses[first]) == ["matched", "not_matched", "not_matched"]
    assert statuses[second] == ["matched"]


def test_events_committed_one_by_one_while_an_evaluation_runs_are_evaluated_together(ws):
    create_rule(ws, conditions=UNTAGGED)
    held, other = add_conversation(ws), add_conversation(ws)
    with session_scope() as blocker:
        # Hold a conversation: the first event's evaluation waits for it, mid-run.
        blocker.execute(
            select(Conversation.id).where(Conversation.id == uuid.UUID(held)).with_for_update()
        )
        emit_messages(tid(ws), (held, "refund please"))
        wait_until(waiting_on_a_lock, "the first evaluation waits for the conversation")
        for body in ("refund 1", "refund 2", "refund 3"):  # a transaction each
            emit_messages(tid(ws), (other, body))

        def dispatched() -> bool:
            with session_scope() as session:
                statuses = session.scalars(
                    select(OutboxEvent.status).where(
                        OutboxEvent.tenant_id == tid(ws), OutboxEvent.type == "message.created"
                    )
                ).all()
            return len(statuses) == 4 and set(statuses) == {"processed"}

        wait_until(dispatched, "the three later events dispatched")
        time.sleep(0.3)  # their after-commit hand-off
        blocker.rollback()
    first, *later = wait_settled(ws, at_least_rows=4)
    assert [row.status for row in (first, *later)] == ["done"] * 4
    assert [str(row.conversation_id) for row in later] == [other] * 3
    # The three joined the waiting evaluation's list: claimed together, after it ran.
    assert len({row.started_at for row in later}) == 1
    assert later[0].started_at > first.started_at
    assert [row.attempts for row in later] == [1, 1, 1]
    # In queue order, once each: the first acts, the later ones see its tag.
    by_row = {run.automation_event_id: run.status for run in runs(ws)}
    assert [by_row[row.id] for row in (first, *later)] == [
        "matched",
        "matched",
        "not_matched",
        "not_matched",
    ]
    assert conversation(held).tags == ["refund"] and conversation(other).tags == ["refund"]
    assert len(queue_rows(ws)) == 4


def test_an_event_that_fails_in_a_batch_fails_alone(ws, override):
    override(automation_max_attempts=1)
    vip = {
        "match": "all",
        "conditions": [{"attribute": "conversation.tags", "operator": "contains", "value": "vip"}],
    }
    create_rule(
        ws,
        trigger_event_types=["conversation.tags_updated"],
        conditions=vip,
        actions=[{"type": "set_priority", "params": {"priority": "urgent"}}],
    )
    good, bad = add_conversation(ws), add_conversation(ws)
    with session_scope() as session:  # one transaction: one dispatch, one batch
        for conversation_id, added in ((good, ["vip"]), (bad, 5)):  # 5: not a list of tags
            emit(
                session,
                "conversation.tags_updated",
                {"id": conversation_id, "tags": ["vip"], "added": added},
                tenant_id=tid(ws),
                actor=Actor.system(),
            )
    rows = wait_settled(ws, at_least_rows=2)
    by_conversation = {str(row.conversation_id): row for row in rows}
    assert by_conversation[good].status == "done" and by_conversation[good].attempts == 1
    assert conversation(good).priority == "urgent"
    failed = by_conversation[bad]
    assert failed.status == "failed" and failed.attempts == 1 and "TypeError" in failed.error
    assert conversation(bad).priority != "urgent"
    assert {run.automation_event_id for run in runs(ws)} == {by_conversation[good].id}


def test_events_of_separate_transactions_dispatched_together_are_evaluated_in_commit_order(ws):
    """Outbox ids are random: a batch must hand its events on in the order they occurred,
    not in id order. Two messages on one conversation, the earlier with the larger id, are
    written (never enqueued, so no dispatch of their own) and dispatched in one batch."""
    create_rule(ws, conditions=UNTAGGED)
    target = add_conversation(ws)
    # Each in a transaction of its own, the earlier with the larger id.
    earlier, later = uuid.UUID(int=(1 << 128) - 1 - uuid.uuid4().int % 1000), uuid.uuid4()
    for event_id, body in ((earlier, "refund 1"), (later, "refund 2")):
        data = {"conversation_id": target, "body": body, "direction": "inbound"}
        unswept_event(tid(ws), "message.created", data, actor_type="contact", id=event_id)
    with session_scope() as session:
        dispatch.dispatch_many(session, [earlier, later])
    rows = [
        row for row in wait_settled(ws, at_least_rows=2) if row.outbox_event_id in (earlier, later)
    ]
    assert [row.outbox_event_id for row in rows] == [earlier, later]  # queue order
    by_row = {run.automation_event_id: run.status for run in runs(ws)}
    # The first message acts; the second sees its tag.
    assert [by_row[row.id] for row in rows] == ["matched", "not_matched"]
    assert conversation(target).tags == ["refund"]
