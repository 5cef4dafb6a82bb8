"""A batch of rule runs racing the deletion of a division or an agent its actions name.

A batch locks all its conversations first (in id order), then applies each event's
actions. A division's deletion locks the division, then the conversations in it; an
agent's deletion locks the agent, then the conversations assigned to them. When one of
the batch's conversations is in the doomed division (or assigned to the doomed agent)
and a later event of the batch moves another conversation into that division (or
assigns it to that agent), the batch waits for the deletion while holding the
conversation the deletion waits for: a deadlock, one of them aborted (the DELETE
failed). A batch does not wait for such a lock: it rolls back and each event is
evaluated on its own, holding only its own conversation.

The batch is paused on its first event's first action (a ``mute``, upserting an
expired mute row held here) until the deletion waits for that event's conversation;
then the row is let go.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import func, select, update

from shared.db import get_sessionmaker, session_scope
from shared.events import Actor, emit
from shared.identity import agents
from shared.models import ConversationMute, DeadLetter, Division, OutboxEvent
from tests.automation.conftest import (
    add_conversation,
    add_division,
    admin_ctx,
    conversation,
    create_rule,
    queue_rows,
    tid,
    wait_settled,
)
from tests.inbox_conversations.conftest import delete_division_now
from tests.lock_races import until_blocked
from tests.workspaces import Workspace


def _emit_messages(ws: Workspace, *conversation_ids: str) -> None:
    """A customer's ``message.created`` on each conversation, in one transaction (one
    dispatch: one batch), each occurring a millisecond after the one before (the batch's
    order: one transaction's events share ``occurred_at``, then go in random id order)."""
    with session_scope() as session:
        for later, conversation_id in enumerate(conversation_ids):
            data = {"conversation_id": conversation_id, "body": "refund", "direction": "inbound"}
            event_id = emit(
                session, "message.created", data, tenant_id=tid(ws), actor=Actor("contact")
            )
            session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id == event_id)
                .values(occurred_at=OutboxEvent.occurred_at + dt.timedelta(milliseconds=later))
            )


#: The rules' first action: it pauses the batch on the first conversation's mute row.
PAUSE = {"type": "mute", "params": {"minutes": 1}}


def _batch_racing(ws: Workspace, first: str, second: str, delete: Callable[[], str]) -> list:
    """The batch of ``first`` then ``second`` waits on ``first``'s expired mute row (held
    here) while ``delete()`` starts; then the row is let go. What ``delete()`` returned."""
    with session_scope() as session:
        expired = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        session.add(
            ConversationMute(
                conversation_id=uuid.UUID(first), tenant_id=tid(ws), muted_until=expired
            )
        )
    holding = get_sessionmaker()()
    deleted: list = []
    try:
        mute_row = select(ConversationMute.conversation_id).where(
            ConversationMute.conversation_id == uuid.UUID(first)
        )
        holding.execute(mute_row.with_for_update())
        _emit_messages(ws, first, second)
        until_blocked(1)
        deleting = threading.Thread(target=lambda: deleted.append(delete()))
        deleting.start()
        until_blocked(2, deleting)
        holding.commit()
    finally:
        holding.close()
    deleting.join(timeout=30)
    return deleted


def _settled(ws: Workspace, refusal: str) -> None:
    """Each event evaluated once, after the batch or alone: done (its actions applied, or
    the rule found switched off by the deletion), or its action refused with ``refusal``
    (the referent gone: a domain refusal, recorded on the run, not retried)."""
    rows = wait_settled(ws, at_least_rows=2)
    assert len(queue_rows(ws)) == 2
    for row in rows:
        assert row.attempts == 1
        if row.status != "done":
            assert row.status == "failed" and refusal in row.error, row.error
    with session_scope() as session:
        dead = select(func.count()).where(DeadLetter.tenant_id == tid(ws))
        assert session.scalar(dead) == 0


def _online_agent(ws: Workspace) -> dict:
    agent, _ = ws.create_agent("agent")
    resp = ws.call("PATCH", f"/api/agents/{agent['id']}/status", json={"status": "online"})
    assert resp.status_code == 200, resp.text
    return agent


def test_a_batch_moving_into_a_division_whose_deletion_waits_for_it_does_not_deadlock(ws, caplog):
    """The batch holds a conversation of the doomed division (which the deletion waits
    for) when its next event moves another conversation into that division."""
    caplog.set_level(logging.INFO, logger="shared.automation.evaluator")
    doomed = add_division(ws, "Doomed")
    create_rule(ws, actions=[PAUSE, {"type": "assign_division", "params": {"division_id": doomed}}])
    inside = add_conversation(ws, division_id=uuid.UUID(doomed))
    outside = add_conversation(ws)

    deleted = _batch_racing(ws, inside, outside, lambda: delete_division_now(ws, doomed))

    assert deleted == ["deleted"]
    _settled(ws, "no such division")
    with session_scope() as session:
        assert session.get(Division, uuid.UUID(doomed)) is None
    assert conversation(inside).division_id is None
    assert conversation(outside).division_id is None
    # The batch's backing off is expected: said once, without an alarming traceback.
    said = [r for r in caplog.records if "automation batch" in r.getMessage()]
    assert [(r.levelno, r.exc_info) for r in said] == [(logging.INFO, None)], said


def _delete_agent_now(ws: Workspace, agent_id: str) -> Callable[[], str]:
    def delete() -> str:
        try:
            with session_scope() as session:
                agents.delete_agent(session, admin_ctx(ws), uuid.UUID(agent_id))
            return "deleted"
        except Exception as exc:  # reported by the test
            return repr(exc)

    return delete


@pytest.mark.parametrize("action", ["assign_agent", "assign_round_robin"])
def test_a_batch_assigning_to_an_agent_whose_deletion_waits_for_it_does_not_deadlock(ws, action):
    """The batch holds a conversation of the doomed agent (which their deletion waits for,
    to unassign it) when its next event assigns another conversation to them (the rule
    names them, or round robin picks them: the only agent online)."""
    doomed = _online_agent(ws)
    params = {"agent_id": doomed["id"]} if action == "assign_agent" else {}
    create_rule(ws, actions=[PAUSE, {"type": action, "params": params}])
    theirs = add_conversation(ws, assignee_id=uuid.UUID(doomed["id"]), status="open")
    other = add_conversation(ws, status="open")

    deleted = _batch_racing(ws, theirs, other, _delete_agent_now(ws, doomed["id"]))

    assert deleted == ["deleted"]
    refusal = "no such agent" if action == "assign_agent" else "No online agent"
    _settled(ws, refusal)
    assert conversation(theirs).assignee_id is None
    assert conversation(other).assignee_id is None


def test_a_run_moving_a_conversation_out_of_its_division_and_back_does_not_deadlock(ws):
    """Two routing rules on one event: the first moves the conversation out of the doomed
    division (into another one, held here so that the run waits there, holding the
    conversation, while the deletion starts and waits for that conversation); the second
    moves it back. The doomed division is the one the conversation was in when the run
    locked it: its deletion waits for the run, so the move back must not wait for the
    deletion (it did: a deadlock, the DELETE aborted)."""
    doomed = add_division(ws, "Doomed")
    elsewhere = add_division(ws, "Elsewhere")
    for priority, division in ((1, elsewhere), (2, doomed)):
        routing = {"type": "assign_division", "params": {"division_id": division}}
        create_rule(ws, name=f"Route {priority}", priority=priority, actions=[routing])
    inside = add_conversation(ws, division_id=uuid.UUID(doomed))
    holding = get_sessionmaker()()
    deleted: list = []
    try:
        holding.execute(
            select(Division.id).where(Division.id == uuid.UUID(elsewhere)).with_for_update()
        )
        _emit_messages(ws, inside)
        until_blocked(1)
        deleting = threading.Thread(target=lambda: deleted.append(delete_division_now(ws, doomed)))
        deleting.start()
        until_blocked(2, deleting)
        holding.commit()
    finally:
        holding.close()
    deleting.join(timeout=30)

    assert deleted == ["deleted"]
    [row] = wait_settled(ws)
    assert (row.status, row.attempts) == ("done", 1), row.error
    assert conversation(inside).division_id is None
