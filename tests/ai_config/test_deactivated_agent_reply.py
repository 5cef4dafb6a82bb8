"""A reply still pending when its AI agent is deactivated (during the settle window)."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from shared.ai import generation
from shared.db import session_scope
from shared.models import Message
from shared.models.ai import AiReply
from tests.ai_config.conftest import AGENTS, create_agent, inbound_message, tid
from tests.inbox_conversations.conftest import add_conversation


def test_a_pending_reply_of_an_agent_deactivated_meanwhile_is_skipped(workspace):
    """Nothing is sent for an agent switched off, as for a new message; the reply is
    settled at once, not failed and retried by the job and the sweeper forever."""
    ws = workspace
    agent_id = create_agent(ws)["id"]
    conversation = add_conversation(
        ws, channel="email", ai_agent_id=uuid.UUID(agent_id), ai_active=True
    )
    message_id = inbound_message(ws, conversation, channel="email")
    with session_scope() as session:
        reply = AiReply(
            tenant_id=tid(ws),
            conversation_id=uuid.UUID(conversation),
            ai_agent_id=uuid.UUID(agent_id),
            last_message_id=message_id,
        )
        session.add(reply)
        session.flush()
        reply_id = reply.id
    off = ws.call("PUT", f"{AGENTS}/{agent_id}/active", json={"is_active": False})
    assert off.status_code == 200, off.text

    assert generation.start(reply_id) == "settled"

    with session_scope() as session:
        assert session.get(AiReply, reply_id).status == "skipped"
        sent = session.scalars(
            select(Message.id).where(
                Message.conversation_id == uuid.UUID(conversation),
                Message.direction == "outbound",
            )
        ).all()
    assert sent == []
