"""A conversation claimed by another AI agent while its reply is being settled.

Settling locks the reply, then its conversation (one statement). A message routed to
another AI agent claims the conversation for it and upserts the conversation's in-flight
reply, whose row that upsert locks too: had the claim locked the conversation first, each
would wait for the other (a deadlock, one of them aborted; the dispatch job retries).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from shared.ai import generation, handoff, replies
from shared.db import get_sessionmaker, session_scope
from shared.models import AiUsageDaily
from shared.models.ai import AiAgent, AiOrchestrationRule, AiReply
from tests.ai_config.conftest import (
    agent_row,
    answered,
    create_agent,
    generating_reply,
    inbound_message,
    tid,
)
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


def _handed_off_then_answered(ws, hands_off: AiAgent, answers: AiAgent) -> list:
    """A batch whose first reply (in conversation order) ``hands_off`` hands off (a blank
    answer) and whose second ``answers`` answers."""
    while True:
        first, second = (
            generating_reply(ws, str(hands_off.id), channel="email"),
            generating_reply(ws, str(answers.id), channel="email"),
        )
        if uuid.UUID(first[0]) < uuid.UUID(second[0]):
            return [answered(ws, hands_off, *first, text=" "), answered(ws, answers, *second)]


def test_two_batches_handing_off_for_each_others_agents_do_not_deadlock(
    workspace, monkeypatch, caplog
):
    """A batch writes its usage at its end, agents in id order; a hand-off's was written as
    the batch reached it, in conversation order. Two batches, each handing off for one agent
    and then answering for the other, took the two agents' rows of the day in opposite
    orders (agents without a daily limit, whose rows a batch does not lock first)."""
    ws = workspace
    a, b = (agent_row(create_agent(ws)["id"]) for _ in range(2))
    batches = [_handed_off_then_answered(ws, b, a), _handed_off_then_answered(ws, a, b)]
    both_handed_off = threading.Barrier(2, timeout=5)
    hand_off = handoff.hand_off

    def hand_off_then_meet(*args, **kwargs):
        sent = hand_off(*args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):
            both_handed_off.wait()
        return sent

    monkeypatch.setattr(handoff, "hand_off", hand_off_then_meet)
    with ThreadPoolExecutor(2) as pool:
        statuses = list(pool.map(generation.finish_many, batches))

    assert [r.exc_info[1] for r in caplog.records if r.exc_info] == []
    assert statuses == [["handed_off", "sent"]] * 2
    with session_scope() as session:
        days = session.scalars(select(AiUsageDaily).where(AiUsageDaily.tenant_id == tid(ws)))
        assert sorted((d.replies, d.handoffs) for d in days) == [(1, 1), (1, 1)]
