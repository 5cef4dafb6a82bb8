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
from typing import Any

from sqlalchemy import select

from shared.ai import generation, handoff, replies
from shared.db import get_sessionmaker, session_scope
from shared.models import AiUsageDaily, Conversation
from shared.models.ai import (
    AiAgent,
    AiAgentAssignment,
    AiHandoffRule,
    AiOrchestrationRule,
    AiReply,
)
from shared.timekeeping import sla
from tests.ai_config.conftest import (
    agent_row,
    answered,
    create_agent,
    generating_reply,
    inbound_message,
    tid,
)
from tests.inbox_conversations.conftest import add_conversation, add_division, row
from tests.lock_races import SlaCheckHolding, blocked_on_a_lock, race
from tests.waiting import wait_until

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


def test_a_claim_that_waited_while_a_reply_appeared_does_not_deadlock(workspace):
    """A claim locks the in-flight reply, then the conversation. While it waited for the
    conversation another dispatch committed a reply, and a third transaction took that
    reply and asked for the conversation: the claim, holding the conversation, waited for
    the reply in its upsert, the third for the conversation."""
    ws = workspace
    first, second = create_agent(ws)["id"], create_agent(ws)["id"]
    _route_billing_to(ws, second)
    conversation = add_conversation(ws, ai_agent_id=uuid.UUID(first), ai_active=True)
    message_id = inbound_message(ws, conversation, QUESTION)
    conversation_id = uuid.UUID(conversation)
    writing = get_sessionmaker()()  # a write of the conversation, in progress
    writing.execute(
        select(Conversation.id)
        .where(Conversation.id == conversation_id)
        .with_for_update(key_share=True)
    ).one()
    outcomes: dict[str, Any] = {}

    def claim() -> None:
        try:
            with session_scope() as session:
                outcomes["claim"] = replies.schedule(
                    session, tid(ws), conversation_id, message_id, QUESTION
                )
        except Exception as exc:  # reported by the test
            outcomes["claim"] = exc

    claiming = threading.Thread(target=claim)
    claiming.start()
    wait_until(lambda: blocked_on_a_lock() == 1, "the claim waiting for the conversation")
    appeared = _pending_reply(ws, conversation_id, uuid.UUID(first), message_id)
    holding = get_sessionmaker()()  # as a settle: the reply, then its conversation
    holding.execute(select(AiReply.id).where(AiReply.id == appeared).with_for_update()).one()

    def take_the_conversation() -> None:
        try:
            holding.execute(
                select(Conversation.id).where(Conversation.id == conversation_id).with_for_update()
            ).one()
            holding.commit()
            outcomes["holder"] = "committed"
        except Exception as exc:  # reported by the test
            outcomes["holder"] = exc
            holding.rollback()

    taking = threading.Thread(target=take_the_conversation)
    taking.start()
    wait_until(lambda: blocked_on_a_lock() == 2, "the holder waiting for the conversation too")
    writing.commit()
    for thread in (claiming, taking):
        thread.join(timeout=30)
    writing.close()
    holding.close()

    assert outcomes["holder"] == "committed"
    assert outcomes["claim"] == appeared  # the reply that appeared now answers this message
    claimed = row(conversation)
    assert (claimed.ai_agent_id, claimed.ai_active) == (uuid.UUID(second), True)


def _pending_reply(ws, conversation_id, agent_id, message_id) -> uuid.UUID:
    with session_scope() as session:
        reply = AiReply(
            tenant_id=tid(ws),
            conversation_id=conversation_id,
            ai_agent_id=agent_id,
            last_message_id=message_id,
            status="pending",
        )
        session.add(reply)
        session.flush()
        return reply.id


def test_claiming_a_conversation_into_a_division_does_not_deadlock_with_an_sla_check(workspace):
    """A claim that brings the conversation into its assignment's division re-times the
    conversation's SLA clock. ``check_sla`` holds that clock while it inserts its breach,
    which references the conversation: had the claim locked the conversation FOR UPDATE
    (which conflicts with the breach's foreign-key check), each would wait for the other."""
    ws = workspace
    policy = {"name": "Fast", "first_response_minutes": 30}
    assert ws.call("POST", "/api/sla-policies", json=policy).status_code == 201
    agent = create_agent(ws)["id"]
    division = add_division(ws, "Billing")
    conversation = add_conversation(ws)
    with session_scope() as session:
        session.add(
            AiAgentAssignment(
                tenant_id=tid(ws),
                ai_agent_id=uuid.UUID(agent),
                channel="whatsapp",
                division_id=uuid.UUID(division),
            )
        )
        sla.attach(session, session.get_one(Conversation, uuid.UUID(conversation)))
    message_id = inbound_message(ws, conversation, QUESTION)
    check = SlaCheckHolding(conversation)

    def dispatch_the_message():
        try:
            with session_scope() as session:
                return replies.schedule(
                    session, tid(ws), uuid.UUID(conversation), message_id, QUESTION
                )
        except Exception as exc:  # reported by the test
            return exc

    scheduled = race(check.holder, dispatch_the_message, then=check.breach)

    assert check.failures == []
    assert isinstance(scheduled, uuid.UUID), scheduled
    claimed = row(conversation)
    assert (claimed.ai_agent_id, claimed.division_id) == (uuid.UUID(agent), uuid.UUID(division))


def _handing_off_into(ws, division: str) -> tuple[AiAgent, str, uuid.UUID]:
    """An agent whose model errors hand off into ``division``, and a conversation of its
    (with an SLA clock) whose reply is being generated."""
    agent = create_agent(ws)["id"]
    conversation, reply_id = generating_reply(ws, agent)
    with session_scope() as session:
        session.add(
            AiHandoffRule(
                tenant_id=tid(ws),
                ai_agent_id=uuid.UUID(agent),
                kind="model_error",
                division_id=uuid.UUID(division),
            )
        )
        sla.attach(session, session.get_one(Conversation, uuid.UUID(conversation)))
    return agent_row(agent), conversation, reply_id


def test_a_hand_off_into_a_division_does_not_deadlock_with_an_sla_check(workspace):
    """Settling a reply that hands off into a division re-times the SLA clock while it
    holds the conversation; ``check_sla`` holds the clock while its breach's foreign key
    takes the conversation FOR KEY SHARE, which a FOR UPDATE lock blocked."""
    ws = workspace
    policy = {"name": "Fast", "first_response_minutes": 30}
    assert ws.call("POST", "/api/sla-policies", json=policy).status_code == 201
    division = add_division(ws, "Billing")
    agent, conversation, reply_id = _handing_off_into(ws, division)
    check = SlaCheckHolding(conversation)

    def settle():
        try:
            return generation.finish(*answered(ws, agent, conversation, reply_id, text=" "))
        except Exception as exc:  # reported by the test
            return exc

    status = race(check.holder, settle, then=check.breach)

    assert check.failures == []
    assert status == "handed_off", status
    assert row(conversation).division_id == uuid.UUID(division)


def test_a_batch_handing_off_into_a_division_does_not_deadlock_with_an_sla_check(workspace, caplog):
    """As above, for a batch of replies settled together (its failure would settle each
    again on its own, with a warning)."""
    ws = workspace
    policy = {"name": "Fast", "first_response_minutes": 30}
    assert ws.call("POST", "/api/sla-policies", json=policy).status_code == 201
    division = add_division(ws, "Billing")
    batch = [_handing_off_into(ws, division) for _ in range(2)]
    check = SlaCheckHolding(batch[0][1])

    def settle():
        try:
            return generation.finish_many(
                [answered(ws, agent, conv, reply, text=" ") for agent, conv, reply in batch]
            )
        except Exception as exc:  # reported by the test
            return exc

    statuses = race(check.holder, settle, then=check.breach)

    assert check.failures == []
    assert statuses == ["handed_off", "handed_off"], statuses
    assert "together failed" not in caplog.text
