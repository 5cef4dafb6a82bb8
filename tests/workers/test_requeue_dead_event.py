"""An operator's requeue of a ``dispatch_event`` dead letter: the event its retries-exhausted
handler failed is dispatched again, and its targets get it."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select

from shared import dispatch
from shared.config import get_settings
from shared.db import session_scope
from shared.models import DeadLetter, OutboxEvent
from tests.waiting import wait_until
from workers.actors.events import dispatch_event

OPERATOR = {"Authorization": f"Bearer {get_settings().metrics_token}"}


@pytest.fixture
def flaky_target(tenant):
    """A target that raises for ``tenant``'s events while ``down``, and records those it got."""
    name = f"tests.flaky_target.{tenant}"
    state = {"down": True, "got": []}

    def target(session, event):
        if event.tenant_id == tenant:
            if state["down"]:
                raise RuntimeError("target exploded")
            state["got"].append(event.id)

    dispatch.register_target(name, target)
    yield state
    dispatch.unregister_target(name)


def _status(event_id: uuid.UUID) -> str:
    with session_scope() as session:
        return session.get(OutboxEvent, event_id).status


def _dead_event(tenant) -> tuple[uuid.UUID, uuid.UUID]:
    """An event whose dispatch ran out of retries: (event id, its dead letter's id)."""
    with session_scope() as session:
        row = OutboxEvent(
            tenant_id=tenant,
            type="agent.created",
            actor_type="system",
            data={"agent": {"id": "test"}},
            next_sweep_at=func.now() + dt.timedelta(hours=1),  # out of the sweeper's reach
        )
        session.add(row)
        session.flush()
        event_id = row.id
    message = dispatch_event.send_with_options(
        args=(str(event_id),), max_retries=0, tenant_id=str(tenant)
    )
    wait_until(lambda: _status(event_id) == "failed", "the event failed by its handler")

    def dead_letter():
        with session_scope() as session:
            return session.scalar(
                select(DeadLetter.id).where(DeadLetter.message_id == message.message_id)
            )

    return event_id, wait_until(dead_letter, "the event's dead letter")


def test_requeuing_a_dead_event_dispatches_it_to_its_targets(
    client, broker, worker, tenant, flaky_target
):
    event_id, letter = _dead_event(tenant)
    flaky_target["down"] = False

    resp = client.simulate_post(f"/api/ops/dead-letters/{letter}/requeue", headers=OPERATOR)

    assert resp.status_code == 200, resp.text
    wait_until(lambda: _status(event_id) == "processed", "the event dispatched")
    assert flaky_target["got"] == [event_id]


def test_a_dead_event_dispatched_meanwhile_is_not_requeued(
    client, broker, worker, tenant, flaky_target
):
    event_id, letter = _dead_event(tenant)
    with session_scope() as session:
        session.get(OutboxEvent, event_id).status = "processed"

    resp = client.simulate_post(f"/api/ops/dead-letters/{letter}/requeue", headers=OPERATOR)

    assert resp.status_code == 409, resp.text
    assert resp.json["error"]["code"] == "not_requeueable"
    assert "dispatched already" in resp.json["error"]["message"]
