"""An operator's requeue of a ``bulk_conversation_action`` dead letter: the job its
retries-exhausted handler failed runs again and changes its remaining conversations."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from shared.db import session_scope
from shared.inbox import bulk
from shared.models import Job
from tests.inbox_conversations.conftest import finished_job, many_conversations, row
from tests.waiting import wait_until
from workers.actors.inbox import bulk_conversation_action

BULK = "/api/conversations/bulk"


@pytest.fixture
def database_down(monkeypatch):
    """The bulk job fails at once, without retries, until ``down.clear()``."""
    down = {"on"}
    lock = bulk._lock

    def failing_lock(*args, **kwargs):
        if down:
            raise RuntimeError("the database is down")
        return lock(*args, **kwargs)

    monkeypatch.setattr(bulk, "_lock", failing_lock)
    monkeypatch.setitem(bulk_conversation_action.options, "max_retries", 0)
    return down


def _dead_letter_of(ws, job_id: str) -> str:
    def found():
        for item in ws.call("GET", "/api/ops/dead-letters").json["items"]:
            full = ws.call("GET", f"/api/ops/dead-letters/{item['id']}").json
            if full["actor"] == "bulk_conversation_action" and full["args"] == [job_id]:
                return item["id"]
        return None

    return wait_until(found, "the job's dead letter")


def _dead_job(ws, database_down) -> tuple[list[str], str, str]:
    """A tagging job over 101 conversations that ran out of retries: (ids, job, letter)."""
    targets = many_conversations(ws, 101)
    resp = ws.call("POST", BULK, json={"ids": targets, "action": "add_tags", "tags": ["late"]})
    assert resp.status_code == 202, resp.text
    job_id = resp.json["job_id"]
    job = finished_job(ws, job_id)
    assert job["status"] == "failed" and "gave up after" in job["error"], job
    letter = _dead_letter_of(ws, job_id)
    database_down.clear()
    return targets, job_id, letter


def test_requeuing_a_dead_bulk_job_runs_it_again(worker, workspace, database_down):
    ws = workspace
    targets, job_id, letter = _dead_job(ws, database_down)
    assert row(targets[0]).tags == []

    resp = ws.call("POST", f"/api/ops/dead-letters/{letter}/requeue")

    assert resp.status_code == 200, resp.text
    job = finished_job(ws, job_id)
    assert job["status"] == "succeeded" and job["error"] is None, job
    assert job["result"]["counts"]["updated"] == 101
    assert all(row(i).tags == ["late"] for i in targets)


def test_a_dead_bulk_job_that_succeeded_meanwhile_is_not_requeued(worker, workspace, database_down):
    ws = workspace
    _, job_id, letter = _dead_job(ws, database_down)
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(status="succeeded"))

    resp = ws.call("POST", f"/api/ops/dead-letters/{letter}/requeue")

    assert resp.status_code == 409, resp.text
    assert resp.json["error"]["code"] == "not_requeueable"
    assert "succeeded" in resp.json["error"]["message"]
    assert ws.call("GET", f"/api/ops/dead-letters/{letter}").json["requeued_at"] is None
