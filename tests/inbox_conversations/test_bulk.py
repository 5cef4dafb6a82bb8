"""Bulk actions: inline all-or-nothing, queued jobs run by the real worker, and their limits."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update

from shared.db import session_scope
from shared.inbox import bulk
from shared.models import Conversation, Job
from tests.admin.conftest import root  # noqa: F401  (a super admin, logged in)
from tests.inbox_conversations.conftest import (
    add_conversation,
    add_division,
    ago,
    events,
    finished_job,
    many_conversations,
    queued_job,
    row,
    tid,
)
from tests.waiting import wait_until
from workers.actors.inbox import bulk_conversation_action

BULK = "/api/conversations/bulk"


def test_inline_actions_apply_and_report_per_id(workspace):
    ws = workspace
    agent, _ = ws.create_agent()
    division = add_division(ws, "Billing")
    first, second, resolved = (
        add_conversation(ws),
        add_conversation(ws, tags=["keep"]),
        add_conversation(ws, status="resolved", resolved_at=ago(hours=1)),
    )
    cases = [
        ({"action": "assign", "assignee_id": agent["id"]}, "conversation.assigned"),
        ({"action": "add_tags", "tags": ["Bulk", "keep"]}, "conversation.tags_updated"),
        ({"action": "remove_tags", "tags": ["keep"]}, "conversation.tags_updated"),
        ({"action": "set_priority", "priority": "urgent"}, None),
        ({"action": "set_division", "division_id": division}, None),
        ({"action": "unassign"}, "conversation.unassigned"),
    ]
    for body, event_type in cases:
        before = len(events(ws, event_type)) if event_type else 0
        resp = ws.call("POST", BULK, json={"ids": [first, second, first]} | body)
        assert resp.status_code == 200, (body, resp.text)
        assert [r["id"] for r in resp.json["results"]] == [first, second]
        if event_type:
            changed = resp.json["counts"]["updated"]
            assert len(events(ws, event_type)) == before + changed, body
    assert row(first).tags == ["bulk"] and row(second).tags == ["bulk"]
    assert row(first).priority == "urgent" and str(row(second).division_id) == division
    assert row(first).assignee_id is None
    add = ws.call(
        "POST", BULK, json={"ids": [first, second], "action": "add_tags", "tags": ["bulk"]}
    )
    assert add.json["counts"] == {"updated": 0, "unchanged": 2, "not_found": 0, "conflict": 0}

    reopened = ws.call(
        "POST", BULK, json={"ids": [resolved], "action": "set_status", "status": "open"}
    )
    assert reopened.json["results"] == [{"id": resolved, "result": "updated", "message": None}]
    [changed] = events(ws, "conversation.status_changed")
    assert changed.data["previous_status"] == "resolved"


def test_inline_is_all_or_nothing(workspace, other_workspace):
    ws = workspace
    mine = [add_conversation(ws) for _ in range(3)]
    foreign = add_conversation(other_workspace)
    body = {"ids": [*mine, foreign], "action": "set_status", "status": "resolved"}
    resp = ws.call("POST", BULK, json=body)
    assert resp.status_code == 422, resp.text
    details = {d["id"]: d["result"] for d in resp.json["error"]["details"]}
    assert details == {
        mine[0]: "skipped",
        mine[1]: "skipped",
        mine[2]: "skipped",
        foreign: "not_found",
    }
    assert {row(c).status for c in mine} == {"open"}
    assert row(foreign).status == "open"
    assert events(ws, "conversation.status_changed") == []

    # An illegal transition for one of them: 409, and again nothing changes.
    pending_one = add_conversation(ws, status="resolved", resolved_at=ago(hours=1))
    body = {"ids": [*mine, pending_one], "action": "set_status", "status": "pending"}
    conflict = ws.call("POST", BULK, json=body)
    assert conflict.status_code == 409
    [bad] = [d for d in conflict.json["error"]["details"] if d["result"] == "conflict"]
    assert bad["id"] == pending_one and "resolved" in bad["message"]
    assert {row(c).status for c in mine} == {"open"}
    assert events(ws, "conversation.status_changed") == []


def test_bulk_permission_and_input_errors(workspace):
    ws = workspace
    _, token = ws.create_agent()
    conversation = add_conversation(ws)
    denied = ws.call("POST", BULK, token=token, json={"ids": [conversation], "action": "unassign"})
    assert denied.status_code == 403
    too_many = [str(uuid.uuid4()) for _ in range(5001)]
    for body, field in (
        ({"ids": too_many, "action": "unassign"}, "ids"),
        ({"ids": [], "action": "unassign"}, "ids"),
        ({"ids": [conversation], "action": "explode"}, "action"),
        ({"ids": [conversation], "action": "assign"}, "assignee_id"),
        (
            {"ids": [conversation], "action": "assign", "assignee_id": str(uuid.uuid4())},
            "assignee_id",
        ),
        ({"ids": [conversation], "action": "set_status", "status": "snoozed"}, "snoozed_until"),
        (
            {"ids": [conversation], "action": "set_division", "division_id": str(uuid.uuid4())},
            "division_id",
        ),
        ({"ids": [conversation], "action": "set_priority", "priority": "meh"}, "priority"),
        ({"ids": [conversation], "action": "add_tags", "tags": ["<x>"]}, "tags[0]"),
        ({"ids": [conversation], "action": "add_tags"}, "tags"),
        ({"ids": ["nope"], "action": "unassign"}, "ids[0]"),
        ({"ids": [conversation], "action": "unassign", "priority": "low"}, "priority"),
    ):
        resp = ws.call("POST", BULK, json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json["error"]["details"][0]["field"] == field, resp.json
    # 5000 distinct ids after deduplication are fine (queued; unknown ids fail per id).
    deduped = ws.call(
        "POST", BULK, json={"ids": too_many[:5000] + too_many[:1], "action": "unassign"}
    )
    assert deduped.status_code == 202


def test_large_bulk_runs_as_a_job(worker, workspace, other_workspace):
    ws = workspace
    targets = many_conversations(ws, 150)
    foreign = add_conversation(other_workspace)
    already = many_conversations(ws, 1, tags=["big"])
    resp = ws.call(
        "POST",
        BULK,
        json={"ids": [*targets, foreign, *already], "action": "add_tags", "tags": ["big"]},
    )
    assert resp.status_code == 202, resp.text
    job_id = resp.json["job_id"]

    job = finished_job(ws, job_id)
    assert job["status"] == "succeeded", job
    assert job["kind"] == "conversations.bulk" and job["finished_at"] and job["started_at"]
    result = job["result"]
    assert result["counts"] == {"updated": 150, "unchanged": 1, "not_found": 1, "conflict": 0}
    assert result["total"] == result["processed"] == 152
    by_id = {r["id"]: r["result"] for r in result["results"]}
    assert by_id[foreign] == "not_found" and by_id[already[0]] == "unchanged"
    assert row(foreign).tags == []
    updates = events(ws, "conversation.tags_updated")
    assert sorted(e.data["id"] for e in updates) == sorted(targets)
    assert all(e.actor_type == "user" and str(e.actor_id) == ws.admin["id"] for e in updates)

    # Another tenant never sees the job.
    assert other_workspace.call("GET", f"/api/jobs/{job_id}").status_code == 404
    assert ws.call("GET", f"/api/jobs/{uuid.uuid4()}").status_code == 404

    # Re-delivered after it finished, or after a crash mid-way: nothing changes twice.
    assert bulk.process_job(uuid.UUID(job_id)) == "succeeded"
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(status="running"))
    assert bulk.process_job(uuid.UUID(job_id)) == "succeeded"
    assert len(events(ws, "conversation.tags_updated")) == 150


def test_a_job_resumes_where_it_stopped(workspace):
    ws = workspace
    targets = many_conversations(ws, 120)
    job_id = queued_job(ws, targets, "set_priority", priority="high")
    # Simulate a crash after the first chunk: mark 50 done with no change made.
    with session_scope() as session:
        job = session.get(Job, job_id)
        job.status = "running"
        job.result = {
            "total": 120,
            "processed": 50,
            "results": [{"id": i, "result": "unchanged"} for i in targets[:50]],
        }
    assert bulk.process_job(job_id, chunk=30) == "succeeded"
    with session_scope() as session:
        high = session.scalar(
            select(func.count()).where(
                Conversation.id.in_([uuid.UUID(i) for i in targets]),
                Conversation.priority == "high",
            )
        )
        job = session.get(Job, job_id)
    assert high == 70
    assert job.result["counts"]["updated"] == 70 and job.result["counts"]["unchanged"] == 50


def test_a_job_that_keeps_failing_is_marked_failed(worker, workspace):
    ws = workspace
    targets = many_conversations(ws, 101)
    resp = ws.call("POST", BULK, json={"ids": targets, "action": "unassign"})
    job_id = resp.json["job_id"]
    wait_until(lambda: ws.call("GET", f"/api/jobs/{job_id}").json["status"] == "succeeded")
    # A corrupted job (no actor recorded) raises every time; without retries left it fails.
    with session_scope() as session:
        job = Job(tenant_id=tid(ws), kind=bulk.KIND, params={"ids": targets, "action": "unassign"})
        session.add(job)
        session.flush()
        broken = job.id
    bulk_conversation_action.send_with_options(args=(str(broken),), max_retries=0)

    def failed():
        job = ws.call("GET", f"/api/jobs/{broken}").json
        return job if job["status"] == "failed" else None

    job = wait_until(failed)
    assert "gave up after" in job["error"] and job["finished_at"]


def test_a_vanished_target_fails_the_job_with_its_reason(workspace):
    ws = workspace
    agent, _ = ws.create_agent()
    targets = many_conversations(ws, 101)
    job_id = queued_job(ws, targets, "assign", assignee_id=agent["id"])
    assert ws.call("DELETE", f"/api/agents/{agent['id']}").status_code == 204
    assert bulk.process_job(job_id) == "failed"
    job = ws.call("GET", f"/api/jobs/{job_id}").json
    assert job["status"] == "failed" and "no such agent" in job["error"]
    assert events(ws, "conversation.assigned") == []


def test_a_job_whose_message_was_lost_is_redriven_by_the_scheduler(worker, workspace):
    from scheduler import jobs as scheduler_jobs

    ws = workspace
    targets = many_conversations(ws, 3)
    job_id = queued_job(ws, targets, "add_tags", tags=["redriven"])
    redrive = next(j.func for j in scheduler_jobs.JOBS if j.name == "redrive_queued_jobs")

    # Sent a moment ago: left alone (it may just be waiting in the queue).
    with session_scope() as session:
        assert redrive(session) == 0
    # Queued for longer than the re-drive delay: sent again, and it runs.
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(enqueued_at=func.now() - 2 * scheduler_jobs.api_jobs.REDRIVE_AFTER)
        )
    with session_scope() as session:
        assert redrive(session) >= 1

    assert finished_job(ws, job_id)["status"] == "succeeded"
    assert all(row(t).tags == ["redriven"] for t in targets)
    with session_scope() as session:
        assert redrive(session) == 0


def test_a_suspended_workspaces_stale_job_waits_for_its_reactivation(workspace, root):  # noqa: F811
    """A suspended tenant's queued job is not re-sent (every worker would drop it, every
    REDRIVE_AFTER, for as long as the suspension lasts); it is once the tenant is back."""
    from scheduler import jobs as scheduler_jobs

    ws = workspace
    job_id = queued_job(ws, many_conversations(ws, 1), "add_tags", tags=["later"])
    redrive = next(j.func for j in scheduler_jobs.JOBS if j.name == "redrive_queued_jobs")
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(enqueued_at=func.now() - 2 * scheduler_jobs.api_jobs.REDRIVE_AFTER)
        )
    tenant = f"/api/admin/tenants/{ws.tenant['id']}"
    assert root.call("DELETE", tenant).status_code == 204
    with session_scope() as session:
        assert redrive(session) == 0
    assert root.call("PATCH", tenant, json={"status": "active"}).status_code == 200
    with session_scope() as session:
        assert redrive(session) == 1


def test_a_running_job_whose_worker_and_message_were_lost_is_resumed(worker, workspace):
    """A worker died mid-job and a Redis restart lost its message: the job sat ``running``
    for good. Idle past the re-drive delay, it is sent again and finishes."""
    from scheduler import jobs as scheduler_jobs

    ws = workspace
    targets = many_conversations(ws, 3)
    job_id = queued_job(ws, targets, "add_tags", tags=["resumed"])
    redrive = next(j.func for j in scheduler_jobs.JOBS if j.name == "redrive_queued_jobs")
    idle = func.now() - 2 * scheduler_jobs.api_jobs.REDRIVE_AFTER
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status="running", started_at=idle, enqueued_at=func.now())
        )
    # Progress a moment ago: its worker is alive; left alone.
    with session_scope() as session:
        assert redrive(session) == 0
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=idle))
    with session_scope() as session:
        assert redrive(session) >= 1

    assert finished_job(ws, job_id)["status"] == "succeeded"
    assert all(row(t).tags == ["resumed"] for t in targets)


def test_a_running_job_stamps_its_progress_chunk_by_chunk(workspace):
    ws = workspace
    targets = many_conversations(ws, 3)
    job_id = queued_job(ws, targets, "add_tags", tags=["stamped"])
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(enqueued_at=func.now() - 2 * bulk.jobs.REDRIVE_AFTER)
        )
    assert bulk.process_job(job_id, chunk=1) == "succeeded"
    with session_scope() as session:
        idle = session.scalar(select(func.now() - Job.enqueued_at).where(Job.id == job_id))
    assert idle < bulk.jobs.REDRIVE_AFTER


def test_inline_refusals_name_the_field_of_each_id(workspace, other_workspace):
    """A 422 names each field (API.md: one ``{field, message}`` per invalid field): the
    position in ``ids`` as sent (duplicates included), as ``ids[0]`` does for a malformed id;
    a 409 names them alike."""
    ws = workspace
    first, second = add_conversation(ws), add_conversation(ws)
    foreign = add_conversation(other_workspace)
    body = {"ids": [first, first, foreign, second], "action": "unassign"}
    resp = ws.call("POST", BULK, json=body)
    assert resp.status_code == 422, resp.text
    fields = {d["id"]: (d["field"], d["result"]) for d in resp.json["error"]["details"]}
    assert fields == {
        first: ("ids[0]", "skipped"),
        foreign: ("ids[2]", "not_found"),
        second: ("ids[3]", "skipped"),
    }
    resolved = add_conversation(ws, status="resolved", resolved_at=ago(hours=1))
    body = {"ids": [first, resolved], "action": "set_status", "status": "pending"}
    conflict = ws.call("POST", BULK, json=body)
    assert conflict.status_code == 409, conflict.text
    [bad] = [d for d in conflict.json["error"]["details"] if d["result"] == "conflict"]
    assert bad["field"] == "ids[1]" and bad["id"] == resolved
