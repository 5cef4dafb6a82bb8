"""feed.publish: one script call does what a pipeline of XADDs did, a lost publish's reset first."""

from __future__ import annotations

import uuid

from redis.exceptions import RedisError

from shared.realtime import feed
from shared.redis_client import get_redis


def _entries(tenant_id) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in get_redis().xrange(feed.stream_key(tenant_id))]


def test_entries_land_in_order_in_their_tenants_streams_bounded_and_expiring():
    a, b = uuid.uuid4(), uuid.uuid4()
    feed.publish(
        [
            feed.Entry(a, {"kind": "event", "env": "1", "scope": "{}"}),
            feed.Entry(b, {"kind": "event", "env": "2", "scope": "{}"}),
            feed.Entry(a, {"kind": "event", "env": "3", "scope": "{}"}),
        ]
    )
    assert [e[b"env"] for e in _entries(a)] == [b"1", b"3"]
    assert [e[b"env"] for e in _entries(b)] == [b"2"]
    assert 0 < get_redis().ttl(feed.stream_key(a)) <= feed.IDLE_EXPIRY_SECONDS


def test_a_tenant_owed_a_reset_gets_it_before_its_next_entries(monkeypatch):
    tenant = uuid.uuid4()

    def refuse():
        raise RedisError("down")

    with monkeypatch.context() as patched:
        patched.setattr(feed, "_publish_script", refuse)
        feed.publish([feed.Entry(tenant, {"kind": "event", "env": "lost", "scope": "{}"})])
    assert tenant in feed._lost

    feed.publish([feed.Entry(tenant, {"kind": "event", "env": "next", "scope": "{}"})])
    assert _entries(tenant) == [
        {b"kind": b"reset"},
        {b"kind": b"event", b"env": b"next", b"scope": b"{}"},
    ]
    assert tenant not in feed._lost


def test_an_event_naming_a_malformed_conversation_id_is_dispatched_to_managers(database):
    """Its audience is read with the dispatch's lock: an id that is no UUID names no
    conversation (managers see the entry) instead of failing every target's work."""
    import json

    import workers.actors.realtime  # noqa: F401  (registers the realtime target)
    from shared import dispatch
    from shared.db import session_scope
    from shared.models import Tenant
    from tests.outbox_rows import unswept_event

    with session_scope() as session:
        tenant = Tenant(name="Feed scope", slug=f"feed-scope-{uuid.uuid4().hex[:12]}")
        session.add(tenant)
        session.flush()
        tenant_id = tenant.id
    # NOTE: this test dispatches it, not a worker the session may run.
    event_id = unswept_event(
        tenant_id, "message.created", {"id": str(uuid.uuid4()), "conversation_id": "not-a-uuid"}
    )
    with session_scope() as session:
        outcomes = dispatch.dispatch_many(session, [event_id])
    assert outcomes == {event_id: dispatch.Outcome.PROCESSED}
    [entry] = _entries(tenant_id)
    assert json.loads(entry[b"env"])["id"] == str(event_id)
    assert json.loads(entry[b"scope"]) == {
        "c": "not-a-uuid",
        "a": None,
        "d": None,
        "pa": None,
        "pd": None,
    }


def test_a_loss_while_another_publish_pays_the_tenants_reset_is_still_owed(monkeypatch):
    """A publish that fails while another (already owing the tenant a reset) succeeds:
    the success pays the reset it wrote, not the newer loss."""
    import threading

    tenant = uuid.uuid4()
    real = feed._publish_script

    def refuse():
        raise RedisError("down")

    monkeypatch.setattr(feed, "_publish_script", refuse)
    feed.publish([feed.Entry(tenant, {"kind": "event", "env": "lost", "scope": "{}"})])
    written, go_on = threading.Event(), threading.Event()

    def written_then_slow():
        script = real()

        def call(**kwargs):
            script(**kwargs)
            written.set()
            go_on.wait(10)

        return call

    monkeypatch.setattr(feed, "_publish_script", written_then_slow)
    paying = threading.Thread(
        target=feed.publish,
        args=([feed.Entry(tenant, {"kind": "event", "env": "pays", "scope": "{}"})],),
    )
    paying.start()
    assert written.wait(10)
    # Its reset is in the stream; now another thread's publish for the tenant fails.
    monkeypatch.setattr(feed, "_publish_script", refuse)
    feed.publish([feed.Entry(tenant, {"kind": "event", "env": "lost again", "scope": "{}"})])
    go_on.set()
    paying.join(10)

    monkeypatch.setattr(feed, "_publish_script", real)
    feed.publish([feed.Entry(tenant, {"kind": "event", "env": "next", "scope": "{}"})])
    assert [e.get(b"env", e[b"kind"]) for e in _entries(tenant)] == [
        b"reset",
        b"pays",
        b"reset",
        b"next",
    ]
