"""A change of a conversation's AI fields (``ai_active``, ``ai_agent_id``) reaches the open
streams of whoever sees the conversation, and nobody else: the AI claiming it, a person's
reply (or scheduled message) taking it from the AI, an automation handing it back. Paths
with a catalogue event that already carries the new state (a takeover, an AI hand-off)
send that; the others send the stream-only ``conversation.ai_changed``."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select

from shared.context import Ctx
from shared.db import session_scope
from shared.events import Actor
from shared.inbox.divisions import ANNOUNCED_ONE_BY_ONE
from shared.inbox.outbound_many import Draft, create_outbound_messages
from shared.models import Contact, Conversation, Message
from shared.timekeeping import scheduled_messages
from tests.realtime.conftest import (
    about,
    in_division,
    inbound,
    new_division,
    of_type,
    ready_event,
    ready_streams,
)
from workers import queues

AI_CHANGED = "conversation.ai_changed"


@pytest.fixture
def ai_agent(ws, broker):
    """An AI agent answering the api-channel account's conversations (a call makes it);
    its id.

    NOTE: a long settle: its reply (a hand-off, with no knowledge) must not come during
    the test. Deleted after it, its delayed jobs purged: a later test that waits for the
    ``ai`` queue to empty must not wait for them.
    """
    made: list[str] = []

    def create() -> str:
        body = {"name": f"Ava {uuid.uuid4().hex[:6]}", "instructions": "Be brief."}
        agent = ws.call("POST", "/api/ai-agents", json=body | {"settle_seconds": 60})
        assert agent.status_code == 201, agent.text
        made.append(agent.json["id"])
        line = {"ai_agent_id": agent.json["id"], "integration_account_id": ws._api_channel.id}
        assigned = ws.call("POST", "/api/ai-agent-assignments", json=line)
        assert assigned.status_code == 201, assigned.text
        return agent.json["id"]

    yield create
    for agent_id in made:
        assert ws.call("DELETE", f"/api/ai-agents/{agent_id}").status_code == 204
    broker.flush(queues.AI)


def _claimed_by_ai(ws, admin, foreign, ai_agent, customer: str) -> tuple[str, str]:
    """A conversation of ``customer`` an AI agent claimed on its second message, once the
    admin's stream saw the claim (both streams' ``ready`` taken); (conversation, agent)."""
    ready_event(admin)
    ready_event(foreign)
    conversation = inbound(ws, customer, "first")["conversation_id"]
    agent = ai_agent()
    inbound(ws, customer, "second")
    admin.until(of_type(AI_CHANGED, id=conversation, ai_active=True, ai_agent_id=agent))
    return conversation, agent


def _reply(ws, conversation: str, text: str) -> None:
    resp = ws.call("POST", f"/api/conversations/{conversation}/messages", json={"body": text})
    assert resp.status_code == 201, resp.text


def test_the_ai_claiming_and_a_reply_taking_it_back_reach_who_sees_it_only(
    stream_url, ws, other, streams, ai_agent
):
    seller, seller_token = ws.create_agent("agent")
    outsider, outsider_token = ws.create_agent("agent")
    sales = new_division(ws, "Sales", seller["id"])
    new_division(ws, "Support", outsider["id"])
    conversation = in_division(ws, "cust-ai", sales)
    agent = ai_agent()
    admin, seller_stream, outsider_stream, foreign = ready_streams(
        streams, stream_url, ws.token, seller_token, outsider_token, other.token
    )

    # The customer writes again: the AI agent claims the conversation.
    inbound(ws, "cust-ai", "second")

    for stream in (admin, seller_stream):
        event = stream.until(of_type(AI_CHANGED, id=conversation, ai_active=True))
        body = event.json
        assert event.id and body["tenant_id"] == ws.tenant["id"]
        assert body["data"]["ai_agent_id"] == agent
        assert body["data"]["division_id"] == sales
        assert body["actor"] == {"type": "ai_agent", "id": agent}

    # A person's reply takes it from the AI: the AI agent stays named, inactive.
    _reply(ws, conversation, "A person here.")

    for stream in (admin, seller_stream):
        event = stream.until(of_type(AI_CHANGED, id=conversation, ai_active=False))
        assert event.json["data"]["ai_agent_id"] == agent
        assert event.json["actor"]["id"] == ws.admin["id"]
    # An agent who cannot see it and another tenant hear nothing of it.
    assert not [e for e in outsider_stream.drain(0.5) if about(conversation)(e)]
    assert not [e for e in foreign.drain(0.1) if e.event != "ready"]
    # A second reply changes nothing of the AI's: no event.
    _reply(ws, conversation, "Still me.")
    assert not [e for e in admin.drain(0.5) if of_type(AI_CHANGED)(e)]


def test_a_takeover_tells_the_streams_through_its_own_event(
    stream_url, ws, other, streams, ai_agent
):
    """No second entry for a takeover: ``conversation.taken_over`` carries the new state."""
    admin, foreign = streams(stream_url, ws.token), streams(stream_url, other.token)
    conversation, _agent = _claimed_by_ai(ws, admin, foreign, ai_agent, "cust-ai-takeover")

    taken = ws.call("POST", f"/api/conversations/{conversation}/takeover")
    assert taken.status_code == 200, taken.text

    event = admin.until(of_type("conversation.taken_over", id=conversation))
    assert event.json["data"]["ai_active"] is False
    assert not [e for e in admin.drain(0.5) if of_type(AI_CHANGED)(e)]
    assert not [e for e in foreign.drain(0.1) if e.event != "ready"]


def test_an_automation_handing_it_back_to_the_ai_reaches_the_streams(
    stream_url, ws, other, streams, ai_agent
):
    admin, foreign = streams(stream_url, ws.token), streams(stream_url, other.token)
    conversation, agent = _claimed_by_ai(ws, admin, foreign, ai_agent, "cust-ai-back")
    _reply(ws, conversation, "A person here.")
    admin.until(of_type(AI_CHANGED, id=conversation, ai_active=False))
    rule = {
        "name": "Back to the bot",
        "trigger_event_types": ["message.created"],
        "conditions": {
            "match": "all",
            "conditions": [
                {"attribute": "message.content", "operator": "contains", "value": "bot"}
            ],
        },
        "actions": [{"type": "handover_to_ai", "params": {}}],
    }
    made = ws.call("POST", "/api/automation/rules", json=rule)
    assert made.status_code == 201, made.text

    # The customer asks for the bot: the rule hands the conversation back to its AI agent.
    inbound(ws, "cust-ai-back", "the bot please")

    event = admin.until(of_type(AI_CHANGED, id=conversation, ai_active=True), timeout=20)
    assert event.json["data"]["ai_agent_id"] == agent
    assert event.json["actor"]["type"] == "automation"
    assert not [e for e in foreign.drain(0.1) if e.event != "ready"]


def _claim_in_two_hours() -> None:
    """One scheduler run two hours from now (time moved, never slept): the worker sends
    what was due by then."""
    with session_scope() as session:
        now = session.scalar(select(func.now())) + dt.timedelta(hours=2)
        assert scheduled_messages.claim_due(session, now=now)


def test_a_scheduled_reply_taking_it_from_the_ai_reaches_the_streams(
    stream_url, ws, other, streams, ai_agent
):
    admin, foreign = streams(stream_url, ws.token), streams(stream_url, other.token)
    conversation, agent = _claimed_by_ai(ws, admin, foreign, ai_agent, "cust-ai-scheduled")
    run_at = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    scheduled = ws.call(
        "POST",
        f"/api/conversations/{conversation}/scheduled-messages",
        json={"body": "As promised.", "run_at": run_at},
    )
    assert scheduled.status_code == 201, scheduled.text

    _claim_in_two_hours()

    event = admin.until(of_type(AI_CHANGED, id=conversation, ai_active=False), timeout=20)
    assert event.json["data"]["ai_agent_id"] == agent
    assert event.json["actor"]["id"] == ws.admin["id"]
    assert not [e for e in foreign.drain(0.1) if e.event != "ready"]


def _ai_conversations(ws, count: int) -> list[uuid.UUID]:
    """``count`` email conversations (no window to open) their AI answers; their ids."""
    tenant_id = uuid.UUID(ws.tenant["id"])
    with session_scope() as session:
        contact = Contact(tenant_id=tenant_id, channel="email", external_id=uuid.uuid4().hex)
        session.add(contact)
        session.flush()
        rows = [
            Conversation(
                tenant_id=tenant_id, contact_id=contact.id, channel="email", ai_active=True
            )
            for _ in range(count)
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def test_a_batch_taking_too_many_conversations_from_the_ai_resets_the_streams_once(
    stream_url, ws, other, streams
):
    """Past ``divisions.ANNOUNCED_ONE_BY_ONE`` of a tenant, one ``reset`` (clients refetch),
    not an entry each that would trim the backlog and overflow every manager's stream."""
    ids = _ai_conversations(ws, ANNOUNCED_ONE_BY_ONE + 1)
    admin = streams(stream_url, ws.token)
    foreign = streams(stream_url, other.token)
    ready_event(admin)
    ready_event(foreign)
    admin_id = uuid.UUID(ws.admin["id"])
    ctx = Ctx(uuid.UUID(ws.tenant["id"]), Actor("user", admin_id), user_id=admin_id)

    with session_scope() as session:
        conversations = session.scalars(select(Conversation).where(Conversation.id.in_(ids)))
        drafts = [Draft(ctx, c, body="Back from the bot.") for c in conversations]
        sent = create_outbound_messages(session, drafts)
        assert not [s for s in sent if not isinstance(s, Message)], sent

    assert admin.until(lambda e: e.event == "reset").json == {"reason": "events_lost"}
    assert not [e for e in admin.drain(0.5) if of_type(AI_CHANGED)(e)]
    assert not [e for e in foreign.drain(0.1) if e.event != "ready"]


def test_an_ai_handoff_into_another_division_moves_it_between_streams(
    stream_url, ws, other, streams, broker
):
    """A hand-off rule routing into another division: the old division's agents are told
    to drop the conversation and the new one's get it, as a transfer or an automation's
    hand-over does. Without it the old division's agents kept it in their lists."""
    seller, seller_token = ws.create_agent("agent")
    helper, helper_token = ws.create_agent("agent")
    sales = new_division(ws, "Sales", seller["id"])
    support = new_division(ws, "Support", helper["id"])
    conversation = in_division(ws, "cust-ai-handoff", sales)
    body = {"name": f"Ava {uuid.uuid4().hex[:6]}", "instructions": "Be brief."}
    agent = ws.call("POST", "/api/ai-agents", json=body | {"settle_seconds": 0.2})
    assert agent.status_code == 201, agent.text
    rule = {"kind": "keyword", "keywords": ["human"], "division_id": support}
    made = ws.call("POST", f"/api/ai-agents/{agent.json['id']}/handoff-rules", json=rule)
    assert made.status_code == 201, made.text
    line = {"ai_agent_id": agent.json["id"], "integration_account_id": ws._api_channel.id}
    assert ws.call("POST", "/api/ai-agent-assignments", json=line).status_code == 201
    seller_stream, helper_stream, foreign = ready_streams(
        streams, stream_url, seller_token, helper_token, other.token
    )
    try:
        # The AI claims it, and its reply hands it off to Support on the keyword.
        inbound(ws, "cust-ai-handoff", "a human please")

        helper_stream.until(of_type("conversation.handed_off", id=conversation), timeout=20)
        gone = seller_stream.until(
            lambda e: e.event == "conversation.removed" and e.json["data"]["id"] == conversation
        )
        assert gone.json["data"]["division_id"] == support
        assert gone.json["data"]["from_division_id"] == sales
        assert not [e for e in foreign.drain(0.1) if e.event != "ready"]
    finally:
        assert ws.call("DELETE", f"/api/ai-agents/{agent.json['id']}").status_code == 204
        broker.flush(queues.AI)
