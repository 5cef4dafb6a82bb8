"""Helpers for the AI configuration tests: agents over HTTP, AI-written messages, usage rows."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

from shared.ai import generation
from shared.ai.providers.base import Completion
from shared.db import session_scope
from shared.models import AiUsageDaily, Message
from shared.models.ai import AiAgent, AiReply
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


def inbound_message(
    ws: Workspace, conversation: str, body: str = "Open today?", channel: str = "whatsapp"
) -> uuid.UUID:
    """A contact's message on the conversation (of ``channel``); its id."""
    with session_scope() as session:
        message = Message(
            tenant_id=tid(ws),
            conversation_id=uuid.UUID(conversation),
            channel=channel,
            direction="inbound",
            sender_type="contact",
            body=body,
            status="received",
        )
        session.add(message)
        session.flush()
        return message.id


def generating_reply(
    ws: Workspace, agent_id: str, channel: str = "whatsapp", *, status: str = "generating"
) -> tuple[str, uuid.UUID]:
    """A conversation the agent answers, with a reply of its being generated (or in
    ``status``); their ids (an email conversation takes an answer at any time, WhatsApp's
    window aside)."""
    conversation = add_conversation(
        ws, channel=channel, ai_agent_id=uuid.UUID(agent_id), ai_active=True
    )
    message_id = inbound_message(ws, conversation, channel=channel)
    with session_scope() as session:
        reply = AiReply(
            tenant_id=tid(ws),
            conversation_id=uuid.UUID(conversation),
            ai_agent_id=uuid.UUID(agent_id),
            last_message_id=message_id,
            status=status,
            attempts=1 if status == "generating" else 0,
        )
        session.add(reply)
        session.flush()
        return conversation, reply.id


def agent_row(agent_id: str) -> AiAgent:
    """The agent's row, detached: as a finisher holds it while settling."""
    with session_scope() as session:
        agent = session.get(AiAgent, uuid.UUID(agent_id))
        session.expunge(agent)
        return agent


def answered(
    ws: Workspace,
    agent: AiAgent,
    conversation: str,
    reply_id: uuid.UUID,
    text: str = "We open at nine.",
) -> generation.Ended:
    """A reply of ``agent`` whose model call answered ``text``, as the finisher hands it over
    (a blank ``text`` is handed off)."""
    claimed = generation.Claimed(reply_id, tid(ws), uuid.UUID(conversation), agent.id, 1)
    plan = generation.Plan(
        claimed=claimed,
        agent=agent,
        provider=None,
        request=None,
        voice=generation.voice_of(agent),
        canary="canary-0",
        hits=[],
        read_until=dt.datetime.now(dt.UTC),
    )
    return plan, Completion(text, prompt_tokens=12, completion_tokens=5), None
