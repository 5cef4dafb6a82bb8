"""The crash path end to end: an event committed without its fast path is re-driven once.

A real ``python -m scheduler`` leads and sweeps; the suite's in-process Dramatiq
worker consumes the ``dispatch_event`` messages the sweeper enqueues.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter

import pytest
from sqlalchemy import func, update

from shared import dispatch, events
from shared.db import session_scope
from shared.events import Actor, PendingEvent
from shared.models import OutboxEvent
from tests.scheduler.conftest import heartbeat
from workers import publisher, queues

#: The sweeper runs every 5 s; the worker needs milliseconds.
REDRIVE_TIMEOUT = 15


@pytest.fixture(scope="module")
def leader(module_schedulers, worker):
    """One scheduler process, waited for until it leads."""
    process = module_schedulers.start("redrive")

    def leads():
        beat = heartbeat()
        return beat is not None and beat.pid == process.pid

    module_schedulers.wait_for(leads, "the scheduler leads", timeout=15)
    return module_schedulers


def emit_as_if_the_process_died(tenant_id: uuid.UUID) -> uuid.UUID:
    """Commit an event with the fast path disabled, as if we crashed right after commit."""
    events.set_publisher(None)
    try:
        with session_scope() as session:
            return events.emit(
                session,
                "agent.created",
                {"agent": {"id": str(uuid.uuid4())}},
                tenant_id=tenant_id,
                actor=Actor.system(),
            )
    finally:
        publisher.install()


def event_row(event_id: uuid.UUID) -> OutboxEvent:
    with session_scope() as session:
        return session.get(OutboxEvent, event_id)


def make_due(event_id: uuid.UUID) -> None:
    """Move time instead of waiting OUTBOX_SWEEP_AFTER_SECONDS."""
    with session_scope() as session:
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == event_id)
            .values(next_sweep_at=func.now() - dt.timedelta(seconds=1))
        )


def processed(event_id: uuid.UUID):
    def check():
        row = event_row(event_id)
        return row if row.status == "processed" else None

    return check


@pytest.mark.broker
def test_an_event_whose_fast_path_was_lost_is_processed_once(leader, broker, tenant_id):
    event_id = emit_as_if_the_process_died(tenant_id)
    broker.join(queues.EVENTS, timeout=10_000)
    pending = event_row(event_id)
    assert (pending.status, pending.sweep_count, pending.dispatch_attempts) == ("pending", 0, 0)

    make_due(event_id)
    row = leader.wait_for(processed(event_id), "the sweeper re-drives it", REDRIVE_TIMEOUT)

    assert row.dispatch_attempts == 1
    assert row.dispatched_at is not None and row.processed_at is not None
    assert row.sweep_count >= 1
    assert "outbox sweeper re-driving" in leader.logs()


def test_an_event_enqueued_by_the_sweeper_and_a_late_fast_path_takes_effect_once(
    leader, broker, tenant_id
):
    calls: Counter[uuid.UUID] = Counter()

    def count_calls(_session, event: OutboxEvent) -> None:
        if event.tenant_id == tenant_id:
            calls[event.id] += 1

    target = f"test-scheduler-count-{tenant_id}"
    dispatch.register_target(target, count_calls)
    try:
        event_id = emit_as_if_the_process_died(tenant_id)
        make_due(event_id)
        leader.wait_for(processed(event_id), "the sweeper re-drives it", REDRIVE_TIMEOUT)

        # The original process wakes up and publishes after all.
        publisher.publish_events([PendingEvent(event_id, tenant_id)])
        broker.join(queues.EVENTS, timeout=10_000)
    finally:
        dispatch.unregister_target(target)

    assert calls == {event_id: 1}
    row = event_row(event_id)
    assert (row.status, row.dispatch_attempts) == ("processed", 1)
