"""A bulk ``set_priority`` tells the streams as a division's deletion does: up to
``ANNOUNCED_ONE_BY_ONE`` conversations, each one's ``conversation.priority_changed``; more,
one ``conversations.priority_changed`` for the job, so thousands of changes cannot trim the
tenant's backlog or overflow a slow manager's stream."""

from __future__ import annotations

import json

from shared.inbox.divisions import ANNOUNCED_ONE_BY_ONE
from shared.realtime import feed
from shared.redis_client import get_redis
from tests.inbox_conversations.conftest import finished_job, many_conversations
from tests.realtime.conftest import of_type, ready_event
from tests.waiting import wait_until

ONE = "conversation.priority_changed"
MANY = "conversations.priority_changed"


def _bulk_priority(ws, ids: list[str], priority: str) -> str:
    """Run the bulk action (a job: more than the inline limit); the job's id, finished."""
    body = {"ids": ids, "action": "set_priority", "priority": priority}
    resp = ws.call("POST", "/api/conversations/bulk", json=body)
    assert resp.status_code == 202, resp.text
    job = finished_job(ws, resp.json["job_id"])
    assert job["status"] == "succeeded" and job["result"]["counts"]["updated"] == len(ids), job
    return resp.json["job_id"]


def _stream_bodies(ws, event_type: str) -> list[dict]:
    """The bodies of the tenant's stream entries of ``event_type``."""
    entries = get_redis().xrange(feed.stream_key(ws.tenant["id"]))
    bodies = [json.loads(fields[feed.ENVELOPE]) for _, fields in entries if feed.ENVELOPE in fields]
    return [body for body in bodies if body["type"] == event_type]


def test_a_bulk_priority_change_above_the_cap_is_one_stream_event(stream_url, ws, streams):
    _, agent_token = ws.create_agent("agent")
    ids = many_conversations(ws, ANNOUNCED_ONE_BY_ONE + 1)
    agent = streams(stream_url, agent_token)
    ready_event(agent)

    job_id = _bulk_priority(ws, ids, "urgent")

    [body] = wait_until(lambda: _stream_bodies(ws, MANY), "the job's stream entry", timeout=10.0)
    assert body["data"] == {"priority": "urgent", "job_id": job_id}
    assert body["actor"]["id"] == ws.admin["id"]
    assert _stream_bodies(ws, ONE) == []
    # Every agent is told to reload, whatever they see.
    event = agent.until(of_type(MANY))
    assert event.id and event.json["data"]["job_id"] == job_id


def test_a_bulk_priority_change_up_to_the_cap_is_one_stream_event_each(ws):
    ids = many_conversations(ws, ANNOUNCED_ONE_BY_ONE)

    _bulk_priority(ws, ids, "low")

    def all_announced() -> list[dict] | None:
        found = _stream_bodies(ws, ONE)
        return found if len(found) >= len(ids) else None

    bodies = wait_until(all_announced, "an entry per conversation", timeout=10.0)
    assert sorted(body["data"]["id"] for body in bodies) == sorted(ids)
    assert {body["data"]["priority"] for body in bodies} == {"low"}
    assert _stream_bodies(ws, MANY) == []
