"""Jobs: long-running requests answered 202, their status and result in a ``jobs`` row.

A service creates the row and hands :func:`shared.db.after_commit` the function
that enqueues its actor, so the actor can never run before the row it reads
exists (and never runs at all if the request rolled back). The actor then moves the row
``queued -> running -> succeeded | failed``.

Example::

    job = jobs.create(session, ctx, "conversations.bulk", {"ids": [...]})
    db.after_commit(session, lambda: enqueue(job.id))
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.context import Ctx
from shared.errors import NotFound
from shared.models import Job

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "succeeded", "failed")


def create(session: Session, ctx: Ctx, kind: str, params: dict[str, Any]) -> Job:
    job = Job(tenant_id=ctx.tenant_id, kind=kind, params=params, created_by=ctx.user_id)
    session.add(job)
    session.flush()
    return job


def get(session: Session, ctx: Ctx, job_id: uuid.UUID) -> Job:
    """A job of the caller's tenant (another tenant's answers 404 like an unknown id)."""
    job = session.scalar(select(Job).where(Job.tenant_id == ctx.tenant_id, Job.id == job_id))
    if job is None:
        raise NotFound("Job not found")
    return job


def lock(session: Session, job_id: uuid.UUID) -> Job | None:
    """The job row, locked for this transaction (a duplicate delivery waits here)."""
    return session.scalar(select(Job).where(Job.id == job_id).with_for_update())


def mark_failed(session: Session, job_id: uuid.UUID, error: str) -> None:
    """Fail a job that is not finished; its partial ``result`` stays for the caller to read."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(("queued", "running")))
        .values(status="failed", error=error[:4000], finished_at=func.now())
    )
