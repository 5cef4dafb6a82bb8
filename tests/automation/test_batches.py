"""Events committed together are evaluated together: one claim and transaction per batch,
in the order they were queued, each event seeing what the ones before it did; a batch
that fails falls back to one event at a time, so only the bad event fails."""

from __future__ import annotations

import uuid

from shared.db import session_scope
from shared.events import Actor, emit
from tests.automation.conftest import (
    add_conversation,
    conversation,
    create_rule,
    runs,
    tid,
    wait_settled,
)


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
    untagged = {
        "match": "all",
        "conditions": [
            {"attribute": "message.content", "operator": "contains", "value": "refund"},
            {"attribute": "conversation.tags", "operator": "not_contains", "value": "refund"},
        ],
    }
    create_rule(ws, conditions=untagged)
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
