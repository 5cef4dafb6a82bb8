"""dispatch_event end to end: the outbox fast path, idempotency, unknown ids, exhausted retries."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select

from shared import dispatch, events
from shared.config import get_settings
from shared.db import session_scope
from shared.models import DeadLetter, OutboxEvent
from shared.queue_stats import redis_broker_namespace
from tests.waiting import wait_until
from workers import publisher, queues
from workers.actors.events import dispatch_event

#: Also run on RabbitMQ by `make test`'s second pass (BROKER_URL=amqp://...).
pytestmark = pytest.mark.broker


def _event(event_id: uuid.UUID) -> OutboxEvent:
    with session_scope() as session:
        return session.get(OutboxEvent, event_id)


def _insert_event(tenant_id: uuid.UUID) -> uuid.UUID:
    """Insert a pending outbox row *without* the fast path, and out of the sweeper's reach."""
    with session_scope() as session:
        row = OutboxEvent(
            tenant_id=tenant_id,
            type="agent.created",
            actor_type="system",
            data={"agent": {"id": "test"}},
            next_sweep_at=func.now() + dt.timedelta(hours=1),
        )
        session.add(row)
        session.flush()
        return row.id


def test_emitted_event_is_dispatched_after_commit(broker, worker, tenant):
    publisher.install()
    with session_scope() as session:
        event_id = events.emit(
            session,
            "agent.created",
            {"agent": {"id": str(uuid.uuid4())}},
            tenant_id=tenant,
            actor=events.Actor.system(),
        )
    event = wait_until(lambda: (e := _event(event_id)).status == "processed" and e)
    assert event.dispatched_at is not None and event.processed_at >= event.dispatched_at
    assert event.dispatch_attempts == 1


def test_dispatching_twice_processes_once(tenant):
    event_id = _insert_event(tenant)
    with session_scope() as session:
        assert dispatch.dispatch(session, event_id) is dispatch.Outcome.PROCESSED
    with session_scope() as session:
        assert dispatch.dispatch(session, event_id) is dispatch.Outcome.ALREADY_DONE
    assert _event(event_id).dispatch_attempts == 1


def test_dispatch_event_sent_twice_processes_once(broker, worker, tenant):
    event_id = _insert_event(tenant)
    dispatch_event.send(str(event_id))
    dispatch_event.send(str(event_id))
    broker.join(queues.EVENTS, timeout=10_000)
    event = _event(event_id)
    assert (event.status, event.dispatch_attempts) == ("processed", 1)


def _dead_lettered_on_rabbitmq(broker, queue: str) -> int:
    return broker.get_queue_message_counts(queue)[2]


def test_unknown_event_id_is_a_no_op(broker, worker, redis_client):
    unknown = uuid.uuid4()
    with session_scope() as session:
        assert dispatch.dispatch(session, unknown) is dispatch.Outcome.UNKNOWN
    assert dispatch_event.fn(str(unknown)) is None

    rabbitmq = get_settings().uses_rabbitmq
    dead_before = _dead_lettered_on_rabbitmq(broker, queues.EVENTS) if rabbitmq else None
    message = dispatch_event.send(str(uuid.uuid4()))
    broker.join(queues.EVENTS, timeout=10_000)
    # NOTE: join returns once the message left the queue; a nack would have moved it
    # to the dead-letter queue atomically before that, so this check is not racy.
    if rabbitmq:
        assert _dead_lettered_on_rabbitmq(broker, queues.EVENTS) == dead_before
    else:
        dead_set = f"{redis_broker_namespace(get_settings())}:{queues.EVENTS}.XQ"
        assert redis_client.zscore(dead_set, message.options["redis_message_id"]) is None


@pytest.fixture
def failing_target(tenant):
    """A fan-out target that raises for ``tenant``'s events only, removed afterwards."""
    name = f"tests.failing_target.{tenant}"

    def target(session, event):
        if event.tenant_id == tenant:
            raise RuntimeError("target exploded")

    dispatch.register_target(name, target)
    yield name
    dispatch.unregister_target(name)


def test_failing_target_retries_then_marks_the_event_failed(broker, worker, tenant, failing_target):
    event_id = _insert_event(tenant)
    message = dispatch_event.send_with_options(
        args=(str(event_id),), max_retries=2, min_backoff=10, max_backoff=50, tenant_id=str(tenant)
    )
    event = wait_until(lambda: (e := _event(event_id)).status == "failed" and e)
    assert event.last_error == "dispatch_event exhausted its retries"
    assert event.dispatch_attempts == 3  # each failed attempt is recorded on the row

    def dead_letter():
        with session_scope() as session:
            return session.scalars(
                select(DeadLetter).where(DeadLetter.message_id == message.message_id)
            ).one_or_none()

    row = wait_until(dead_letter)
    assert (row.actor_name, row.queue_name, row.retries, row.tenant_id) == (
        "dispatch_event",
        queues.EVENTS,
        2,
        tenant,
    )
    assert "RuntimeError: target exploded" in row.error


def _emit(session, tenant_id: uuid.UUID) -> uuid.UUID:
    return events.emit(
        session,
        "agent.created",
        {"agent": {"id": str(uuid.uuid4())}},
        tenant_id=tenant_id,
        actor=events.Actor.system(),
    )


def _processed(event_ids: list[uuid.UUID]) -> list[OutboxEvent]:
    with session_scope() as session:
        rows = session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(event_ids))).all()
        return rows if all(row.status == "processed" for row in rows) else []


def _totals_once(redis_client, namespace, tenant, total: str, actor: str, count: int) -> dict:
    """The tenant's worker-metrics ``total`` per actor, once ``actor``'s reached ``count``."""
    from shared import worker_metrics as wm

    def totals():
        actors = wm.snapshot(redis_client, namespace, minutes=5, tenant_id=tenant)["actors"]
        return {name: data["totals"][total] for name, data in actors.items()}

    return wait_until(lambda: (found := totals()).get(actor) == count and found)


def test_events_of_one_transaction_are_dispatched_together(
    broker, worker, tenant, redis_client, namespace
):

    publisher.install()
    count = publisher.MAX_EVENTS_PER_MESSAGE * 2 + 5
    with session_scope() as session:
        event_ids = [_emit(session, tenant) for _ in range(count)]

    rows = wait_until(lambda: _processed(event_ids))
    assert len(rows) == count and all(row.dispatch_attempts == 1 for row in rows)
    # One message, so one transaction, per 100 events: each batch shares its start time.
    assert len({row.dispatched_at for row in rows}) == 3

    assert _totals_once(redis_client, namespace, tenant, "enqueued", "dispatch_events", 3) == {
        "dispatch_events": 3
    }


def test_events_committed_one_by_one_while_a_dispatch_waits_ride_with_it(
    broker, worker, tenant, redis_client, namespace, monkeypatch
):

    publisher.install()
    held = []  # the first transaction's message, kept from the queue a moment
    monkeypatch.setattr(
        dispatch_event,
        "send_with_options",
        lambda **options: held.append(dispatch_event.message_with_options(**options)),
    )
    event_ids = []
    for _ in range(4):  # a transaction each
        with session_scope() as session:
            event_ids.append(_emit(session, tenant))
    monkeypatch.undo()
    assert len(held) == 1  # the later three joined it
    broker.enqueue(held[0])

    rows = wait_until(lambda: _processed(event_ids))
    assert len(rows) == 4 and all(row.dispatch_attempts == 1 for row in rows)
    # One message, one transaction for the four.
    assert len({row.dispatched_at for row in rows}) == 1

    assert _totals_once(redis_client, namespace, tenant, "processed", "dispatch_event", 1) == {
        "dispatch_event": 1
    }


def test_a_failing_event_is_split_from_its_batch(broker, worker, tenant):
    bad: set[uuid.UUID] = set()

    def fails_for_one(session, event):
        if event.id in bad:
            raise RuntimeError("target exploded")

    dispatch.register_target("tests.fails_for_one", fails_for_one)
    try:
        publisher.install()
        with session_scope() as session:
            good_before, failing, good_after = (_emit(session, tenant) for _ in range(3))
            bad.add(failing)
        rows = wait_until(lambda: _processed([good_before, good_after]))
        assert len(rows) == 2
        # The failing one is retried on its own, its error kept on the row.
        event = wait_until(lambda: (e := _event(failing)).last_error and e)
        assert event.status == "pending" and event.dispatch_attempts >= 1
        assert event.last_error == "RuntimeError: target exploded"
        bad.clear()
        assert wait_until(lambda: _processed([failing]))
    finally:
        dispatch.unregister_target("tests.fails_for_one")


def test_dispatch_many_reports_each_event(tenant):
    done, pending = _insert_event(tenant), _insert_event(tenant)
    with session_scope() as session:
        dispatch.dispatch(session, done)
    unknown = uuid.uuid4()
    with session_scope() as session:
        outcomes = dispatch.dispatch_many(session, [done, pending, unknown, pending])
    assert outcomes == {
        done: dispatch.Outcome.ALREADY_DONE,
        pending: dispatch.Outcome.PROCESSED,
        unknown: dispatch.Outcome.UNKNOWN,
    }
    assert _event(pending).dispatch_attempts == 1
