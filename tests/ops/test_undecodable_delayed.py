"""A delayed message the console cannot read (corrupt, or written by something else).

It must not take the list down (500) nor hide: operators see it as undecodable and can
delete it; the rest of the list keeps working.
"""

from __future__ import annotations

import json
import time
import uuid

import dramatiq
import pytest
from dramatiq.common import dq_name

from shared import queue_stats
from shared.config import get_settings
from tests.ops.conftest import OPERATOR

#: A queue no worker consumes: the entries written here stay until the test removes them.
QUEUE = "test_ops_foreign"


def _broker_keys():
    settings = get_settings()
    client = queue_stats.redis_broker_client(settings)
    prefix = f"{queue_stats.redis_broker_namespace(settings)}:{dq_name(QUEUE)}"
    return client, f"{prefix}.msgs", prefix


def _put(redis_id: str, raw: bytes) -> None:
    client, msgs, ids = _broker_keys()
    client.hset(msgs, redis_id, raw)
    client.rpush(ids, redis_id)


def _listed(client, headers=OPERATOR):
    resp = client.simulate_get("/api/ops/delayed", headers=headers, params={"queue": QUEUE})
    assert resp.status_code == 200, resp.text
    return {item["id"]: item for item in resp.json["items"]}


def test_an_undecodable_delayed_message_is_listed_as_such_and_can_be_deleted(client, workspace):
    garbage, foreign, good = (uuid.uuid4().hex for _ in range(3))
    _put(garbage, b"\xff\x00 not a message")
    # JSON of the right shape with values of the wrong types: decodes, but has no eta or time.
    wrong_types = {
        "queue_name": QUEUE,
        "actor_name": "elsewhere",
        "args": [],
        "kwargs": {},
        "options": {"eta": "tomorrow", "tenant_id": workspace.tenant["id"]},
        "message_id": "m-1",
        "message_timestamp": "yesterday",
    }
    _put(foreign, json.dumps(wrong_types).encode())
    message = dramatiq.Message(
        queue_name=dq_name(QUEUE),
        actor_name="ops_foreign",
        args=("fine",),
        kwargs={},
        options={"eta": int((time.time() + 3600) * 1000), "tenant_id": workspace.tenant["id"]},
    )
    _put(good, message.encode())
    try:
        items = _listed(client)
        assert items[good]["actor"] == "ops_foreign" and items[good]["kind"] == "scheduled"
        for redis_id, raw in ((garbage, b"\xff\x00 not a message"), (foreign, None)):
            item = items[redis_id]
            assert item["queue"] == QUEUE and item["kind"] == "undecodable", item
            assert item["reason"], item
            assert item["raw_size"] == (len(raw) if raw else len(json.dumps(wrong_types)))
        # A tenant admin cannot be shown what cannot be proven theirs; theirs still shows.
        own = _listed(client, headers=workspace.headers)
        assert list(own) == [good]
        # The overview lists its queues' delayed messages the same way, without failing.
        assert client.simulate_get("/api/ops/overview", headers=OPERATOR).status_code == 200

        path = f"/api/ops/delayed/{QUEUE}/{garbage}"
        assert workspace.call("DELETE", path).status_code == 404
        retry = client.simulate_post(f"{path}/retry", headers=OPERATOR)
        assert retry.status_code == 409, retry.text
        assert "decoded" in retry.json["error"]["message"]
        for redis_id in (garbage, foreign):
            path = f"/api/ops/delayed/{QUEUE}/{redis_id}"
            resp = client.simulate_delete(path, headers=OPERATOR)
            assert resp.status_code == 204, resp.text
            assert client.simulate_delete(path, headers=OPERATOR).status_code == 404
        assert list(_listed(client)) == [good]
        broker_client, msgs, ids = _broker_keys()
        assert broker_client.hkeys(msgs) == [good.encode()]
        assert broker_client.lrange(ids, 0, -1) == [good.encode()]
    finally:
        broker_client, msgs, ids = _broker_keys()
        broker_client.delete(msgs, ids)


def test_the_page_shows_an_undecodable_delayed_message_with_delete_only(client):
    """On a platform queue, so the overview (and the page built from it) reads it."""
    settings = get_settings()
    broker_client = queue_stats.redis_broker_client(settings)
    # The hash entry only: no worker fetches it (its id is in no queue list).
    msgs = f"{queue_stats.redis_broker_namespace(settings)}:{dq_name('maintenance')}.msgs"
    redis_id = uuid.uuid4().hex
    broker_client.hset(msgs, redis_id, b"{not json")
    try:
        view = client.simulate_get("/api/ops/overview", headers=OPERATOR)
        assert view.status_code == 200, view.text
        item = next(i for i in view.json["delayed"]["items"] if i["id"] == redis_id)
        assert item["kind"] == "undecodable" and item["raw_size"] == len(b"{not json")
        page = client.simulate_get("/ops", headers=OPERATOR)
        assert page.status_code == 200
        row = next(r for r in page.text.split("<tr>") if redis_id in r)
        assert "undecodable" in row and "delete-delayed" in row and '"retry"' not in row
        pressed = client.simulate_post(
            "/ops/actions",
            headers={**OPERATOR, "Content-Type": "application/x-www-form-urlencoded"},
            body=f"action=delete-delayed&queue=maintenance&id={redis_id}",
        )
        assert pressed.status_code == 303, pressed.text
        assert "None" not in pressed.headers["location"]
        assert "undecodable" in pressed.headers["location"]
        assert broker_client.hget(msgs, redis_id) is None
    finally:
        broker_client.hdel(msgs, redis_id)


@pytest.mark.parametrize("stamp", ["yesterday", "nan"])
def test_a_foreign_message_at_a_queues_head_leaves_its_latency_unknown(
    client, private_redis, settings_env, stamp
):
    """The latency is read from the head message's ``message_timestamp``; one written by
    something else (not a number) must not take the whole overview down."""
    settings_env(REDIS_URL=private_redis.url)  # a broker no worker consumes
    settings = get_settings()
    broker_client = queue_stats.redis_broker_client(settings)
    prefix = f"{queue_stats.redis_broker_namespace(settings)}:maintenance"
    broker_client.rpush(prefix, "foreign")
    broker_client.hset(f"{prefix}.msgs", "foreign", json.dumps({"message_timestamp": stamp}))
    view = client.simulate_get("/api/ops/overview", headers=OPERATOR)
    assert view.status_code == 200, view.text
    row = next(q for q in view.json["queues"] if q["queue"] == "maintenance")
    assert row["ready"] == 1 and row["latency_seconds"] is None
    assert client.simulate_get("/ops", headers=OPERATOR).status_code == 200
