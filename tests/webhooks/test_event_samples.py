"""The event catalogue's samples are shaped like the events a subscriber receives.

A receiver is written from ``GET /api/outgoing-webhooks/event-types``: a sample whose
``data`` lacks what the real event carries (or carries what it never does) has its
integrators parse fields that are not there.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from shared.db import session_scope
from shared.models import WaTemplate
from tests.campaigns.conftest import (  # noqa: F401  (fixtures)
    Shop,
    batches,
    campaign_settings,
    gaps_settings,
    shop,
)
from tests.peers.fixtures import fake_graph, fake_graph_server, smtp_servers, smtp_tls_files  # noqa: F401

CAMPAIGN_EVENTS = (
    "campaign.started",
    "campaign.completed",
    "campaign.cancelled",
    "campaign.failed",
)


def _shape(data: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The keys of an event's ``data`` and of its ``counts``."""
    return set(data), set(data.get("counts") or {})


def _samples(tenant: Shop) -> dict[str, dict[str, Any]]:
    resp = tenant.ws.call("GET", "/api/outgoing-webhooks/event-types")
    assert resp.status_code == 200, resp.text
    return {t["type"]: t["sample"]["data"] for t in resp.json}


def _run_until(recorded, outcome: str) -> None:
    for _ in range(5):
        if outcome in recorded.run_next():
            return
    raise AssertionError(f"no batch ended {outcome}")


def test_each_campaign_events_sample_has_the_keys_of_the_real_event(
    shop: Shop,  # noqa: F811
    fake_graph,  # noqa: F811
    campaign_settings,  # noqa: F811
    batches,  # noqa: F811
):
    """The ``campaign.*`` samples were ``{id, created_at}``; each real event carries the
    campaign's view, counts included (and ``error_code``/``error_message`` on failure)."""
    completed = shop.create(name="Completes")
    shop.add(completed, shop.contacts(2))
    shop.send(completed)
    _run_until(batches, "completed")

    cancelled = shop.create(name="Cancelled")
    shop.add(cancelled, shop.contacts(1))
    shop.send(cancelled)
    resp = shop.ws.call("POST", f"/api/campaigns/{cancelled['id']}/cancel")
    assert resp.status_code == 200, resp.text
    batches.items.clear()

    failed = shop.create(name="Fails")
    shop.add(failed, shop.contacts(1))
    shop.send(failed)
    with session_scope() as session:
        session.execute(
            update(WaTemplate)
            .where(WaTemplate.tenant_id == shop.tenant_id)
            .values(status="DISABLED")
        )
    _run_until(batches, "failed")

    samples = _samples(shop)
    for event_type in CAMPAIGN_EVENTS:
        real = shop.event_data(event_type)
        assert real, f"no {event_type} was emitted"
        assert _shape(samples[event_type]) == _shape(real[0]), event_type
    assert samples["campaign.failed"]["status"] == "failed"
    assert samples["campaign.failed"]["error_code"] and samples["campaign.failed"]["error_message"]
    assert samples["campaign.completed"]["status"] == "completed"
    assert samples["campaign.completed"]["error_code"] is None
