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

import datetime as dt
import logging
import uuid
from collections.abc import Collection
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from shared.context import Ctx
from shared.dead_letters import NotRequeueable
from shared.errors import NotFound
from shared.models import Job, Tenant

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "succeeded", "failed")

#: Who may read a job besides its creator: the permission that starts (or, for the
#: scheduler's own kinds, governs) work of its kind. APPSEC: a job's params and result
#: name rows of its area (a bulk action's conversation ids, an import's products), so an
#: agent without that area's rights gets 404 for it, as for a conversation they cannot see.
READ_PERMISSIONS = {
    "conversations.bulk": "conversations.manage",
    "ai_products.import": "ai_agents.manage",
    "wa_templates.sync": "integrations.manage",
    "sla.retime": "sla.manage",
}

#: A job still queued this long after its actor was sent lost its message (the
#: enqueue failed after commit, or the broker dropped it) or waits behind a backlog;
#: either way sending it again is safe, since job actors are idempotent. A resumable job
#: running with no progress for as long lost its worker and its message.
REDRIVE_AFTER = dt.timedelta(minutes=2)


def create(session: Session, ctx: Ctx, kind: str, params: dict[str, Any]) -> Job:
    job = Job(tenant_id=ctx.tenant_id, kind=kind, params=params, created_by=ctx.user_id)
    session.add(job)
    session.flush()
    return job


def get(session: Session, ctx: Ctx, job_id: uuid.UUID) -> Job:
    """A job of the caller's tenant that they started or whose kind they have the rights
    to (:data:`READ_PERMISSIONS`); any other answers 404, like an unknown id."""
    job = session.scalar(select(Job).where(Job.tenant_id == ctx.tenant_id, Job.id == job_id))
    if job is None or not _may_read(ctx, job):
        raise NotFound("Job not found")
    return job


def _may_read(ctx: Ctx, job: Job) -> bool:
    if job.created_by is not None and job.created_by == ctx.user_id:
        return True
    permission = READ_PERMISSIONS.get(job.kind)
    return permission is not None and ctx.can(permission)


def claim_stale(
    session: Session, *, resumable: Collection[str] = (), limit: int = 100
) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    """Stamp jobs idle past :data:`REDRIVE_AFTER` as re-sent; ``[(id, tenant_id, kind)]``.

    Queued jobs of every kind; running jobs of the ``resumable`` kinds, whose actors stamp
    ``enqueued_at`` as they progress (see :func:`progressed`) and resume where they
    stopped: one idle that long lost its worker and its broker message (a Redis restart).
    SKIP LOCKED, so two schedulers (or a job working right now) never collide.
    """
    idle = or_(
        Job.status == "queued",
        and_(Job.status == "running", Job.kind.in_(list(resumable))),
    )
    stale = (
        select(Job.id)
        .where(
            Job.status.in_(("queued", "running")),  # the partial index's condition
            idle,
            Job.enqueued_at < func.now() - REDRIVE_AFTER,
            # A suspended tenant's jobs wait (every worker would drop each re-send) until
            # it is reactivated, as its outbox events and deliveries do.
            ~exists().where(Tenant.id == Job.tenant_id, Tenant.status != "active"),
        )
        .order_by(Job.enqueued_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = session.execute(
        update(Job)
        .where(Job.id.in_(stale))
        .values(enqueued_at=func.now())
        .returning(Job.id, Job.tenant_id, Job.kind)
    )
    return [tuple(row) for row in rows]


def progressed(job: Job) -> None:
    """Stamp a running job as alive (a resumable kind's actor, after each step it records)."""
    job.enqueued_at = func.now()


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


def locked_for_requeue(
    session: Session, tenant_id: uuid.UUID | None, job_id: uuid.UUID, kind: str
) -> Job:
    """The ``kind`` job a dead letter names, locked (``tenant_id``'s unless None: the
    platform operator), or 409: a job deleted since (retention) has nothing to run."""
    statement = select(Job).where(Job.id == job_id, Job.kind == kind)
    if tenant_id is not None:
        statement = statement.where(Job.tenant_id == tenant_id)
    job = session.scalar(statement.with_for_update())
    if job is None:
        raise NotRequeueable("job_gone", "The job was deleted: there is nothing to run")
    if job.status == "succeeded":
        raise NotRequeueable("job_succeeded", "The job succeeded already: nothing is left to do")
    return job


def reopen(session: Session, job: Job) -> None:
    """A failed job back to where its actor resumes it (``running`` if it had started,
    else ``queued``), its partial ``result`` kept so finished items are skipped."""
    job.status = "running" if job.started_at is not None else "queued"
    job.error, job.finished_at, job.enqueued_at = None, None, func.now()
    session.flush()
