"""A bulk ``set_priority`` tells the streams as a division's deletion does: up to
``ANNOUNCED_ONE_BY_ONE`` conversations, each one's ``conversation.priority_changed``; more,
one ``conversations.priority_changed`` per committed chunk of the job, so thousands of changes
cannot trim the tenant's backlog or overflow a slow manager's stream, and what a job changed
reaches the streams as it commits, even if the job fails later."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select, text

from shared.db import get_sessionmaker, session_scope
from shared.inbox import bulk
from shared.inbox.divisions import ANNOUNCED_ONE_BY_ONE
from shared.models import Conversation
from shared.realtime import feed
from shared.redis_client import get_redis
from tests.inbox_conversations.conftest import (
    finished_job,
    many_conversations,
    queued_job,
    row,
)
from tests.lock_races import blocked_on_a_lock, race
from tests.realtime.conftest import of_type, ready_event
from tests.waiting import wait_until
from workers.actors.inbox import bulk_conversation_action

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


def _holding_the_last_chunk(ids: list[str]):
    """A transaction holding the last conversation of ``ids`` FOR UPDATE (its own chunk)."""
    holder = get_sessionmaker()()
    holder.scalar(
        select(Conversation.id).where(Conversation.id == uuid.UUID(ids[-1])).with_for_update()
    )
    return holder


def test_a_bulk_priority_change_above_the_cap_is_one_stream_event_per_chunk(
    stream_url, ws, streams
):
    _, agent_token = ws.create_agent("agent")
    ids = many_conversations(ws, ANNOUNCED_ONE_BY_ONE + 1)
    agent = streams(stream_url, agent_token)
    ready_event(agent)

    job_id = _bulk_priority(ws, ids, "urgent")

    def both_chunks() -> list[dict] | None:
        found = _stream_bodies(ws, MANY)
        return found if len(found) >= 2 else None

    bodies = wait_until(both_chunks, "an entry per chunk of the job", timeout=10.0)
    assert [body["data"] for body in bodies] == [
        {"priority": "urgent", "job_id": job_id},
        {"priority": "urgent", "job_id": job_id},
    ]
    assert {body["actor"]["id"] for body in bodies} == {ws.admin["id"]}
    assert _stream_bodies(ws, ONE) == []
    # Every agent is told to reload, whatever they see.
    event = agent.until(of_type(MANY))
    assert event.id and event.json["data"]["job_id"] == job_id


def test_a_running_job_tells_the_streams_of_each_chunk_as_it_commits(ws):
    """A job of 100k conversations runs for minutes: its first chunks reach the streams
    while the later ones are still to come."""
    ids = many_conversations(ws, ANNOUNCED_ONE_BY_ONE + 1)
    job_id = queued_job(ws, ids, "set_priority", priority="high")
    seen_mid_job: list[list[dict]] = []

    status = race(
        _holding_the_last_chunk(ids),
        lambda: bulk.process_job(job_id),
        then=lambda: seen_mid_job.append(_stream_bodies(ws, MANY)),
    )

    assert status == "succeeded"
    [[first]] = seen_mid_job
    assert first["data"] == {"priority": "high", "job_id": str(job_id)}
    assert len(_stream_bodies(ws, MANY)) == 2  # and the last chunk's, once it committed


def test_a_job_that_fails_after_a_chunk_committed_told_the_streams_of_that_chunk(ws):
    """The job's second chunk waits on a row lock until its statement is canceled (as a
    statement timeout cancels it) and, with no retries left, the job fails: the first
    chunk's changes stay committed, and the streams were told of them."""
    ids = many_conversations(ws, ANNOUNCED_ONE_BY_ONE + 1)
    job_id = queued_job(ws, ids, "set_priority", priority="urgent")
    holder = _holding_the_last_chunk(ids)
    try:
        holder_pid = holder.scalar(text("SELECT pg_backend_pid()"))
        bulk_conversation_action.send_with_options(args=(str(job_id),), max_retries=0)
        wait_until(lambda: blocked_on_a_lock() >= 1, "the second chunk waiting on the lock")
        with session_scope() as session:
            canceled = session.scalar(
                text(
                    "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND :holder = ANY(pg_blocking_pids(pid))"
                ),
                {"holder": holder_pid},
            )
        assert canceled == 1
        job = finished_job(ws, job_id)
    finally:
        holder.rollback()
        holder.close()

    assert job["status"] == "failed" and "gave up after" in job["error"], job
    assert job["result"]["counts"]["updated"] == bulk.CHUNK
    assert row(ids[0]).priority == "urgent" and row(ids[-1]).priority != "urgent"
    [body] = wait_until(lambda: _stream_bodies(ws, MANY), "the first chunk's entry", timeout=5.0)
    assert body["data"] == {"priority": "urgent", "job_id": str(job_id)}
    assert _stream_bodies(ws, ONE) == []


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
