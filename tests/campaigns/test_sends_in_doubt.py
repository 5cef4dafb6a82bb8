"""A worker SIGKILLed while a campaign message is at the provider: nobody is messaged twice.

Meta takes no idempotency key, so the send the dead worker had in flight is in doubt: the
next claim fails it as ``delivery_unknown`` instead of sending it again, while the sends
that worker had claimed but not started go out once. A real worker subprocess on a
namespace of its own (see ``test_worker_killed.py``); the fake Graph API holds the first
send for 20 s so the kill lands inside the provider call.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select, text, update

from scheduler.jobs import sweep_outbound_sends
from shared.channels import outbound_queue
from shared.config import get_settings
from shared.db import session_scope
from shared.models import Contact, Message
from shared.models.outbound import OutboundSend
from tests.campaigns.conftest import Shop, sent_to
from tests.waiting import wait_until
from tests.webhooks.faults_support import private_broker, start_worker


@pytest.fixture
def one_send_at_a_time(monkeypatch):
    """Worker processes send one message at a time, under a 100 s claim: the Graph timeout
    (24 s) outlasts the fake's 20 s hang, so the kill lands inside the provider call, and
    every send's bound stays under half the claim, as the settings require. The test
    moves time past the claims itself."""
    monkeypatch.setenv("OUTBOUND_SEND_THREADS", "1")
    monkeypatch.setenv("OUTBOUND_CLAIM_SECONDS", "100")
    monkeypatch.setenv("GRAPH_TIMEOUT_SECONDS", "24")
    monkeypatch.setenv("SMTP_TIMEOUT_SECONDS", "10")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_the_send_a_killed_worker_had_at_the_provider_is_not_sent_again(
    shop: Shop,
    fake_graph,
    campaign_settings,
    routed,
    one_send_at_a_time,
    monkeypatch,
):
    import workers.actors.channels_outbound as actors  # installs the enqueuer we replace

    private = private_broker(routed)

    def enqueue(ids) -> None:  # the sweeper's re-drive goes to the private worker
        for batch in actors.outbound_engine.chunks(list(ids)):
            private.enqueue(actors.send_outbound_batch.message([str(i) for i in batch]))

    monkeypatch.setattr(outbound_queue.QUEUE, "enqueuer", enqueue)
    campaign_settings(batch_size=3)
    contacts = shop.contacts(3)
    campaign = shop.create()
    shop.add(campaign, contacts)
    fake_graph.script(("sleep", 20), "ok")  # the first send hangs at the provider

    procs = []
    try:
        first = start_worker(namespace=routed)
        procs.append(first)
        shop.send(campaign)
        wait_until(
            lambda: len(sent_to(fake_graph, shop)) == 1,
            "a send at the provider",
            30,
            details=first.log,
        )
        first.kill()  # SIGKILL during the provider call; two claimed sends never started
        [in_flight] = sent_to(fake_graph, shop)

        with session_scope() as session:  # move time: the dead worker's claims ran out
            session.execute(
                update(OutboundSend)
                .where(OutboundSend.tenant_id == shop.tenant_id)
                .values(
                    next_attempt_at=text("now() - interval '1 second'"),
                    sweep_at=text("now() - interval '1 second'"),
                )
            )
        with session_scope() as session:  # NOTE: global; an earlier test's leftover may be due too
            sweep_outbound_sends(session)
        with session_scope() as session:  # all three re-driven: their sweep_at moved on
            redriven = session.scalar(
                select(func.count())
                .select_from(OutboundSend)
                .where(OutboundSend.tenant_id == shop.tenant_id, OutboundSend.sweep_at > func.now())
            )
        assert redriven == 3
        second = start_worker(namespace=routed)
        procs.append(second)

        wait_until(
            lambda: _settled(shop),
            "every message sent or failed",
            60,
            details=second.log,
        )
    finally:
        for proc in procs:
            proc.close()

    at_graph = Counter(sent_to(fake_graph, shop))
    with session_scope() as session:
        numbers = set(session.scalars(select(Contact.external_id).where(Contact.id.in_(contacts))))
    assert set(at_graph) == numbers and max(at_graph.values()) == 1  # nobody messaged twice
    states = _message_states(shop)
    assert sorted(states.values()) == [
        ("failed", "delivery_unknown"),
        ("sent", None),
        ("sent", None),
    ]
    counts = shop.get(campaign)["counts"]
    assert (counts["sent"], counts["failed"], counts["queued"]) == (2, 1, 0), counts
    assert in_flight in at_graph


def _settled(shop: Shop) -> bool:
    states = _message_states(shop)
    return len(states) == 3 and all(status != "queued" for status, _ in states.values())


def _message_states(shop: Shop) -> dict[uuid.UUID, tuple[str, str | None]]:
    with session_scope() as session:
        rows = session.execute(
            select(Message.id, Message.status, Message.error_code).where(
                Message.tenant_id == shop.tenant_id, Message.direction == "outbound"
            )
        ).all()
    return {row.id: (row.status, row.error_code) for row in rows}
