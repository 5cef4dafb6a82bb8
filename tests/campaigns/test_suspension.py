"""A suspended workspace's campaign and queued sends wait, and go on once it is reactivated."""

from __future__ import annotations

import uuid

from sqlalchemy import select, text, update

from scheduler.jobs import start_due_campaigns, sweep_outbound_sends
from shared.channels import outbound_engine
from shared.db import session_scope
from shared.models import Campaign, Tenant
from shared.models.outbound import OutboundSend
from tests.campaigns.conftest import Shop, sent_to
from tests.waiting import wait_until


def _status(shop: Shop, status: str) -> None:
    with session_scope() as session:  # through the ORM: the workers' status cache follows it
        session.get(Tenant, shop.tenant_id).status = status


def _pending_sends(shop: Shop) -> list[uuid.UUID]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(OutboundSend.message_id).where(
                    OutboundSend.tenant_id == shop.tenant_id, OutboundSend.status == "pending"
                )
            )
        )


def test_a_suspended_workspace_holds_its_campaign_and_sends_until_reactivated(
    shop: Shop, fake_graph, campaign_settings, batches, held_sends
):
    handed = held_sends
    campaign_settings(batch_interval_ms=3_600_000)
    campaign = shop.create()
    shop.add(campaign, shop.contacts(4))
    shop.send(campaign)
    assert batches.run_next() == ["sent_batch"]  # two messages made, queued to send
    queued = wait_until(lambda: len(handed) == 2 and list(handed), "the two sends handed over")
    _status(shop, "suspended")

    # Queued sends are not claimed, and the sweeper leaves them.
    assert outbound_engine.send_batch(queued) == {}
    with session_scope() as session:
        session.execute(
            update(OutboundSend)
            .where(OutboundSend.tenant_id == shop.tenant_id)
            .values(sweep_at=text("now() - interval '1 hour'"))
        )
    with session_scope() as session:
        sweep_outbound_sends(session)
    assert sorted(_pending_sends(shop)) == sorted(queued) and sent_to(fake_graph, shop) == []

    # The next batch is held, none queued after it; the scheduler does not re-drive it.
    assert batches.run_next() == ["suspended"] and batches.items == []
    with session_scope() as session:
        session.execute(
            update(Campaign)
            .where(Campaign.id == uuid.UUID(campaign["id"]))
            .values(next_batch_at=text("now() - interval '2 minutes'"))
        )
    with session_scope() as session:
        assert start_due_campaigns(session) == {"started": 0, "redriven": 0}
    assert [r.status for r in shop.recipients(campaign)].count("pending") == 2

    _status(shop, "active")
    with session_scope() as session:
        assert start_due_campaigns(session) == {"started": 0, "redriven": 1}
    assert batches.run_next() == ["completed"]  # the last two recipients: nobody left
    pending = wait_until(lambda: len(p := _pending_sends(shop)) == 4 and p, "four sends pending")
    results = outbound_engine.send_batch(pending)
    assert len(results) == 4 and len(sent_to(fake_graph, shop)) == 4
