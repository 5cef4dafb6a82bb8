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
