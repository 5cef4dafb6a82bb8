"""Helpers for the AI configuration tests: agents over HTTP, AI-written messages, usage rows."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

from shared.db import session_scope
from shared.models import AiUsageDaily, Message
from shared.models.ai import AiReply
from tests.inbox_conversations.conftest import add_conversation
from tests.workspaces import Workspace

AGENTS = "/api/ai-agents"


def tid(ws: Workspace) -> uuid.UUID:
    return uuid.UUID(ws.tenant["id"])


def fields(resp) -> list[str]:
    return [d["field"] for d in resp.json["error"]["details"]]


def create_agent(ws: Workspace, **overrides: Any) -> dict[str, Any]:
    body = {"name": f"Ava {uuid.uuid4().hex[:6]}", "instructions": "Be brief."} | overrides
    resp = ws.call("POST", AGENTS, json=body)
    assert resp.status_code == 201, resp.text
    return resp.json


def ai_message(ws: Workspace, agent_id: str, *, body: str = "We open at nine.") -> str:
    """An outbound message the AI agent wrote, on a fresh conversation; its id."""
    conversation = add_conversation(ws)
    with session_scope() as session:
        message = Message(
            tenant_id=tid(ws),
            conversation_id=uuid.UUID(conversation),
            channel="whatsapp",
            direction="outbound",
            sender_type="ai_agent",
            sender_id=uuid.UUID(agent_id),
            body=body,
            status="sent",
        )
        session.add(message)
        session.flush()
        return str(message.id)


def add_usage(ws: Workspace, agent_id: str, day: dt.date, **counts: Any) -> None:
    with session_scope() as session:
        session.add(
            AiUsageDaily(
                tenant_id=tid(ws),
                ai_agent_id=uuid.UUID(agent_id),
                day=day,
                replies=counts.get("replies", 0),
                test_replies=counts.get("test_replies", 0),
                handoffs=counts.get("handoffs", 0),
                prompt_tokens=counts.get("prompt_tokens", 0),
                completion_tokens=counts.get("completion_tokens", 0),
                cost=decimal.Decimal(counts.get("cost", "0")),
            )
        )


def inbound_message(ws: Workspace, conversation: str, body: str = "Open today?") -> uuid.UUID:
    """A contact's message on the conversation; its id."""
    with session_scope() as session:
        message = Message(
            tenant_id=tid(ws),
            conversation_id=uuid.UUID(conversation),
            channel="whatsapp",
            direction="inbound",
            sender_type="contact",
            body=body,
            status="received",
        )
        session.add(message)
        session.flush()
        return message.id


def generating_reply(ws: Workspace, agent_id: str) -> tuple[str, uuid.UUID]:
    """A conversation the agent answers, with a reply of its being generated; their ids."""
    conversation = add_conversation(ws, ai_agent_id=uuid.UUID(agent_id), ai_active=True)
    message_id = inbound_message(ws, conversation)
    with session_scope() as session:
        reply = AiReply(
            tenant_id=tid(ws),
            conversation_id=uuid.UUID(conversation),
            ai_agent_id=uuid.UUID(agent_id),
            last_message_id=message_id,
            status="generating",
            attempts=1,
        )
        session.add(reply)
        session.flush()
        return conversation, reply.id
