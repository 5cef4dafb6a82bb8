"""A conversation claimed by another AI agent while its reply is being settled.

Settling locks the reply, then its conversation (one statement). A message routed to
another AI agent claims the conversation for it and upserts the conversation's in-flight
reply, whose row that upsert locks too: had the claim locked the conversation first, each
would wait for the other (a deadlock, one of them aborted; the dispatch job retries).
"""

from __future__ import annotations

import uuid

from sqlalchemy import select

from shared.ai import generation, replies
from shared.db import get_sessionmaker, session_scope
from shared.models.ai import AiOrchestrationRule, AiReply
from tests.ai_config.conftest import create_agent, generating_reply, inbound_message, tid
from tests.inbox_conversations.conftest import row
from tests.lock_races import race

QUESTION = "A billing question, please"


def _route_billing_to(ws, agent_id: str) -> None:
    with session_scope() as session:
        session.add(
            AiOrchestrationRule(
                tenant_id=tid(ws),
                name="Billing",
                match_type="keyword",
                keywords=["billing"],
                target_ai_agent_id=uuid.UUID(agent_id),
            )
        )


def test_claiming_a_conversation_while_its_reply_settles_does_not_deadlock(workspace):
    ws = workspace
    first = create_agent(ws)["id"]
    second = create_agent(ws)["id"]
    _route_billing_to(ws, second)
    conversation, reply_id = generating_reply(ws, first)
    message_id = inbound_message(ws, conversation, QUESTION)
    settling = get_sessionmaker()()
    # generation.settle's locking read has taken the reply, not yet its conversation.
    settling.execute(select(AiReply.id).where(AiReply.id == reply_id).with_for_update()).one()
    failures: list = []

    def dispatch_the_message():
        try:
            with session_scope() as session:
                return replies.schedule(
                    session, tid(ws), uuid.UUID(conversation), message_id, QUESTION
                )
        except Exception as exc:  # reported by the test
            return exc

    def lock_the_conversation():
        try:
            settling.execute(
                generation.reply_and_conversation().where(AiReply.id == reply_id).with_for_update()
            ).one()
        except Exception as exc:  # reported by the test
            failures.append(exc)
            settling.rollback()

    scheduled = race(settling, dispatch_the_message, then=lock_the_conversation)

    assert failures == []
    # Claimed for the agent the rule routes to; the generating reply is followed up when
    # it settles (no second reply now).
    assert scheduled is None
    claimed = row(conversation)
    assert (claimed.ai_agent_id, claimed.ai_active) == (uuid.UUID(second), True)
