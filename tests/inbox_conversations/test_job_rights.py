"""Who may read a job: ``GET /api/jobs/{id}`` answers what its kind's permission allows."""

from __future__ import annotations

import uuid

from shared.db import session_scope
from shared.inbox import bulk
from shared.models import Job
from shared.timekeeping import sla
from tests.inbox_conversations.conftest import tid


def stored_job(ws, kind: str, *, created_by: str | None) -> uuid.UUID:
    """A finished job of ``kind``: nothing picks it up (a queued ``sla.retime`` row would be
    drained by the next check_sla of any test sharing this database)."""
    with session_scope() as session:
        job = Job(
            tenant_id=tid(ws),
            kind=kind,
            status="succeeded",
            params={"ids": [str(uuid.uuid4())], "action": "unassign"},
            created_by=uuid.UUID(created_by) if created_by else None,
        )
        session.add(job)
        session.flush()
        return job.id


def test_an_agent_without_the_kinds_permission_gets_404(workspace):
    ws = workspace
    _, agent_token = ws.create_agent("agent")
    job_id = stored_job(ws, bulk.KIND, created_by=ws.admin["id"])

    assert ws.call("GET", f"/api/jobs/{job_id}").status_code == 200
    refused = ws.call("GET", f"/api/jobs/{job_id}", token=agent_token)
    assert refused.status_code == 404, refused.text
    assert refused.json["error"]["code"] == "not_found"


def test_the_creator_reads_their_own_job(workspace):
    ws = workspace
    agent, agent_token = ws.create_agent("agent")
    job_id = stored_job(ws, bulk.KIND, created_by=agent["id"])

    resp = ws.call("GET", f"/api/jobs/{job_id}", token=agent_token)
    assert resp.status_code == 200, resp.text
    assert resp.json["id"] == str(job_id)


def test_internal_jobs_are_for_those_who_manage_their_area(workspace):
    ws = workspace
    _, agent_token = ws.create_agent("agent")
    job_id = stored_job(ws, sla.RETIME_KIND, created_by=None)

    assert ws.call("GET", f"/api/jobs/{job_id}", token=agent_token).status_code == 404
    assert ws.call("GET", f"/api/jobs/{job_id}").status_code == 200


def test_every_job_kind_names_who_may_read_it():
    from shared import jobs
    from shared.ai import agents, product_import
    from shared.channels.templates import catalogue, sync
    from shared.inbox import conversations
    from shared.timekeeping import sla_policies

    assert jobs.READ_PERMISSIONS == {
        bulk.KIND: conversations.MANAGE,
        product_import.KIND: agents.MANAGE,
        sync.JOB_KIND: catalogue.MANAGE,
        sla.RETIME_KIND: sla_policies.MANAGE,
    }
