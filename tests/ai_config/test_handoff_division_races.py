"""An AI hand-off routing a conversation into a division while that division is deleted.

The deletion locks the division against changes (not against foreign key checks), takes
it off its policies and rules, releases its conversations (``updated_at``, SLA clocks,
the streams told) and deletes it. A hand-off that named the division with only its
foreign key check landed in the middle: the release did not see it yet, and only the
foreign key's ``ON DELETE SET NULL`` took the division off again (no stream told, the
SLA clock left under a policy that no longer matched). The hand-off share-locks the
division it moves into: the deletion waits for it and releases the conversation, or the
hand-off waits for the deletion and hands off without moving the conversation.
"""

from __future__ import annotations

import logging
import threading
import uuid

from sqlalchemy import select

from shared.ai import generation, usage
from shared.db import get_sessionmaker, session_scope
from shared.models import AutomationRule, ConversationSla
from shared.models.ai import AiAgent
from shared.realtime import feed
from tests.ai_config.conftest import AGENTS, agent_row, answered, create_agent, generating_reply
from tests.inbox_conversations.conftest import (
    add_division,
    delete_division_now,
    row,
    set_columns,
)
from tests.lock_races import until_blocked


def _handing_off_into(ws, division: str) -> tuple[str, generation.Ended]:
    """A conversation of an agent whose model errors hand off into ``division``, and its
    reply's model call answered nothing (a hand-off for ``model_error``)."""
    agent_id = create_agent(ws)["id"]
    rule = {"kind": "model_error", "division_id": division, "message": "A person takes over"}
    made = ws.call("POST", f"{AGENTS}/{agent_id}/handoff-rules", json=rule)
    assert made.status_code == 201, made.text
    conversation, reply_id = generating_reply(ws, agent_id, channel="email")
    return conversation, answered(ws, agent_row(agent_id), conversation, reply_id, text=" ")


def _start(call, results: list) -> threading.Thread:
    thread = threading.Thread(target=lambda: results.append(call()))
    thread.start()
    return thread


def _settling_while_deleting(ws, division: str, agent_id, settle) -> tuple[list, list]:
    """``settle()`` waits on its agent's usage row of the day (held here) while the
    division's deletion starts; then the row is let go. What each returned, as lists."""
    holding = get_sessionmaker()()
    usage.lock_today(holding, holding.get(AiAgent, agent_id))
    settled: list = []
    deleted: list = []
    try:
        settling = _start(settle, settled)
        until_blocked(1, settling)
        deleting = _start(lambda: delete_division_now(ws, division), deleted)
        until_blocked(2, settling, deleting)
        holding.commit()
    finally:
        holding.close()
    settling.join(timeout=30)
    deleting.join(timeout=30)
    return settled, deleted


def test_a_handoff_in_flight_when_its_division_is_deleted_is_released_by_the_deletion(
    workspace, monkeypatch
):
    """The hand-off moved the conversation into the division and started its clock under
    the policy naming it, then waited (here for its agent's usage row) while the deletion
    ran: the deletion waits for the hand-off, then releases the conversation as any of
    its own (the streams told, the clock gone with the division)."""
    ws = workspace
    doomed = add_division(ws, "Doomed")
    body = {"name": "Doomed SLA", "first_response_minutes": 15, "division_ids": [doomed]}
    assert ws.call("POST", "/api/sla-policies", json=body).status_code == 201
    conversation, ended = _handing_off_into(ws, doomed)
    announced: list[dict] = []
    real_announce = feed.announce

    def recording(session, tenant_id, event_type, data, actor, occurred_at):
        announced.append({"type": event_type} | data)
        real_announce(session, tenant_id, event_type, data, actor, occurred_at)

    monkeypatch.setattr(feed, "announce", recording)
    settled, deleted = _settling_while_deleting(
        ws, doomed, ended[0].agent.id, lambda: generation.finish(*ended)
    )

    assert (settled, deleted) == (["handed_off"], ["deleted"])
    handed = row(conversation)
    assert (handed.ai_active, handed.division_id) == (False, None)
    changed = [a for a in announced if a["type"] == feed.DIVISION_CHANGED]
    # The hand-off's move into the division, then the deletion's release out of it.
    assert [(a["id"], a["from_division_id"], a["division_id"]) for a in changed] == [
        (conversation, None, doomed),
        (conversation, doomed, None),
    ]
    with session_scope() as session:
        assert session.get(ConversationSla, uuid.UUID(conversation)) is None


def test_a_handoff_into_a_division_being_deleted_keeps_the_conversations_division(
    workspace, caplog
):
    """The deletion holds the division (paused on a rule naming it) when the hand-off
    comes: the hand-off waits, finds the division gone and hands off all the same, the
    conversation left in the division it was in (a warning says why)."""
    ws = workspace
    doomed = add_division(ws, "Doomed")
    support = add_division(ws, "Support")
    conversation, ended = _handing_off_into(ws, doomed)
    set_columns(conversation, division_id=uuid.UUID(support))
    routing = {"type": "assign_division", "params": {"division_id": doomed}}
    rule = {
        "name": "Route to Doomed",
        "is_active": False,
        "trigger_event_types": ["conversation.created"],
        "actions": [routing],
    }
    made = ws.call("POST", "/api/automation/rules", json=rule)
    assert made.status_code == 201, made.text
    pausing = get_sessionmaker()()
    pausing.execute(
        select(AutomationRule.id)
        .where(AutomationRule.id == uuid.UUID(made.json["id"]))
        .with_for_update()
    ).one()
    settled: list = []
    deleted: list = []
    try:
        deleting = _start(lambda: delete_division_now(ws, doomed), deleted)
        until_blocked(1, deleting)
        with caplog.at_level(logging.WARNING, logger="shared.ai.handoff"):
            settling = _start(lambda: generation.finish(*ended), settled)
            until_blocked(2, settling, deleting)
            pausing.commit()
            deleting.join(timeout=30)
            settling.join(timeout=30)
    finally:
        pausing.close()

    assert (settled, deleted) == (["handed_off"], ["deleted"])
    handed = row(conversation)
    assert (handed.ai_active, handed.division_id) == (False, uuid.UUID(support))
    assert any(doomed in r.getMessage() for r in caplog.records if r.name == "shared.ai.handoff")


def test_a_batch_handing_off_into_a_division_whose_deletion_waits_for_it_does_not_deadlock(
    workspace, caplog
):
    """A batch (``finish_many``) holds its conversations, one of them in the division,
    when the division's deletion comes and waits for that one; then the batch hands
    another one off into the division. Waiting for the division there, the batch and the
    deletion waited for each other (one aborted: the DELETE answered 409). The deletion
    commits; every reply is settled (the batch again one by one), the hand-off leaving
    its conversation where it was."""
    ws = workspace
    doomed = add_division(ws, "Doomed")
    agent_id = create_agent(ws, daily_reply_limit=10)["id"]
    rule = {"kind": "model_error", "division_id": doomed}
    assert ws.call("POST", f"{AGENTS}/{agent_id}/handoff-rules", json=rule).status_code == 201
    generating = sorted(generating_reply(ws, agent_id, channel="email") for _ in range(2))
    (handed, handed_reply), (inside, inside_reply) = generating
    set_columns(inside, division_id=uuid.UUID(doomed))
    agent = agent_row(agent_id)
    ended = [
        answered(ws, agent, handed, handed_reply, text=" "),
        answered(ws, agent, inside, inside_reply),
    ]
    # The batch locks its limited agent's usage row of the day after its conversations:
    # held here, the batch waits there, holding both conversations.
    settled, deleted = _settling_while_deleting(
        ws, doomed, agent.id, lambda: generation.finish_many(ended)
    )

    assert deleted == ["deleted"]
    assert settled == [["handed_off", "sent"]]
    assert (row(handed).ai_active, row(handed).division_id) == (False, None)
    assert (row(inside).ai_active, row(inside).division_id) == (True, None)
