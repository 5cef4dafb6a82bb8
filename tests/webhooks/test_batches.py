"""The batched engine: mixed outcomes in one batch, the per-endpoint limit, duplicate hand-overs.

Events committed together are fanned out by the worker and delivered by its
in-process pipeline (claimed, sent and recorded in batches); these tests check
that batching changes none of the guarantees, through the same public surfaces
as test_delivery: the outbox, a real worker, a real receiver.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest

from shared.db import session_scope
from shared.events import Actor, emit
from shared.webhooks import engine, pipeline, signing
from tests.waiting import wait_until
from tests.webhooks.conftest import deliveries, settled
from tests.webhooks.test_api import BASE, create

#: Not emitted by registering a workspace or creating an endpoint: only our events match.
EVENT = "campaign.completed"


def emit_events(tenant_id: str, count: int) -> list[uuid.UUID]:
    """Commit ``count`` events in one transaction (the worker fans each out)."""
    with session_scope() as session:
        return [
            emit(session, EVENT, {"n": n}, tenant_id=uuid.UUID(tenant_id), actor=Actor.system())
            for n in range(count)
        ]


def test_one_receiver_failing_in_a_batch_leaves_the_others_succeeded(ws, receiver, path):
    hooks = {
        name: create(ws, receiver.url(f"{path}-{name}"), event_types=[EVENT])
        for name in ("a", "b", "down")
    }
    receiver.plan(f"{path}-down", 500)
    [event_id] = emit_events(ws.tenant["id"], 1)
    for name in ("a", "b"):
        [d] = settled(hooks[name]["id"])
        assert d.status == "succeeded" and d.attempt_count == 1, name
        [got] = receiver.at(f"{path}-{name}")
        assert got.headers["webhook-id"] == str(event_id)
        assert signing.verify(hooks[name]["secret"], got.headers, got.body)
    [failed] = settled(hooks["down"]["id"])
    assert failed.status == "pending" and failed.last_error_kind == "status"
    assert 3.9 <= (failed.next_attempt_at - failed.last_attempt_at).total_seconds() <= 6.1
    for name, status in (("a", 200), ("b", 200), ("down", 500)):
        listed = ws.call("GET", f"{BASE}/{hooks[name]['id']}/deliveries").json["items"]
        # NOTE: "down" is retried 5 s after its first attempt; a slow machine may get there.
        attempts = listed[0]["attempts"]
        assert len(attempts) == (1 if status == 200 else len(attempts)) >= 1, name
        assert {attempt["response_status"] for attempt in attempts} == {status}, name


def test_a_burst_keeps_each_endpoint_within_its_limit_and_the_others_unslowed(ws, receiver, path):
    slow = create(ws, receiver.url(f"{path}-slow"), event_types=[EVENT], max_concurrency=2)
    fast = create(ws, receiver.url(f"{path}-fast"), event_types=[EVENT], max_concurrency=4)
    receiver.plan(f"{path}-slow", ("sleep", 0.4))
    ids = emit_events(ws.tenant["id"], 8)
    fast_done = settled(fast["id"], 8, statuses=("succeeded",))
    slow_rows = deliveries(slow["id"])
    # The fast endpoint finished while the slow one (2 at a time x 0.4 s) was still at it.
    assert sum(d.status == "succeeded" for d in slow_rows) < 8
    settled(slow["id"], 8, statuses=("succeeded",))
    assert receiver.peak[f"{path}-slow"] <= 2
    assert receiver.peak[f"{path}-fast"] <= 4
    for hook_path in (f"{path}-slow", f"{path}-fast"):
        arrived = [r.headers["webhook-id"] for r in receiver.at(hook_path)]
        assert sorted(arrived) == sorted(str(i) for i in ids), hook_path  # each once
    assert all(d.attempt_count == 1 for d in fast_done)


def test_a_delivery_handed_over_twice_is_sent_once(ws, receiver, path):
    hook = create(ws, receiver.url(path), event_types=[EVENT])
    emit_events(ws.tenant["id"], 1)
    [done] = settled(hook["id"])
    assert done.status == "succeeded"
    # A late duplicate (a message re-delivered, a sweep racing the hand-over).
    outcomes = engine.deliver_batch([done.id, done.id], limiter=None, default_timeout=5.0)
    assert {o.kind for o in outcomes.values()} == {"noop"}
    wait_until(lambda: len(receiver.at(path)) == 1, "still one arrival")
    [again] = deliveries(hook["id"])
    assert again.status == "succeeded" and again.attempt_count == 1


@pytest.mark.broker
def test_a_burst_larger_than_the_pipeline_flows_through(ws, receiver, path):
    """More deliveries at once than a worker's pipeline holds (``MAX_OUTSTANDING``).

    One transaction's events reach the worker as a few ``dispatch_events`` messages of
    hundreds of deliveries each: threads waiting for room must not deadlock on the part
    of it they hold.
    """
    per_endpoint = 300
    hooks = [
        create(ws, receiver.url(f"{path}-{n}"), event_types=[EVENT], max_concurrency=16)
        for n in range(4)
    ]
    assert per_endpoint * len(hooks) > pipeline.MAX_OUTSTANDING
    ids = emit_events(ws.tenant["id"], per_endpoint)
    for n, hook in enumerate(hooks):
        rows = _all_succeeded(hook["id"], per_endpoint, f"endpoint {n}", timeout=60)
        assert all(d.attempt_count == 1 for d in rows)
        arrived = sorted(r.headers["webhook-id"] for r in receiver.at(f"{path}-{n}"))
        assert arrived == sorted(str(i) for i in ids)  # each once


def _all_succeeded(endpoint_id: str, count: int, what: str, timeout: float) -> list:
    """The endpoint's deliveries once ``count`` succeeded; else fail saying where they are."""

    def states() -> str:
        rows = deliveries(endpoint_id)
        return str(dict(Counter((d.status, d.attempt_count, d.last_error_kind) for d in rows)))

    def all_succeeded() -> list | None:
        rows = deliveries(endpoint_id)
        return rows if sum(d.status == "succeeded" for d in rows) == count else None

    return wait_until(
        all_succeeded, f"{what}: all {count} delivered", timeout, interval=0.05, details=states
    )


def test_submitting_more_than_the_room_hands_over_before_waiting():
    """A caller never waits for room while holding room it has not handed over."""
    small = pipeline.Pipeline(limiter=None, default_timeout=5.0, room=10)
    # Unknown ids are not due: each is let go as soon as it is looked at.
    callers = [
        threading.Thread(target=small.submit, args=([uuid.uuid4() for _ in range(25)],))
        for _ in range(3)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=10)
    assert not any(caller.is_alive() for caller in callers), "submit deadlocked"
    wait_until(lambda: small.outstanding() == 0, "pipeline drained")


def _pending_delivery(tenant_id: str, endpoint_id: str) -> uuid.UUID:
    """A due delivery row no message points at (nothing but this test will claim it)."""
    from shared.models import WebhookDelivery

    with session_scope() as session:
        row = WebhookDelivery(
            id=uuid.uuid4(),
            tenant_id=uuid.UUID(tenant_id),
            endpoint_id=uuid.UUID(endpoint_id),
            event_id=uuid.uuid4(),
            event_type=EVENT,
            payload={"type": EVENT, "data": {}},
        )
        session.add(row)
        session.flush()
        return row.id


def test_a_parked_delivery_is_counted_only_once_pending_so_a_release_pulls_it(ws, receiver, path):
    """An endpoint at its limit parks the delivery; the count a release reads must come
    after the row is pending again, or a release in between uses it up and pulls nothing
    (the delivery then waited for the sweeper)."""
    from shared.webhooks.delivery import pull_parked
    from shared.webhooks.limiter import Limiter

    hook = create(ws, receiver.url(path), event_types=[EVENT], max_concurrency=1)
    endpoint = uuid.UUID(hook["id"])
    first, second, third = (_pending_delivery(ws.tenant["id"], hook["id"]) for _ in range(3))
    limiter = Limiter()
    held = engine.begin([first], limiter=limiter, default_timeout=5.0).attempts
    assert [a.claimed.id for a in held] == [first]
    # A refused lease alone promises nothing to a release: no row is pending for it.
    assert limiter.acquire_many([(endpoint, 1, 30.0)]) == [None]
    assert engine.release(held, limiter) == [False]
    held = engine.begin([second], limiter=limiter, default_timeout=5.0).attempts
    started = engine.begin([third], limiter=limiter, default_timeout=5.0)
    assert started.attempts == [] and started.outcomes[third].kind == "parked"
    [parked] = [d for d in deliveries(hook["id"]) if d.id == third]
    assert parked.status == "pending" and parked.attempt_count == 0
    assert engine.release(held, limiter) == [True]
    with session_scope() as session:
        assert pull_parked(session, endpoint) == [third]


def test_a_slot_freed_before_the_park_is_counted_is_taken_by_the_parker(ws, receiver, path):
    """The other window: every lease released after the row went pending and before it was
    counted. The releaser saw nothing parked, so the parker must see the free slot and pull
    the delivery itself, or it waits for the sweeper (four worker processes on one endpoint
    were slower than one that way)."""
    from shared.webhooks.limiter import Limiter

    hook = create(ws, receiver.url(path), event_types=[EVENT], max_concurrency=1)
    endpoint = uuid.UUID(hook["id"])
    limiter = Limiter()
    [token] = limiter.acquire_many([(endpoint, 1, 30.0)])
    waiting = _pending_delivery(ws.tenant["id"], hook["id"])  # refused a lease, pending again
    assert limiter.release_many([(endpoint, token)]) == [False]  # nothing counted yet
    assert limiter.park({endpoint: 1}, {endpoint: 1}) == {endpoint: 1}
    engine.pull_parked({endpoint: 1})
    wait_until(
        lambda: [d.status for d in deliveries(hook["id"]) if d.id == waiting] == ["succeeded"],
        "the parked delivery sent without the sweeper",
    )
    # With the endpoint full, parking counts and takes nothing back.
    [token] = limiter.acquire_many([(endpoint, 1, 30.0)])
    assert limiter.park({endpoint: 2}, {endpoint: 1}) == {}
    assert limiter.release_many([(endpoint, token)]) == [True]


def test_a_delivery_refused_a_slot_goes_when_another_process_frees_one(ws, receiver, path):
    """Worker processes share an endpoint's slots. A delivery refused one waits in its
    worker and goes as soon as a slot frees in any process: left parked in Postgres, it
    waited for a release to pull *the oldest* pending row of the endpoint (maybe one
    another process was about to send) or for the sweeper (8 per endpoint every 5 s),
    and 4 worker processes were 5x slower than 1 (``bench/scale_out.py``)."""
    from shared.webhooks import sender
    from shared.webhooks.limiter import Limiter

    hook = create(ws, receiver.url(path), event_types=[EVENT], max_concurrency=1)
    endpoint = uuid.UUID(hook["id"])
    # Another process: an older delivery it has waiting, and an attempt holding the slot.
    elsewhere = _pending_delivery(ws.tenant["id"], hook["id"])
    limiter = Limiter()
    held = engine.begin(
        [_pending_delivery(ws.tenant["id"], hook["id"])], limiter=limiter, default_timeout=5.0
    ).attempts
    assert len(held) == 1
    [event_id] = emit_events(ws.tenant["id"], 1)
    wait_until(lambda: limiter.waited_for(endpoint), "the worker refused a slot")
    # The other process's attempt ends as every attempt does: sent, released, recorded.
    results = sender.send_all([a.claimed for a in held])
    engine.finish(list(zip(held, results, strict=True)), limiter=limiter)
    # Wait for the attempt to be recorded, not just received: the worker releases its slot
    # after the receiver answers, and the other process's send below needs that slot.
    wait_until(
        lambda: any(
            d.event_id == event_id and d.status == "succeeded" for d in deliveries(hook["id"])
        ),
        "the waiting delivery sent and recorded (no sweeper runs here)",
    )
    [untouched] = [d for d in deliveries(hook["id"]) if d.id == elsewhere]
    assert untouched.status == "pending" and untouched.attempt_count == 0
    # The other process sends its own in turn (nothing left pending for later sweeps).
    outcome = engine.deliver_batch([elsewhere], limiter=limiter, default_timeout=5.0)
    assert outcome[elsewhere].kind == "succeeded"
