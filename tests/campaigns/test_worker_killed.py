"""A worker SIGKILLed mid-campaign: the batch it held is rolled back whole, and the campaign,
re-driven by the scheduler, finishes on another worker without messaging anyone twice.

A real ``dramatiq workers.main`` subprocess on a Redis namespace of its own (as in
``tests/automation/test_faults.py``); this process's outbox publisher and campaign
enqueuer point at that namespace. The test holds a lock on the open conversation of
the fifth recipient, so the worker is caught inside its second batch (one message of
it already written) when it is killed.
"""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import select, text, update

from scheduler.jobs import start_due_campaigns
from shared.db import session_scope
from shared.models import Campaign, Contact, Conversation, Message
from tests.automation.test_faults import waiting_on_a_lock
from tests.campaigns.conftest import Shop, sent_to
from tests.waiting import wait_until
from tests.webhooks.faults_support import (
    start_worker,
)


def test_a_worker_killed_mid_batch_resumes_without_sending_twice(
    shop: Shop, fake_graph, campaign_settings, routed
):
    campaign_settings(batch_size=3)
    contacts = shop.contacts(9)
    held = shop.conversation(
        {"id": contacts[4], "channel": "whatsapp"}, integration_account_id=shop.wa["id"]
    )
    campaign = shop.create()
    shop.add(campaign, contacts)
    campaign_id = uuid.UUID(campaign["id"])

    def statuses() -> list[str]:
        return [r.status for r in shop.recipients(campaign)]

    procs = []
    try:
        with session_scope() as blocker:
            blocker.execute(
                select(Conversation.id).where(Conversation.id == held["id"]).with_for_update()
            )
            first = start_worker(namespace=routed)
            procs.append(first)
            shop.send(campaign)
            wait_until(
                lambda: statuses()[:3] == ["sent"] * 3,
                "the first batch sent",
                30,
                details=first.log,
            )
            wait_until(waiting_on_a_lock, "the second batch waits for the conversation", 30)
            first.kill()  # SIGKILL mid-batch: Postgres rolls the batch back
            blocker.rollback()
        assert statuses() == ["sent"] * 3 + ["pending"] * 6
        with session_scope() as session:
            made = session.scalar(
                select(text("count(*)"))
                .select_from(Message)
                .where(Message.tenant_id == shop.tenant_id, Message.direction == "outbound")
            )
        assert made == 3  # the killed batch's first message went with it
        assert len(sent_to(fake_graph, shop)) == 3

        with session_scope() as session:  # move time: the lost batch is a minute late
            session.execute(
                update(Campaign)
                .where(Campaign.id == campaign_id)
                .values(next_batch_at=text("now() - interval '2 minutes'"))
            )
        with session_scope() as session:
            # NOTE: the job looks at every tenant of this process's database: an earlier
            # test's campaign whose batch a loaded machine made a minute late is redriven
            # too, so this campaign's own redrive is judged by what follows.
            started = start_due_campaigns(session)
        assert started["started"] == 0 and started["redriven"] >= 1, started
        second = start_worker(namespace=routed)
        procs.append(second)
        wait_until(
            lambda: statuses() == ["sent"] * 9,
            "every recipient sent",
            60,
            details=second.log,
        )
        wait_until(
            lambda: shop.get(campaign)["status"] == "completed", "completed", 30, details=second.log
        )
    finally:
        for proc in procs:
            proc.close()
    with session_scope() as session:
        numbers = set(session.scalars(select(Contact.external_id).where(Contact.id.in_(contacts))))
    at_graph = Counter(sent_to(fake_graph, shop))
    assert set(at_graph) == numbers
    assert max(at_graph.values()) == 1  # nobody messaged twice
    assert len(shop.event_data("campaign.completed")) == 1
