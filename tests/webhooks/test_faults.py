"""Faults with real processes: a worker SIGKILLed mid-delivery, Redis restarted with jobs in flight.

Each test runs its own ``dramatiq workers.main`` subprocess on a Redis namespace of
its own (the suite's in-process ``worker`` fixture, if an earlier test started it,
never sees these messages), and sends to it through a broker built for that
namespace: the outbox publisher and the webhook enqueuer of this process are
pointed at that broker for the test. Time is moved by UPDATE, never slept; the
sweeper is the scheduler's job function, called directly.

What issue 4 asks: nothing is lost (every delivery ends succeeded) and a receiver
deduplicating by ``webhook-id`` sees each event once (distinct ids == deliveries).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest
from sqlalchemy import func, select, update

from shared import events
from shared.config import get_settings
from shared.db import session_scope
from shared.events import Actor, emit
from shared.models import WebhookAttempt, WebhookDelivery
from shared.webhooks import queue, sweeper
from tests.waiting import wait_until
from tests.webhooks.conftest import deliveries
from tests.webhooks.faults_support import (
    delete_namespace,
    enqueuers,
    free_port,
    namespace_of_test,
    private_broker,
    running_receiver,
    start_redis,
    start_worker,
)
from tests.webhooks.test_api import create

#: Not emitted by registering a workspace or creating an endpoint: only our events match.
EVENT = "campaign.completed"


@pytest.fixture
def routed(monkeypatch, broker):
    """Point this process's outbox publisher and webhook enqueuer at a private broker."""

    def route(namespace: str, redis_url: str | None = None):
        private = private_broker(namespace, redis_url)
        enqueue, publish = enqueuers(private)
        monkeypatch.setattr(queue.QUEUE, "enqueuer", enqueue)
        monkeypatch.setattr(events, "_publisher", publish)
        return private

    return route


def emit_events(tenant_id: str, count: int) -> list[uuid.UUID]:
    with session_scope() as session:
        return [
            emit(session, EVENT, {"n": n}, tenant_id=uuid.UUID(tenant_id), actor=Actor.system())
            for n in range(count)
        ]


def sweep() -> int:
    with session_scope() as session:
        return sweeper.sweep(session)


def attempts_of(delivery_id: uuid.UUID) -> list[tuple[int, str | None, int | None]]:
    with session_scope() as session:
        a = WebhookAttempt
        rows = session.execute(
            select(a.attempt, a.error_kind, a.response_status)
            .where(a.delivery_id == delivery_id)
            .order_by(WebhookAttempt.attempt)
        ).all()
    return [tuple(r) for r in rows]


def test_a_worker_sigkilled_mid_delivery_is_swept_and_the_event_delivered_once(workspace, routed):
    namespace = namespace_of_test()
    private = routed(namespace)
    procs = []
    try:
        with running_receiver(hang_first=True) as receiver:
            hook = create(workspace, receiver.url, event_types=[EVENT])
            first = start_worker(namespace=namespace)
            procs.append(first)
            [event_id] = emit_events(workspace.tenant["id"], 1)
            # The receiver holds the first request: the delivery is claimed by `first`.
            wait_until(
                receiver.received, "the first attempt reaches the receiver", 20, details=first.log
            )
            [claimed] = deliveries(hook["id"])
            assert claimed.status == "in_flight" and claimed.attempt_count == 1
            assert claimed.locked_until > dt.datetime.now(dt.UTC)

            first.kill()  # SIGKILL, parent and forked worker process alike
            receiver.release.set()
            # The claim is not expired yet: a sweep leaves it alone.
            sweep()
            assert deliveries(hook["id"])[0].status == "in_flight"

            # Time moves past the claim; the sweeper takes it back and re-drives it.
            with session_scope() as session:
                session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == claimed.id)
                    .values(locked_until=func.now() - dt.timedelta(seconds=1))
                )
            sweep()
            [reclaimed] = deliveries(hook["id"])
            # The lost attempt counts: the row waits the schedule's next delay (5 s).
            assert reclaimed.status == "pending" and reclaimed.attempt_count == 1
            assert reclaimed.last_error_kind == "worker_lost" and reclaimed.locked_until is None
            assert attempts_of(claimed.id)[0] == (1, "worker_lost", None)
            with session_scope() as session:
                wait = session.scalar(
                    select(WebhookDelivery.next_attempt_at - func.now()).where(
                        WebhookDelivery.id == claimed.id
                    )
                )
                assert dt.timedelta(seconds=3) < wait <= dt.timedelta(seconds=6)
                session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == claimed.id)
                    .values(next_attempt_at=func.now(), sweep_at=func.now())
                )
            sweep()

            second = start_worker(namespace=namespace)
            procs.append(second)
            wait_until(
                lambda: deliveries(hook["id"])[0].status == "succeeded",
                "the re-driven delivery succeeds",
                20,
                details=second.log,
            )
            [done] = deliveries(hook["id"])
            assert done.attempt_count == 2 and done.finished_at is not None
            assert attempts_of(done.id) == [(1, "worker_lost", None), (2, None, 200)]
            # At-least-once: sent twice, the same webhook-id both times; deduplicated: once.
            assert receiver.received() == [str(event_id)] * 2
            assert receiver.distinct() == {str(event_id)}
            assert len(receiver.distinct()) == len(deliveries(hook["id"]))
    finally:
        for proc in procs:
            proc.close()
        private.close()
        delete_namespace(namespace, get_settings().redis_url)


def test_redis_restarted_with_deliveries_in_flight_loses_nothing(workspace, routed):
    count = 20
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    namespace = namespace_of_test()
    server = start_redis(port)
    private = routed(namespace, url)
    procs = [server]
    try:
        with running_receiver(delay=0.25) as receiver:
            hook = create(workspace, receiver.url, event_types=[EVENT])
            worker = start_worker(namespace=namespace, redis_url=url)
            procs.append(worker)
            event_ids = emit_events(workspace.tenant["id"], count)
            wait_until(
                lambda: len(deliveries(hook["id"])) == count and len(receiver.received()) >= 3,
                "every delivery created and the first ones sent",
                20,
                details=worker.log,
            )

            server.kill()  # SIGKILL: the queued messages and the acks are gone
            time.sleep(0.5)  # the worker runs against a dead Redis for a moment
            outstanding = [d for d in deliveries(hook["id"]) if d.status != "succeeded"]
            assert outstanding, "the fault hit after everything was delivered"
            server.close()
            procs.remove(server)
            server = start_redis(port)  # the same port, empty
            procs.append(server)

            def all_succeeded() -> bool:
                # Time moves: claims held for over 2 s (a 0.25 s receiver) are taken back,
                # waiting deliveries are due; then the scheduler's sweep job runs.
                with session_scope() as session:
                    session.execute(
                        update(WebhookDelivery)
                        .where(
                            WebhookDelivery.endpoint_id == uuid.UUID(hook["id"]),
                            WebhookDelivery.status == "in_flight",
                            WebhookDelivery.last_attempt_at < func.now() - dt.timedelta(seconds=2),
                        )
                        .values(locked_until=func.now() - dt.timedelta(seconds=1))
                    )
                    session.execute(
                        update(WebhookDelivery)
                        .where(
                            WebhookDelivery.endpoint_id == uuid.UUID(hook["id"]),
                            WebhookDelivery.status == "pending",
                        )
                        .values(
                            next_attempt_at=WebhookDelivery.created_at,
                            sweep_at=WebhookDelivery.created_at,
                        )
                    )
                sweep()
                rows = deliveries(hook["id"])
                if all(d.status == "succeeded" for d in rows):
                    return True
                time.sleep(0.3)
                return False

            wait_until(
                all_succeeded, "every delivery succeeded after the restart", 25, details=worker.log
            )
            rows = deliveries(hook["id"])
            assert len(rows) == count and {d.event_id for d in rows} == set(event_ids)
            assert all(d.status == "succeeded" for d in rows)
            # Each event reached the receiver at least once; deduplicated, exactly once each.
            assert receiver.distinct() == {str(e) for e in event_ids}
            assert len(receiver.distinct()) == len(rows)
            assert len(receiver.received()) >= count
    finally:
        for proc in procs:
            proc.close()
        private.close()
