"""A reply still pending when its AI agent is deactivated (during the settle window)."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from shared.ai import generation
from shared.db import session_scope
from shared.models import Message
from shared.models.ai import AiReply
from tests.ai_config.conftest import AGENTS, create_agent, generating_reply


def test_a_pending_reply_of_an_agent_deactivated_meanwhile_is_skipped(workspace):
    """Nothing is sent for an agent switched off, as for a new message; the reply is
    settled at once, not failed and retried by the job and the sweeper forever."""
    ws = workspace
    agent_id = create_agent(ws)["id"]
    conversation, reply_id = generating_reply(ws, agent_id, "email", status="pending")
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
