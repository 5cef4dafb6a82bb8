"""Jobs: long-running requests answered 202, their status and result in a ``jobs`` row.

A service creates the row and hands :func:`after_commit` the function that
enqueues its actor, so the actor can never run before the row it reads exists
(and never runs at all if the request rolled back). The actor then moves the row
``queued -> running -> succeeded | failed``.

Example::

    job = jobs.create(session, ctx, "conversations.bulk", {"ids": [...]})
    jobs.after_commit(session, lambda: enqueue(job.id))
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from shared.context import Ctx
from shared.errors import NotFound
from shared.models import Job

log = logging.getLogger(__name__)

#: ``session.info`` key holding the callbacks to run after the transaction commits.
_CALLBACKS_KEY = "omnistream.after_commit_jobs"

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


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's current transaction commits (never on rollback)."""
    session.info.setdefault(_CALLBACKS_KEY, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_callbacks(session: Session) -> None:
    for callback in session.info.pop(_CALLBACKS_KEY, ()):
        try:
            callback()
        except Exception:
            # NOTE: the job row is committed and stays 'queued'; the caller already
            # holds its id and an operator can see it. Raising here would lie.
            log.exception("could not enqueue a committed job")


@event.listens_for(Session, "after_soft_rollback")
def _forget_callbacks(session: Session, previous_transaction: Any) -> None:
    if not previous_transaction.nested:
        session.info.pop(_CALLBACKS_KEY, None)


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
