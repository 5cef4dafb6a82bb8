"""An AI agent deleted while a reply of its is being settled.

Settling locks the reply and its conversation, then writes the agent's usage of the day,
whose foreign key check takes the agent row FOR KEY SHARE. The deletion releases the
agent's conversations before deleting it: had it locked the agent first, each would wait
for the other (a deadlock, one of them aborted).
"""

from __future__ import annotations

import uuid

from shared.ai import generation, usage
from shared.db import get_sessionmaker, session_scope
from shared.models import Message
from shared.models.ai import AiAgent, AiReply
from tests.ai_config.conftest import AGENTS, create_agent, tid
from tests.inbox_conversations.conftest import add_conversation, row
from tests.lock_races import race


def _generating_reply(ws, agent_id: str) -> tuple[str, uuid.UUID]:
    """A conversation the agent answers, with a reply of its being generated; their ids."""
    conversation = add_conversation(ws, ai_agent_id=uuid.UUID(agent_id), ai_active=True)
    with session_scope() as session:
        message = Message(
            tenant_id=tid(ws),
            conversation_id=uuid.UUID(conversation),
            channel="whatsapp",
            direction="inbound",
            sender_type="contact",
            body="Open today?",
            status="received",
        )
        session.add(message)
        session.flush()
        reply = AiReply(
            tenant_id=tid(ws),
            conversation_id=uuid.UUID(conversation),
            ai_agent_id=uuid.UUID(agent_id),
            last_message_id=message.id,
            status="generating",
            attempts=1,
        )
        session.add(reply)
        session.flush()
        return conversation, reply.id


def test_deleting_an_agent_while_its_reply_settles_does_not_deadlock(workspace):
    ws = workspace
    agent_id = create_agent(ws)["id"]
    conversation, reply_id = _generating_reply(ws, agent_id)
    settling = get_sessionmaker()()
    # As generation.settle locks: the reply and its conversation, in one statement.
    settling.execute(
        generation.reply_and_conversation().where(AiReply.id == reply_id).with_for_update()
    ).one()
    agent = settling.get(AiAgent, uuid.UUID(agent_id))
    failures: list = []

    def count_the_handoff():
        try:
            usage.record(settling, agent, handoffs=1)  # the day's first row: a new one
        except Exception as exc:  # reported by the test
            failures.append(exc)
            settling.rollback()

    status = race(
        settling,
        lambda: ws.call("DELETE", f"{AGENTS}/{agent_id}").status_code,
        then=count_the_handoff,
    )

    assert failures == []
    assert status == 204
    released = row(conversation)
    assert (released.ai_agent_id, released.ai_active) == (None, False)
