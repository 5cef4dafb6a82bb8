"""A failing model endpoint hands the conversation off, never leaving the contact silent."""

from __future__ import annotations

import json
import socket

import pytest

from shared.ai.handoff import DEFAULT_MESSAGE
from tests.ai_reply.conftest import one_ai_reply_a_month
from tests.waiting import wait_until

QUESTION = "How long does shipping take?"


def _handed_off(world, fake_graph, reason: str):
    """The conversation's one reply is a handoff for ``reason``; return (reply, conversation)."""
    conversation = world.conversation()
    [reply] = world.final_replies(conversation.id)
    assert (reply.status, reply.handoff_reason) == ("handed_off", reason), reply.error
    fresh = world.fresh(conversation.id)
    assert fresh.ai_active is False
    [sent] = world.wait_sent_to_graph(fake_graph)
    [message] = world.outbound(conversation.id)
    assert message.sender_type == "ai_agent" and reply.reply_message_id == message.id
    [event] = wait_until(lambda: world.events("conversation.handed_off"), "the handed_off event")
    assert event.data["reason"] == reason and event.data["id"] == str(conversation.id)
    assert event.actor_type == "ai_agent"
    return reply, fresh, sent


def test_a_429_with_retry_after_is_retried_then_answered(world, fake_graph, fake_llm):
    world.agent(provider="openai")
    fake_llm.script(("status", 429, {"Retry-After": "1"}), ("answer", "Three to five days."))

    world.write(QUESTION)

    [sent] = world.wait_sent_to_graph(fake_graph)
    assert sent.json["text"]["body"] == "Three to five days."
    first, second = fake_llm.chats()
    assert second.at - first.at >= 0.9  # Retry-After honoured
    [reply] = world.final_replies(world.conversation().id)
    assert reply.status == "sent"


def test_a_model_answer_with_a_nul_is_sent_cleaned_at_once(world, fake_graph, fake_llm):
    """PostgreSQL refuses NUL in text: stored as is, the answer failed the reply's settling."""
    agent = world.agent(provider="openai")
    fake_llm.script(("answer", "Three to five\u0000 days."))

    world.write(QUESTION)

    [sent] = world.wait_sent_to_graph(fake_graph)
    assert sent.json["text"]["body"] == "Three to five\ufffd days."
    [reply] = world.final_replies(world.conversation().id)
    assert reply.status == "sent", reply.error
    assert len(fake_llm.chats()) == 1  # settled the first time, not re-driven
    assert world.usage(agent.id).replies == 1


@pytest.mark.parametrize(
    "behaviour",
    [("status", 500), ("status", 429, {"Retry-After": "60"}), ("malformed",), ("shape",)],
    ids=["500", "429-too-long", "malformed-json", "no-choices"],
)
def test_a_failing_model_hands_off_with_model_error(world, fake_graph, fake_llm, behaviour):
    agent = world.agent(provider="openai", handoff_message="A colleague will take over.")
    fake_llm.script(behaviour)

    world.write(QUESTION)

    reply, _, sent = _handed_off(world, fake_graph, "model_error")
    assert sent.json["text"]["body"] == "A colleague will take over."
    assert reply.error
    usage = world.usage(agent.id)
    assert (usage.replies, usage.handoffs) == (0, 1)
    if behaviour == ("status", 500):
        assert len(fake_llm.chats()) == 3  # two retries, then the handoff


def test_a_model_slower_than_the_timeout_hands_off(world, fake_graph, fake_llm):
    world.agent(provider="openai")
    fake_llm.script(("sleep", 2.5))
    world.write(QUESTION)
    reply, _, sent = _handed_off(world, fake_graph, "model_error")
    assert reply.error.startswith("timeout")
    assert sent.json["text"]["body"] == DEFAULT_MESSAGE


def test_an_unreachable_model_hands_off(world, fake_graph):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    world.agent(provider="openai", base_url=f"http://127.0.0.1:{port}/v1")
    world.write(QUESTION)
    reply, _, _ = _handed_off(world, fake_graph, "model_error")
    assert reply.error.startswith("unreachable")


def test_an_agent_base_url_to_a_private_address_is_refused(world, fake_graph, fake_llm):
    world.agent(provider="openai", base_url="http://10.1.2.3/v1")
    world.write(QUESTION)
    reply, _, _ = _handed_off(world, fake_graph, "model_error")
    assert "refused" in reply.error
    assert fake_llm.chats() == []


def test_the_agent_api_key_is_sent_and_never_stored_in_errors(world, fake_graph, fake_llm):
    key = "sk-test-very-secret-0123456789"
    world.agent(provider="openai", api_key=key)
    fake_llm.script(("status", 500))
    world.write(QUESTION)
    reply, _, _ = _handed_off(world, fake_graph, "model_error")
    assert {c.token for c in fake_llm.chats()} == {key}
    assert key not in (reply.error or "")


def test_asking_for_a_human_hands_off_to_the_rule_division(world, fake_graph, fake_llm):
    agent = world.agent(provider="openai")
    division = world.division()
    world.handoff_rule(
        agent.id, "explicit_request", division_id=division, message="Connecting you now."
    )

    world.write("I want to talk to a real person please")

    _, conversation, sent = _handed_off(world, fake_graph, "explicit_request")
    assert conversation.division_id == division
    assert sent.json["text"]["body"] == "Connecting you now."
    assert fake_llm.chats() == []  # decided before any model call


def test_asking_for_a_human_hands_off_even_without_a_rule(world, fake_graph):
    world.agent()
    world.write("Can I speak to a human?")
    _handed_off(world, fake_graph, "explicit_request")


def test_a_keyword_rule_hands_off(world, fake_graph):
    agent = world.agent()
    world.handoff_rule(agent.id, "keyword", keywords=["refund", "lawyer"])
    world.write("My LAWYER says I need a refund for my order")
    _handed_off(world, fake_graph, "keyword")


def test_max_turns_hands_off_after_that_many_ai_replies(world, fake_graph):
    agent = world.agent()
    world.handoff_rule(agent.id, "max_turns", max_turns=1)
    world.write("What are your opening hours?")
    world.wait_sent_to_graph(fake_graph, 1)
    world.write("How long does shipping take?")
    conversation = world.conversation()
    first, second = world.final_replies(conversation.id, 2)
    assert (first.status, second.status, second.handoff_reason) == (
        "sent",
        "handed_off",
        "max_turns",
    )


def test_no_matching_knowledge_hands_off_as_low_confidence(world, fake_graph, fake_llm):
    world.agent(provider="openai")
    world.write("Do you sell submarines?")
    _handed_off(world, fake_graph, "low_confidence")
    assert fake_llm.chats() == []


def test_the_daily_reply_limit_hands_off_as_usage_limit(world, fake_graph):
    agent = world.agent(daily_reply_limit=1)
    world.write("What are your opening hours?")
    world.wait_sent_to_graph(fake_graph, 1)
    world.write("How long does shipping take?")
    conversation = world.conversation()
    _, second = world.final_replies(conversation.id, 2)
    assert (second.status, second.handoff_reason) == ("handed_off", "usage_limit")
    usage = world.usage(agent.id)
    assert (usage.replies, usage.handoffs) == (1, 1)


def test_the_daily_reply_limit_holds_for_replies_generated_at_once(world, fake_graph, fake_llm):
    """Each reply passes the limit before the model; the limit must hold as they settle."""
    agent = world.agent(provider="openai", daily_reply_limit=1)
    fake_llm.delay = 0.4  # all four are prepared before the first one settles
    senders = [f"1631556{n:04d}" for n in range(4)]
    for sender in senders:
        world.write(QUESTION, sender=sender, settle=False)
    world.settle()

    replies = world.final_replies(count=len(senders))
    outcomes = sorted((r.status, r.handoff_reason) for r in replies)
    assert outcomes == [("handed_off", "usage_limit")] * 3 + [("sent", None)]
    usage = world.usage(agent.id)
    assert (usage.replies, usage.handoffs) == (1, 3)


def test_a_plan_without_ai_replies_left_hands_off_as_usage_limit(world, workspace, fake_graph):
    """Billing: the workspace's plan allows one AI reply a month; the second hands off."""
    one_ai_reply_a_month(workspace)
    world.agent()
    world.write("What are your opening hours?")
    world.wait_sent_to_graph(fake_graph, 1)
    world.write(QUESTION)
    conversation = world.conversation()
    first, second = world.final_replies(conversation.id, 2)
    assert first.status == "sent"
    assert (second.status, second.handoff_reason) == ("handed_off", "usage_limit")


def test_a_handoff_without_an_answer_does_not_spend_the_plans_ai_replies(
    world, workspace, fake_graph
):
    """A low-confidence handoff is no AI reply: it took the plan's last one, and the next
    contact, whose question the agent could answer, was handed off as usage_limit."""
    one_ai_reply_a_month(workspace)
    world.agent()
    world.write("Do you repair bicycles?", sender="16315550001")
    [unknown] = world.final_replies(world.conversation("16315550001").id)
    assert (unknown.status, unknown.handoff_reason) == ("handed_off", "low_confidence")

    world.write("What are your opening hours?", sender="16315550002")
    [known] = world.final_replies(world.conversation("16315550002").id)
    assert (known.status, known.handoff_reason) == ("sent", None)


def _completion_reporting(prompt_tokens: int) -> bytes:
    body = {
        "choices": [{"message": {"role": "assistant", "content": "Three to five days."}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 4},
    }
    return json.dumps(body).encode()


def test_a_model_reporting_absurd_token_counts_is_answered_at_once(world, fake_graph, fake_llm):
    """A count no column holds (a buggy model server) failed settling: the reply was
    re-driven to the model until its attempts ran out, then handed off."""
    agent = world.agent(provider="openai")
    fake_llm.script(("raw", _completion_reporting(10**12)))

    world.write(QUESTION)

    [sent] = world.wait_sent_to_graph(fake_graph)
    assert sent.json["text"]["body"] == "Three to five days."
    [reply] = world.final_replies(world.conversation().id)
    assert reply.status == "sent", reply.error
    assert len(fake_llm.chats()) == 1
    assert 0 < world.usage(agent.id).prompt_tokens < 10**6
