"""The automation queue rows' state changes around an evaluation, each in its own transaction.

:func:`claim` takes a batch (``processing``, one more attempt) before it is evaluated;
the others put a claimed row back when it is not evaluated now: a suspended workspace
(:func:`hold_suspended`), the action ceiling (:func:`defer`), an unexpected error
(:func:`record_failure`). :func:`finish` marks the evaluated rows, inside the
evaluation's transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence

from sqlalchemy import Uuid, any_, bindparam, func, literal_column, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from shared.admin import dropped_work
from shared.automation.runs import to_json
from shared.db import failure_reason, session_scope
from shared.models import AutomationEvent

log = logging.getLogger(__name__)

#: ``evaluate_rules``'s queue, for the dead letter that redoes it (shared code does not
#: import the workers' queue names).
QUEUE_NAME = "automation"

_CLAIM = (
    update(AutomationEvent)
    .where(
        AutomationEvent.id == any_(bindparam("event_ids", type_=ARRAY(Uuid))),
        AutomationEvent.status.in_(("pending", "processing")),
    )
    .values(status="processing", attempts=AutomationEvent.attempts + 1, started_at=func.now())
    .returning(AutomationEvent.id, AutomationEvent.tenant_id)
)

#: PERF: every evaluated row of a batch marked in one statement.
_FINISH = text(
    """
    UPDATE automation_events AS a
    SET status = f.status, error = f.error, reprocess = false, finished_at = clock_timestamp()
    FROM jsonb_to_recordset(CAST(:finished AS jsonb)) AS f(id uuid, status text, error text)
    WHERE a.id = f.id
    """
)


def claim(event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """Take the rows (``processing``, one more attempt): ``{row id: tenant id}`` of those
    taken; a row already ``done`` or ``failed`` is left alone (a duplicate is a no-op)."""
    with session_scope() as session:
        rows = session.execute(_CLAIM, {"event_ids": sorted(set(event_ids))})
        return {row.id: row.tenant_id for row in rows}


def finish(session: Session, finished: Sequence[tuple[uuid.UUID, str, str | None]]) -> None:
    """Mark evaluated rows ``(id, status, error)`` finished, in the evaluation's transaction."""
    if finished:
        rows = [{"id": row, "status": status, "error": note} for row, status, note in finished]
        session.execute(_FINISH, {"finished": to_json(rows)})


def hold_suspended(event_id: uuid.UUID, tenant_id: uuid.UUID) -> None:
    """A suspended workspace's evaluation: back to pending (no attempt), on record once.

    The sweeper leaves it alone until the workspace is reactivated, then sends it again.
    """
    with session_scope() as session:
        session.execute(
            update(AutomationEvent)
            .where(AutomationEvent.id == event_id, AutomationEvent.status == "processing")
            .values(status="pending", attempts=AutomationEvent.attempts - 1)
        )
        dropped_work.record(
            session,
            tenant_id=tenant_id,
            queue_name=QUEUE_NAME,
            actor_name="evaluate_rules",
            args=[str(event_id)],
            options={"tenant_id": str(tenant_id)},
        )


def defer(event_id: uuid.UUID, until: dt.datetime, at: dt.datetime, reason: str) -> None:
    """Back to ``pending`` until ``until`` (the sweeper sends it then); no attempt."""
    wait = max((until - at).total_seconds(), 0.0)
    with session_scope() as session:
        session.execute(
            update(AutomationEvent)
            .where(AutomationEvent.id == event_id, AutomationEvent.status == "processing")
            .values(
                status="pending",
                attempts=AutomationEvent.attempts - 1,
                # NOTE: the wait is measured on the judged clock, the due time on the database's.
                sweep_at=func.now() + literal_column("interval '1 second'") * wait,
                error=f"deferred: {reason}",
            )
        )


def record_failure(event_id: uuid.UUID, exc: Exception, max_attempts: int) -> bool:
    """Keep the error on the row; mark it failed once out of attempts (True), else pending."""
    error = failure_reason(exc)[:4000]
    with session_scope() as session:
        event = session.get(AutomationEvent, event_id, with_for_update=True)
        if event is None:
            return True
        out_of_attempts = event.attempts >= max_attempts
        event.status = "failed" if out_of_attempts else "pending"
        event.error = error
        if out_of_attempts:
            event.finished_at = func.now()
    log.warning("automation event %s: %s", event_id, error, exc_info=not out_of_attempts)
    return out_of_attempts
