"""Operator actions on the automation queue: retry, retry all failed, reprocess, clean up.

Each resets rows and arranges ``evaluate_rules`` after commit (:func:`queue.requeue`),
in the caller's transaction, and is written to the activity log.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from shared import activity, dead_letters
from shared.automation import queue
from shared.automation.history import get_event
from shared.automation.rules import MANAGE
from shared.context import Ctx
from shared.db import session_scope
from shared.errors import Conflict
from shared.models import AutomationEvent

#: Most failed events one retry-failed call re-queues (call again for more).
MAX_RETRY_BATCH = 10_000


def retry_event(session, ctx: Ctx, event_id: uuid.UUID) -> AutomationEvent:
    """Re-queue one failed event (409 unless failed); rules already settled are not re-run."""
    ctx.require(MANAGE)
    event = get_event(session, ctx, event_id, for_update=True)
    if event.status != "failed":
        raise Conflict(
            f"Only a failed event can be retried; this one is {event.status}",
            details=[{"field": "status", "message": f"is {event.status}"}],
        )
    queue.requeue(session, [event.id])
    activity.record(session, ctx, "automation_event.retried", "automation_event", event.id)
    session.refresh(event)
    return event


def retry_failed(session, ctx: Ctx) -> dict[str, Any]:
    ctx.require(MANAGE)
    ids = list(
        session.scalars(
            select(AutomationEvent.id)
            .where(AutomationEvent.tenant_id == ctx.tenant_id, AutomationEvent.status == "failed")
            .order_by(AutomationEvent.created_at)
            .limit(MAX_RETRY_BATCH)
            .with_for_update(skip_locked=True)
        )
    )
    queue.requeue(session, ids)
    if ids:
        activity.record(
            session,
            ctx,
            "automation_event.retried_failed",
            "automation_event",
            None,
            after={"count": len(ids)},
        )
    return {"count": len(ids), "event_ids": [str(i) for i in ids]}


def reprocess_event(session, ctx: Ctx, event_id: uuid.UUID) -> AutomationEvent:
    """Evaluate the stored event again against today's rules: new runs, flagged reprocess."""
    ctx.require(MANAGE)
    event = get_event(session, ctx, event_id, for_update=True)
    if event.status in ("pending", "processing"):
        raise Conflict(f"The event is {event.status}; wait for it to finish")
    queue.requeue(session, [event.id], reprocess=True)
    activity.record(session, ctx, "automation_event.reprocessed", "automation_event", event.id)
    session.refresh(event)
    return event


#: Failed events one cleanup transaction deletes (with their runs): short locks, small WAL.
CLEANUP_BATCH = 1_000

_CLEANUP = text(
    """
    DELETE FROM automation_events WHERE id IN (
        SELECT id FROM automation_events
         WHERE tenant_id = :tenant_id AND status = 'failed' AND created_at < :cutoff
         ORDER BY created_at LIMIT :limit
           FOR UPDATE SKIP LOCKED)
    """
)


def cleanup_failed(session, ctx: Ctx, *, older_than_days: int) -> dict[str, int]:
    """Delete failed events (and their runs) older than ``older_than_days``; return the count.

    PERF: in batches of :data:`CLEANUP_BATCH`, each its own short transaction over the
    (tenant, status, created_at) index, ``SKIP LOCKED``: the evaluator, the sweeper and
    a retry never wait on the cleanup, and a row one of them holds is left for the
    next cleanup. The count is recorded in the activity log in the caller's transaction.
    """
    ctx.require(MANAGE)
    cutoff = session.scalar(select(func.now())) - dt.timedelta(days=older_than_days)
    deleted = 0
    while True:
        with session_scope() as batch:
            taken = batch.execute(
                _CLEANUP, {"tenant_id": ctx.tenant_id, "cutoff": cutoff, "limit": CLEANUP_BATCH}
            ).rowcount
        deleted += taken
        if taken < CLEANUP_BATCH:
            break
    if deleted:
        activity.record(
            session,
            ctx,
            "automation_event.cleaned_up",
            "automation_event",
            None,
            after={"count": deleted, "older_than_days": older_than_days},
        )
    return {"deleted": deleted}


def revive(
    session: Session, tenant_id: uuid.UUID | None, args: Sequence[Any], **_options: Any
) -> None:
    """Retry the failed rows of an ``evaluate_rules`` dead letter, or 409 when none is left.

    WHY: a row counts its own attempts and turns failed after AUTOMATION_MAX_ATTEMPTS
    (the sweeper re-drives a dead job's rows until then), so by the time an operator
    requeued the dead letter its rows were failed and the requeued job evaluated
    nothing. Failed rows are retried as ``POST .../retry`` does (:func:`queue.requeue`:
    pending, fresh attempts, a job after commit), under their row locks; pending ones
    are left to the job.
    """
    ids = args[0] if args and isinstance(args[0], list) else list(args[:1])
    wanted = [dead_letters.row_id([raw]) for raw in ids]
    statement = select(AutomationEvent.id, AutomationEvent.status).where(
        AutomationEvent.id.in_(wanted)
    )
    if tenant_id is not None:
        statement = statement.where(AutomationEvent.tenant_id == tenant_id)
    rows = session.execute(statement.order_by(AutomationEvent.id).with_for_update()).all()
    failed = [row_id for row_id, status in rows if status == "failed"]
    if not failed and not any(status in ("pending", "processing") for _, status in rows):
        raise dead_letters.NotRequeueable(
            "events_done",
            "Its automation events were evaluated already, or deleted: nothing is left to"
            " evaluate (reprocess an event to evaluate it again)",
        )
    queue.requeue(session, failed)
