"""Deleting an AI agent takes it off its conversations as a change of theirs: no AI answers
them any more (``ai_active`` false, ``ai_agent_id`` null), ``updated_at`` moves, and the open
streams are told, each conversation's ``conversation.ai_changed`` or, past
``ANNOUNCED_ONE_BY_ONE``, one ``conversations.ai_released`` for the agent."""

from __future__ import annotations

import uuid

from shared.inbox.divisions import ANNOUNCED_ONE_BY_ONE
from tests.inbox_conversations.conftest import many_conversations
from tests.realtime.conftest import about, of_type, ready_event

AI_CHANGED = "conversation.ai_changed"
RELEASED = "conversations.ai_released"


def _ai_agent(ws) -> str:
    body = {"name": f"Ava {uuid.uuid4().hex[:6]}", "instructions": "Be brief."}
    made = ws.call("POST", "/api/ai-agents", json=body)
    assert made.status_code == 201, made.text
    return made.json["id"]


def _delete(ws, agent: str) -> None:
    resp = ws.call("DELETE", f"/api/ai-agents/{agent}")
    assert resp.status_code == 204, resp.text


def test_deleting_an_ai_agent_tells_the_streams_its_conversations_lost_it(
    stream_url, ws, other, streams
):
    agent = _ai_agent(ws)
    owned = many_conversations(ws, 3, ai_agent_id=uuid.UUID(agent), ai_active=True)
    before = {c: ws.call("GET", f"/api/conversations/{c}").json for c in owned}
    admin = streams(stream_url, ws.token)
    foreign = streams(stream_url, other.token)
    ready_event(admin)
    ready_event(foreign)

    _delete(ws, agent)

    changed = {}
    while len(changed) < len(owned):
        event = admin.until(of_type(AI_CHANGED, ai_agent_id=None))
        changed[event.json["data"]["id"]] = event
    assert set(changed) == set(owned)
    for event in changed.values():
        assert event.json["tenant_id"] == ws.tenant["id"]
        assert event.json["data"]["ai_active"] is False
        assert event.json["actor"]["id"] == ws.admin["id"]
    assert not [e for e in foreign.drain(0.5) if e.event != "ready"]
    for conversation in owned:
        now = ws.call("GET", f"/api/conversations/{conversation}").json
        assert now["ai_active"] is False
        assert now["updated_at"] > before[conversation]["updated_at"]


def test_deleting_an_ai_agent_of_many_conversations_is_one_stream_event(
    stream_url, ws, other, streams
):
    agent = _ai_agent(ws)
    owned = many_conversations(
        ws, ANNOUNCED_ONE_BY_ONE + 1, ai_agent_id=uuid.UUID(agent), ai_active=True
    )
    _, seller_token = ws.create_agent("agent")
    admin = streams(stream_url, ws.token)
    seller = streams(stream_url, seller_token)
    foreign = streams(stream_url, other.token)
    for stream in (admin, seller, foreign):
        ready_event(stream)

    _delete(ws, agent)

    for stream in (admin, seller):
        event = stream.until(of_type(RELEASED))
        assert event.id and event.json["tenant_id"] == ws.tenant["id"]
        assert event.json["data"] == {"ai_agent_id": agent}
        # One entry for the agent, none per conversation.
        assert not [e for e in stream.drain(0.5) if about(*owned)(e)]
    assert not [e for e in foreign.drain(0.1) if e.event != "ready"]
    for conversation in (owned[0], owned[-1]):
        assert ws.call("GET", f"/api/conversations/{conversation}").json["ai_active"] is False
