"""Campaign fixtures: a WhatsApp account on the fake Graph API, contacts, an approved template.

The peers and settings are the channel gaps' (the fake Graph API, short send retries).
:class:`Batches` stands in for the broker's delays: it records each batch a campaign
queues, and :meth:`Batches.run_next` runs them at once after moving the campaign's
``next_batch_at`` back and forgetting the accounts' pace (time moved, not slept).
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from shared import events, redis_client
from shared.campaigns import queue as campaign_queue
from shared.channels import outbound_queue
from shared.config import get_settings
from shared.db import session_scope
from shared.models import Campaign, CampaignRecipient, Contact, WaTemplate
from tests.channels_gaps.conftest import Gaps, gaps_settings  # noqa: F401
from tests.peers.fixtures import fake_graph, fake_graph_server, smtp_servers, smtp_tls_files  # noqa: F401  # noqa: F401
from tests.waiting import wait_until
from tests.webhooks.faults_support import (
    delete_namespace,
    enqueuers,
    namespace_of_test,
    private_broker,
)
from tests.workspaces import Workspace, register

TEMPLATE = "order_update"


@pytest.fixture
def campaign_settings(monkeypatch):
    """Small batches without pacing (the pacing is moved past by :class:`Batches`)."""

    def apply(**values: Any) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"CAMPAIGN_{key.upper()}", str(value))
        get_settings.cache_clear()

    apply(batch_size=2, batch_interval_ms=0, throttle_backoff_seconds=30)
    yield apply
    monkeypatch.undo()
    get_settings.cache_clear()


class Shop(Gaps):
    """One tenant: a WhatsApp account, its approved template, contacts and campaigns."""

    def __init__(self, workspace: Workspace):
        super().__init__(workspace)
        self.wa = self.meta_account("whatsapp")
        self.approve(TEMPLATE)

    def approve(
        self,
        name: str,
        status: str = "APPROVED",
        body: str = "Hi {{1}}, order {{2}}",
        *,
        account: dict[str, Any] | None = None,
    ):
        with session_scope() as session:
            session.add(
                WaTemplate(
                    tenant_id=self.tenant_id,
                    integration_account_id=(account or self.wa)["id"],
                    meta_template_id=str(secrets.randbelow(10**15)),
                    name=name,
                    language="en_US",
                    category="UTILITY",
                    status=status,
                    components=[{"type": "BODY", "text": body}],
                )
            )

    def contacts(self, n: int, channel: str = "whatsapp", **fields: Any) -> list[uuid.UUID]:
        ids = []
        with session_scope() as session:
            for i in range(n):
                number = "1555" + str(secrets.randbelow(10**8)).zfill(8)
                contact = Contact(
                    tenant_id=self.tenant_id,
                    channel=channel,
                    external_id=number,
                    name=f"Customer {i}",
                    phone="+" + number,
                    **fields,
                )
                session.add(contact)
                session.flush()
                ids.append(contact.id)
        return ids

    def template(self, *params: str, name: str = TEMPLATE) -> dict[str, Any]:
        parameters = [
            {"type": "text", "text": p} for p in (params or ("{{name}}", "{{var.order}}"))
        ]
        return {
            "name": name,
            "language": "en_US",
            "components": [{"type": "body", "parameters": parameters}],
        }

    def create(self, **fields: Any) -> dict[str, Any]:
        body = {
            "name": "Spring sale",
            "channel": "whatsapp",
            "integration_account_id": str(self.wa["id"]),
            "template": self.template(),
        } | fields
        resp = self.ws.call("POST", "/api/campaigns", json=body)
        assert resp.status_code == 201, resp.text
        return resp.json

    def add(self, campaign: dict, contact_ids: list[uuid.UUID], status: int = 200):
        resp = self.ws.call(
            "POST",
            f"/api/campaigns/{campaign['id']}/recipients",
            json={"contact_ids": [str(i) for i in contact_ids]},
        )
        assert resp.status_code == status, resp.text
        return resp.json

    def get(self, campaign: dict) -> dict[str, Any]:
        resp = self.ws.call("GET", f"/api/campaigns/{campaign['id']}")
        assert resp.status_code == 200, resp.text
        return resp.json

    def send(self, campaign: dict, status: int = 200, **body: Any):
        resp = self.ws.call("POST", f"/api/campaigns/{campaign['id']}/send", json=body)
        assert resp.status_code == status, resp.text
        return resp.json

    def recipients(self, campaign: dict) -> list[CampaignRecipient]:
        with session_scope() as session:
            return list(
                session.scalars(
                    select(CampaignRecipient)
                    .where(CampaignRecipient.campaign_id == uuid.UUID(campaign["id"]))
                    .order_by(CampaignRecipient.id)
                )
            )

    def campaign_row(self, campaign: dict) -> Campaign:
        with session_scope() as session:
            return session.get(Campaign, uuid.UUID(campaign["id"]))

    def event_data(self, event_type: str) -> list[dict[str, Any]]:
        with session_scope() as session:
            return [
                row[0]
                for row in session.execute(
                    text(
                        "SELECT data FROM outbox_events WHERE tenant_id = :t AND type = :type"
                        " ORDER BY occurred_at"
                    ),
                    {"t": self.tenant_id, "type": event_type},
                )
            ]


@pytest.fixture
def shop(workspace, worker, fake_graph) -> Shop:  # noqa: F811
    return Shop(workspace)


@pytest.fixture
def other(client) -> Workspace:
    return register(client)


def sent_to(graph, shop: Shop) -> list[str]:
    """The recipients of every WhatsApp template the shop's number sent (accepted or refused).

    The fake Graph API serves the whole test process: a previous test's late send (the
    in-process worker finishing its last batch) must not count here.
    """
    own = f"/{shop.wa['external_id']}/messages"
    return [
        r.json["to"]
        for r in graph.sent()
        if r.json.get("type") == "template" and r.path.endswith(own)
    ]


def settled(shop: Shop, campaign: dict, *, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until no recipient is pending or queued (every send has its answer)."""

    def done():
        view = shop.get(campaign)
        counts = view["counts"]
        return view if counts["pending"] == 0 and counts["queued"] == 0 else None

    return wait_until(done, "every recipient sent or failed", timeout=timeout)


class Batches:
    """Records the batches campaigns queue instead of handing them to the broker."""

    def __init__(self) -> None:
        self.items: list[campaign_queue.Item] = []

    def __call__(self, items) -> None:
        self.items.extend(items)

    def run_next(self) -> list[str]:
        """Move time to each recorded batch's due time and run it; their outcomes."""
        from workers.actors.campaigns import run_campaign

        items, self.items = self.items, []
        outcomes = []
        for campaign_id, step, _delay in items:
            forget_pace(campaign_id)
            with session_scope() as session:
                session.execute(
                    update(Campaign)
                    .where(Campaign.id == campaign_id, Campaign.next_batch_at > func.now())
                    .values(next_batch_at=func.now())
                )
            outcomes.append(run_campaign(str(campaign_id), step))
        return outcomes


def forget_pace(campaign_id: uuid.UUID) -> None:
    """Time moved past the pace of the campaign's account (``shared.campaigns.pacing``):
    no last batch, no turn given."""
    with session_scope() as session:
        account_id = session.scalar(
            select(Campaign.integration_account_id).where(Campaign.id == campaign_id)
        )
    if account_id is not None:
        pace = redis_client.key("campaigns", "pace", str(account_id))
        redis_client.get_redis().delete(pace, f"{pace}:turn:{campaign_id}")


@pytest.fixture
def batches(monkeypatch, broker) -> Batches:
    import workers.actors.campaigns  # noqa: F401  (the real enqueuer, replaced here)

    recorder = Batches()
    monkeypatch.setattr(campaign_queue.QUEUE, "enqueuer", recorder)
    return recorder


@pytest.fixture
def held_sends(monkeypatch) -> list[uuid.UUID]:
    """The ids of the sends batches hand over, kept here instead of going to the worker,
    so the test decides when (and whether) they run."""
    import workers.actors.channels_outbound  # noqa: F401  (the real enqueuer, replaced here)

    held: list[uuid.UUID] = []
    monkeypatch.setattr(outbound_queue.QUEUE, "enqueuer", held.extend)
    return held


@pytest.fixture
def routed(monkeypatch, broker):
    """Send this process's outbox events and campaign batches to a private namespace."""
    from workers.actors.campaigns import run_campaign

    namespace = namespace_of_test()
    private = private_broker(namespace)
    _, publish = enqueuers(private)

    def enqueue(items) -> None:
        for campaign_id, step, _delay in items:
            private.enqueue(run_campaign.message_with_options(args=(str(campaign_id), step)))

    monkeypatch.setattr(events, "_publisher", publish)
    monkeypatch.setattr(campaign_queue.QUEUE, "enqueuer", enqueue)
    yield namespace
    delete_namespace(namespace, get_settings().redis_url)
