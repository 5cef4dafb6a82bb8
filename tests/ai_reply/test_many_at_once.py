"""Many conversations answered at once: answers that come back together settle together.

The worker settles the answers that arrived while its settling threads were busy in
one transaction (:func:`shared.ai.generation.finish_many`); each conversation's
guarantees hold inside it: one answer each, its own message and turn, usage counted once.
"""

from __future__ import annotations

SENDERS = [f"1631555{n:04d}" for n in range(6)]


def test_answers_that_come_back_together_are_each_sent_and_counted_once(
    world, fake_graph, fake_llm
):
    agent = world.agent(provider="openai", settle_seconds=0.2)
    # The model holds every answer (under the tests' 1 s timeout): they come back together.
    fake_llm.delay = 0.4
    for sender in SENDERS:
        world.write("How long does shipping take?", sender=sender, settle=False)
    world.settle()
    conversations = [world.conversation(sender) for sender in SENDERS]

    replies = world.final_replies(count=len(SENDERS))
    assert len({r.conversation_id for r in replies}) == len(replies) == len(SENDERS)
    assert {r.status for r in replies} == {"sent"}, [(r.handoff_reason, r.error) for r in replies]
    for conversation in conversations:
        [reply] = world.replies(conversation.id)
        [message] = world.outbound(conversation.id)
        assert (message.sender_type, reply.reply_message_id) == ("ai_agent", message.id)
        assert world.fresh(conversation.id).ai_turns == 1

    sent = world.wait_sent_to_graph(fake_graph, len(SENDERS))
    assert sorted(r.json["to"] for r in sent) == SENDERS
    usage = world.usage(agent.id)
    assert (usage.replies, usage.handoffs) == (len(SENDERS), 0)
    assert usage.prompt_tokens == sum(r.prompt_tokens for r in replies) > 0
    assert usage.completion_tokens == sum(r.completion_tokens for r in replies) > 0
