"""A campaign batch made in bulk: the same conversations, counters, activity and events as a
message sent on its own, and the plan's monthly messages counted per message."""

from __future__ import annotations

import uuid

from sqlalchemy import select, text

from shared.db import session_scope
from shared.models import Conversation, Message
from tests.billing_subscriptions.conftest import on_plan
from tests.campaigns.conftest import TEMPLATE, Shop, sent_to, settled


def _events(shop: Shop, event_type: str) -> list:
    with session_scope() as session:
        return list(
            session.execute(
                text(
                    "SELECT data, actor_type, actor_id FROM outbox_events"
                    " WHERE tenant_id = :t AND type = :type"
                ),
                {"t": shop.tenant_id, "type": event_type},
            )
        )


def test_a_batch_reuses_open_conversations_opens_the_others_and_records_each_event(
    shop: Shop, fake_graph, campaign_settings, batches
):
    campaign_settings(batch_size=10)
    contacts = shop.contacts(3)
    held = shop.conversation(
        {"id": contacts[0], "channel": "whatsapp"}, integration_account_id=shop.wa["id"]
    )
    campaign = shop.create()
    shop.add(campaign, contacts)
    shop.send(campaign)
    assert batches.run_next() == ["completed"]  # one batch made all three messages
    assert settled(shop, campaign)["counts"]["sent"] == 3
    assert len(sent_to(fake_graph, shop)) == 3

    recipients = {r.contact_id: r for r in shop.recipients(campaign)}
    with session_scope() as session:
        conversations = {
            c.contact_id: c
            for c in session.scalars(
                select(Conversation).where(Conversation.tenant_id == shop.tenant_id)
            )
        }
        messages = {
            m.id: m
            for m in session.scalars(select(Message).where(Message.tenant_id == shop.tenant_id))
        }
    assert len(conversations) == 3 and len(messages) == 3
    assert conversations[contacts[0]].id == held["id"]
    for contact in contacts:
        conversation = conversations[contact]
        message = messages[recipients[contact].message_id]
        assert message.conversation_id == conversation.id
        assert (message.sender_type, message.content_type) == ("system", "template")
        assert conversation.message_count == 1
        assert conversation.last_message_preview == f"Template: {TEMPLATE}"
        assert conversation.last_message_at == message.created_at
        assert conversation.integration_account_id == uuid.UUID(str(shop.wa["id"]))
    assert conversations[contacts[0]].subject is None  # reused as it was
    assert {conversations[c].subject for c in contacts[1:]} == {"Spring sale"}

    opened = _events(shop, "conversation.created")
    assert sorted((row.data["id"], row.actor_type, row.actor_id) for row in opened) == sorted(
        (str(conversations[c].id), "contact", c) for c in contacts[1:]
    )
    created = _events(shop, "message.created")
    assert sorted(row.data["id"] for row in created) == sorted(str(i) for i in messages)
    for row in created:
        assert row.actor_type == "system"
        assert row.data["status"] == "queued" and row.data["sender_type"] == "system"
        assert row.data["template"]["name"] == TEMPLATE
    with session_scope() as session:
        logged = session.scalars(
            text(
                "SELECT entity_id FROM activity_logs WHERE tenant_id = :t"
                " AND action = 'message.created'"
            ),
            {"t": shop.tenant_id},
        ).all()
    assert sorted(logged) == sorted(messages)


def test_the_plans_monthly_messages_fail_the_recipients_past_the_limit(
    shop: Shop, fake_graph, campaign_settings, batches
):
    on_plan(shop.ws, monthly_message_limit=2)
    campaign_settings(batch_size=10)
    campaign = shop.create()
    shop.add(campaign, shop.contacts(4))
    shop.send(campaign)
    assert batches.run_next() == ["completed"]
    counts = settled(shop, campaign)["counts"]
    assert (counts["sent"], counts["failed"]) == (2, 2)
    failed = [r for r in shop.recipients(campaign) if r.status == "failed"]
    assert {(r.error_code, r.message_id) for r in failed} == {("plan_limit_reached", None)}
    assert len(sent_to(fake_graph, shop)) == 2
    usage = shop.ws.call("GET", "/api/billing/usage").json
    assert usage["usage"]["messages"] == 2
