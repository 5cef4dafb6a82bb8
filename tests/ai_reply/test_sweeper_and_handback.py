"""Replies a lost job or a dead worker left behind are re-driven; ``handover_to_ai`` hands back."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from scheduler import jobs
from shared.db import session_scope
from shared.models import Conversation, Message
from shared.models.ai import AiReply
from tests.waiting import wait_until


def _orphan_reply(world, fake_graph, **fields) -> AiReply:
    """A conversation the agent owns with a question and a reply row no job will pick up."""
    agent = world.agent(assign=False)
    world.write("How long does shipping take?")
    conversation = world.conversation()
    with session_scope() as session:
        session.execute(
            update(Conversation)
            .where(Conversation.id == conversation.id)
            .values(ai_agent_id=agent.id, ai_active=True)
        )
        message_id = session.scalar(
            select(Message.id).where(Message.conversation_id == conversation.id)
        )
        now = session.scalar(
            select(Conversation.updated_at).where(Conversation.id == conversation.id)
        )
        reply = AiReply(
            tenant_id=world.tenant_id,
            conversation_id=conversation.id,
            ai_agent_id=agent.id,
            last_message_id=message_id,
            due_at=now - dt.timedelta(seconds=30),
            **fields,
        )
        session.add(reply)
        session.flush()
        session.expunge(reply)
    assert world.sent_to_graph(fake_graph) == []
    return reply


def _sweep() -> int:
    with session_scope() as session:
        return jobs.sweep_ai_replies(session)


def test_a_pending_reply_whose_job_was_lost_is_answered_after_a_sweep(world, fake_graph):
    reply = _orphan_reply(world, fake_graph)
    assert _sweep() >= 1
    [sent] = world.wait_sent_to_graph(fake_graph)
    assert sent.json["text"]["body"] == "Shipping takes 3 to 5 business days."
    [final] = world.final_replies(reply.conversation_id)
    assert (final.id, final.status, final.attempts) == (reply.id, "sent", 1)


def test_a_reply_generating_on_a_dead_worker_is_generated_again(world, fake_graph):
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    reply = _orphan_reply(world, fake_graph, status="generating", attempts=1, updated_at=stale)
    assert _sweep() >= 1
    world.wait_sent_to_graph(fake_graph)
    [final] = world.final_replies(reply.conversation_id)
    assert (final.status, final.attempts) == ("sent", 2)


def test_a_reply_that_keeps_losing_its_worker_hands_off(world, fake_graph):
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    reply = _orphan_reply(world, fake_graph, status="generating", attempts=3, updated_at=stale)
    _sweep()
    [final] = world.final_replies(reply.conversation_id)
    assert (final.status, final.handoff_reason) == ("handed_off", "model_error")
    world.wait_sent_to_graph(fake_graph)


def test_a_fresh_generating_reply_is_left_alone(world, fake_graph):
    reply = _orphan_reply(world, fake_graph, status="generating", attempts=1)
    _sweep()
    world.drain()
    [row] = world.replies(reply.conversation_id)
    assert row.status == "generating"


def test_handover_to_ai_hands_a_handed_off_conversation_back(world, fake_graph):
    world.agent()
    resp = world.ws.call(
        "POST",
        "/api/automation/rules",
        json={
            "name": "Back to the bot",
            "trigger_event_types": ["message.created"],
            "conditions": {
                "match": "all",
                "conditions": [
                    {"attribute": "message.content", "operator": "contains", "value": "bot please"}
                ],
            },
            "actions": [{"type": "handover_to_ai", "params": {}}],
        },
    )
    assert resp.status_code == 201, resp.text

    world.write("Can I talk to a human?")
    world.wait_sent_to_graph(fake_graph, 1)  # the handoff message
    conversation = world.conversation()
    assert world.fresh(conversation.id).ai_active is False

    world.write("Actually, the bot please")
    wait_until(lambda: world.fresh(conversation.id).ai_active, "the handover to the AI")
    assert world.fresh(conversation.id).ai_turns == 0

    world.write("How long does shipping take?")
    sent = world.wait_sent_to_graph(fake_graph, 2)
    assert sent[-1].json["text"]["body"] == "Shipping takes 3 to 5 business days."


def test_a_dead_reply_handed_off_since_is_not_requeued_and_says_why(world, fake_graph):
    """The job ran out of retries (its dead letter), the sweeper re-drove the reply until it
    handed off: a requeue answered 200 and did nothing."""
    import uuid

    from shared.dead_letters import record_dead_letter

    stale = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    reply = _orphan_reply(world, fake_graph, status="generating", attempts=3, updated_at=stale)
    with session_scope() as session:  # what the worker's middleware wrote when it gave up
        record_dead_letter(
            session,
            message_id=str(uuid.uuid4()),
            queue_name="ai",
            actor_name="ai_reply",
            args=[str(reply.id)],
            kwargs={},
            options={"tenant_id": str(world.tenant_id)},
            retries=5,
            error="OperationalError: the database is down",
        )
    _sweep()
    [final] = world.final_replies(reply.conversation_id)
    assert final.status == "handed_off"
    [letter] = world.ws.call("GET", "/api/ops/dead-letters").json["items"]

    resp = world.ws.call("POST", f"/api/ops/dead-letters/{letter['id']}/requeue")

    assert resp.status_code == 409, resp.text
    error = resp.json["error"]
    assert error["code"] == "not_requeueable" and "handed_off" in error["message"]
    assert world.ws.call("GET", f"/api/ops/dead-letters/{letter['id']}").json["requeued_at"] is None


def test_a_suspended_tenants_replies_wait_for_its_reactivation(world, fake_graph, app):
    """API.md: scheduler jobs skip a suspended tenant. Re-driven anyway, each of its
    replies was sent again every sweep, only for the tenant gate to drop it."""
    import falcon.testing

    from shared.ai import replies
    from tests.admin.conftest import create_super_admin, login

    reply = _orphan_reply(world, fake_graph)
    root = login(falcon.testing.TestClient(app), create_super_admin())
    path = f"/api/admin/tenants/{world.tenant_id}"
    assert root.call("DELETE", path).status_code == 204

    sent: list = []
    saved = replies.QUEUE.enqueuer
    replies.QUEUE.set_enqueuer(lambda items: sent.extend(item[0] for item in items))
    try:
        _sweep()
        assert reply.id not in sent
        with session_scope() as session:
            assert session.get(AiReply, reply.id).due_at == reply.due_at

        # Reactivated, its reply is re-driven: waiting was not dropping it.
        assert root.call("PATCH", path, json={"status": "active"}).status_code == 200
        _sweep()
        assert reply.id in sent
    finally:
        replies.QUEUE.set_enqueuer(saved)
