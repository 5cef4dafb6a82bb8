"""From a signed inbound WhatsApp callback to the AI agent's answer at the fake Graph API."""

from __future__ import annotations

import uuid

from tests.waiting import wait_until


def test_offline_agent_answers_a_whatsapp_question_end_to_end(world, fake_graph):
    agent = world.agent()

    world.write("What are your opening hours?")

    [request] = world.wait_sent_to_graph(fake_graph)
    assert request.path == f"/v21.0/{world.wa['external_id']}/messages"
    assert request.json["to"] == "16315551181"
    assert request.json["text"]["body"] == "We are open Monday to Friday, 9am to 6pm."

    conversation = world.conversation()
    assert (conversation.ai_active, conversation.ai_agent_id) == (True, agent.id)
    [reply] = world.final_replies(conversation.id)
    assert reply.status == "sent"
    [message] = world.outbound(conversation.id)
    assert (message.sender_type, message.sender_id) == ("ai_agent", agent.id)
    assert reply.reply_message_id == message.id
    [source] = reply.sources
    assert source["kind"] == "qna" and source["score"] > 0
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    assert world.fresh(conversation.id).ai_turns == 1

    usage = world.usage(agent.id)
    assert (usage.replies, usage.test_replies, usage.handoffs) == (1, 0, 0)
    assert usage.prompt_tokens == reply.prompt_tokens

    # The answer is an ordinary outbound message: listed with its author by the API.
    listed = world.ws.call("GET", f"/api/conversations/{conversation.id}/messages").json
    ours = [m for m in listed["items"] if m["direction"] == "outbound"]
    assert ours[0]["sender_type"] == "ai_agent" and ours[0]["sender_id"] == str(agent.id)


def test_a_burst_of_messages_gets_one_answer_reading_all_of_them(world, fake_llm):
    agent = world.agent(provider="openai", settle_seconds=1.0)

    for body in ("Hello!", "I ordered last week", "how long does shipping take?"):
        world.write(body, settle=False)
    world.settle()

    conversation = world.conversation()
    [reply] = world.final_replies(conversation.id)
    assert reply.status == "sent"
    [chat] = fake_llm.chats()
    # One user turn holds the whole burst (inbound processing may reorder a same-second burst).
    [burst] = [m["content"] for m in chat.messages if m["role"] == "user"][1:]
    assert sorted(burst.split("\n")) == sorted(
        ["Hello!", "I ordered last week", "how long does shipping take?"]
    )
    assert len(world.outbound(conversation.id)) == 1
    assert world.usage(agent.id).replies == 1


def test_a_question_asked_while_the_first_is_answered_gets_its_own_answer(
    world, fake_graph, fake_llm
):
    """The follow-up reply reads the conversation after the first answer went out: that
    answer is newer than the second question, which must still be what it answers."""
    world.agent(provider="openai", settle_seconds=0.2)
    fake_llm.delay = 0.6
    world.write("How long does shipping take?")
    wait_until(lambda: fake_llm.chats(), "the first model call")
    world.write("Can I return an order?")
    fake_llm.delay = 0.0

    conversation = world.conversation()
    first, second = world.final_replies(conversation.id, 2)
    assert first.status == "sent"
    assert (second.status, second.handoff_reason) == ("sent", None), second.error
    last_user_turn = [m for m in fake_llm.chats()[-1].messages if m["role"] == "user"][-1]
    assert "Can I return an order?" in last_user_turn["content"]


def test_a_second_question_after_an_answer_gets_its_own_answer(world, fake_graph):
    world.agent()
    world.write("What are your opening hours?")
    world.wait_sent_to_graph(fake_graph, 1)
    world.write("Can I return an order?")
    sent = world.wait_sent_to_graph(fake_graph, 2)
    assert sent[1].json["text"]["body"] == "Yes: returns are free within 30 days of delivery."
    conversation = world.conversation()
    assert [r.status for r in world.final_replies(conversation.id, 2)] == ["sent", "sent"]
    assert world.fresh(conversation.id).ai_turns == 2


def test_a_human_reply_during_the_settle_window_means_no_ai_reply(world, fake_graph):
    world.agent(settle_seconds=1.5)
    world.write("What are your opening hours?")
    conversation = world.conversation()
    wait_until(lambda: world.replies(conversation.id), "the pending reply")

    resp = world.ws.call(
        "POST", f"/api/conversations/{conversation.id}/messages", json={"body": "Hi, Grace here"}
    )
    assert resp.status_code == 201, resp.text

    [reply] = world.final_replies(conversation.id)
    assert reply.status == "skipped"
    assert world.fresh(conversation.id).ai_active is False
    sent = world.wait_sent_to_graph(fake_graph, 1)
    assert [r.json["text"]["body"] for r in sent] == ["Hi, Grace here"]
    assert [m.sender_type for m in world.outbound(conversation.id)] == ["user"]

    # The human keeps it: the contact's next message gets no AI reply at all.
    world.write("Thanks Grace, and shipping?")
    world.drain()
    assert len(world.replies(conversation.id)) == 1


def test_a_takeover_during_the_settle_window_means_no_ai_reply(world, fake_graph):
    world.agent(settle_seconds=1.5)
    world.write("How long does shipping take?")
    conversation = world.conversation()
    wait_until(lambda: world.replies(conversation.id), "the pending reply")

    resp = world.ws.call("POST", f"/api/conversations/{conversation.id}/takeover")
    assert resp.status_code == 200, resp.text

    [reply] = world.final_replies(conversation.id)
    assert reply.status == "skipped"
    assert world.outbound(conversation.id) == []


def test_resolving_during_the_settle_window_means_no_ai_reply(world, fake_graph):
    """A resolved conversation owes no reply (dispatch already says so for new messages)."""
    world.agent(settle_seconds=1.5)
    world.write("How long does shipping take?")
    conversation = world.conversation()
    wait_until(lambda: world.replies(conversation.id), "the pending reply")

    resp = world.ws.call(
        "PATCH", f"/api/conversations/{conversation.id}/status", json={"status": "resolved"}
    )
    assert resp.status_code == 200, resp.text

    [reply] = world.final_replies(conversation.id)
    assert reply.status == "skipped"
    assert world.outbound(conversation.id) == []
    assert world.fresh(conversation.id).status == "resolved"


def test_no_assignment_means_no_ai(world):
    world.agent(assign=False)
    world.write("What are your opening hours?")
    world.drain()
    conversation = world.conversation()
    assert (conversation.ai_active, conversation.ai_agent_id) == (False, None)
    assert world.replies() == []


def test_an_inactive_agent_does_not_answer(world):
    world.agent(is_active=False)
    world.write("What are your opening hours?")
    world.drain()
    assert world.replies() == []


def test_a_channel_wide_assignment_covers_the_account(world, fake_graph):
    agent = world.agent(assign=False)
    world.assign(agent.id, whole_channel=True)
    world.write("How long does shipping take?")
    [request] = world.wait_sent_to_graph(fake_graph)
    assert request.json["text"]["body"] == "Shipping takes 3 to 5 business days."


def test_outside_working_hours_mode_follows_the_tenant_schedule(world, fake_graph):
    from shared.models.automation import WorkingHours

    agent = world.agent(assign=False)
    world.assign(agent.id, mode="outside_working_hours")
    always_open = {
        "days": [
            {"weekday": d, "intervals": [{"start": "00:00", "end": "24:00"}]} for d in range(7)
        ]
    }
    hours = world.add(WorkingHours(tenant_id=world.tenant_id, schedule=always_open))

    world.write("What are your opening hours?")
    world.drain()
    assert world.replies() == []  # inside working hours: humans answer

    from shared.db import session_scope

    with session_scope() as session:
        session.get(WorkingHours, hours.id).schedule = {"days": []}  # closed all week
    world.write("What are your opening hours?", sender="16315550000")
    [request] = world.wait_sent_to_graph(fake_graph)
    assert request.json["to"] == "16315550000"


def test_orchestration_routes_by_keyword_to_another_agent(world, fake_graph):
    front = world.agent()
    billing = world.agent(
        assign=False, faq=[("How do I pay an invoice?", "Invoices are paid by card or transfer.")]
    )
    world.orchestration(billing.id, "keyword", keywords=["invoice"])

    world.write("How do I pay an invoice?")
    [request] = world.wait_sent_to_graph(fake_graph)
    assert request.json["text"]["body"] == "Invoices are paid by card or transfer."
    conversation = world.conversation()
    assert world.fresh(conversation.id).ai_agent_id == billing.id
    assert front.id != billing.id


def test_a_message_routed_to_another_agent_mid_generation_gets_that_agents_answer(
    world, fake_graph, fake_llm
):
    """The routed message finds the first reply generating; dropped, it must leave a follow-up."""
    front = world.agent(provider="openai")
    billing = world.agent(
        assign=False, faq=[("How do I pay an invoice?", "Invoices are paid by card or transfer.")]
    )
    world.orchestration(billing.id, "keyword", keywords=["invoice"])
    fake_llm.delay = 0.8  # under the tests' 1 s model timeout

    world.write("How long does shipping take?", settle=False)
    conversation = world.conversation()
    wait_until(
        lambda: any(r.status == "generating" for r in world.replies(conversation.id)),
        "the front agent's reply generating",
    )
    world.write("How do I pay an invoice?")

    first, second = world.final_replies(conversation.id, 2)
    assert (first.ai_agent_id, first.status) == (front.id, "skipped")
    assert (second.ai_agent_id, second.status) == (billing.id, "sent")
    [request] = world.wait_sent_to_graph(fake_graph)
    assert request.json["text"]["body"] == "Invoices are paid by card or transfer."


def test_ai_reply_appears_in_worker_metrics_under_queue_ai(world, fake_graph):
    import redis

    from shared import worker_metrics as wm
    from shared.config import get_settings

    world.agent()
    world.write("What are your opening hours?")
    world.wait_sent_to_graph(fake_graph)
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url)

    tenant_id = uuid.UUID(str(world.tenant_id))

    def totals():
        # NOTE: this tenant's own figures: other tests' ai_reply runs share the namespace,
        # and a worker flushes its metrics a moment after the message is done.
        data = wm.snapshot(client, settings.redis_namespace, minutes=5, tenant_id=tenant_id)
        found = data["actors"].get("ai_reply", {}).get("totals", {})
        return found if found.get("processed") else None

    assert wait_until(totals, "ai_reply metrics")["processed"] >= 1
    samples = wm.render_prometheus(client, settings.redis_namespace, None, None).decode()
    assert 'actor="ai_reply"' in samples and 'queue="ai"' in samples
    everyone = wm.snapshot(client, settings.redis_namespace, minutes=5)
    assert everyone["actors"]["ai_reply"]["totals"]["processed"] >= 1
