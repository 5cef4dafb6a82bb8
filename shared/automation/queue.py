"""The automation event queue: rows written by ``dispatch_event``, evaluations sent after commit.

:func:`target` runs inside ``dispatch_event``'s transaction: for an event type that
can trigger rules, in a tenant with an active rule triggered by it, it inserts the
``automation_events`` row (``ON CONFLICT DO NOTHING`` on the outbox event id, so a
re-dispatch is harmless) and arranges ``evaluate_rules`` after commit. The worker
installs the enqueuer (:func:`set_enqueuer`); a row whose message is lost, or whose
worker died mid-evaluation, is re-driven by :func:`sweep` (a scheduler job).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Uuid, func, literal_column, select, text, update
from sqlalchemy.orm import Session

from shared import dispatch_facts
from shared.after_commit_queue import AfterCommitQueue
from shared.automation.facts import conversation_id_of
from shared.automation.runs import to_json
from shared.config import get_settings
from shared.db import fetch_rows
from shared.event_types import CATALOGUE
from shared.models import AutomationEvent, OutboxEvent, Tenant

log = logging.getLogger(__name__)

TARGET_NAME = "automation"
_ONE_SECOND = literal_column("interval '1 second'")
#: Queue rows one ``evaluate_rules`` message carries (evaluated in one transaction).
EVALUATION_BATCH = 25
#: Longest wait between two sweeps of one stuck row.
MAX_SWEEP_BACKOFF_SECONDS = 600.0

#: ``[automation_event_id, ...]`` -> ``evaluate_rules`` messages, after commit.
QUEUE: AfterCommitQueue[uuid.UUID] = AfterCommitQueue(
    "omnistream.automation_events", "automation evaluations"
)
set_enqueuer = QUEUE.set_enqueuer
enqueue = QUEUE.enqueue
enqueue_after_commit = QUEUE.enqueue_after_commit


def fingerprint(event_type: str, payload: Any) -> str:
    """sha256 of the type and the canonical JSON of the payload (same payload, same print)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{event_type}\n{canonical}".encode()).hexdigest()


def is_triggerable(event_type: str) -> bool:
    known = CATALOGUE.get(event_type)
    return known is not None and known.automation


_HAS_RULES = text(
    """
    SELECT EXISTS (SELECT 1 FROM automation_rules
                    WHERE tenant_id = :tenant_id AND is_active
                      AND trigger_event_types @> ARRAY[CAST(:event_type AS varchar)])
    """
)


def has_rules_for(session: Session, tenant_id: uuid.UUID, event_type: str) -> bool:
    """Whether an active rule of the tenant is triggered by ``event_type`` (GIN index probe).

    PERF: a written-out statement: building the ORM query cost three times running it,
    once per event type of every dispatched batch.
    """
    return bool(
        fetch_rows(
            session.connection(), _HAS_RULES, {"tenant_id": tenant_id, "event_type": event_type}
        )[0][0]
    )


def sweep_delay() -> Any:
    """When a row just written or sent may be swept if still unfinished."""
    return func.now() + get_settings().automation_sweep_after_seconds * _ONE_SECOND


#: PERF: a dispatch transaction's queue rows in one statement (it was an ORM insert per
#: event, compiled and sent one by one: most of the automation target's cost).
#: NOTE: ``created_at`` is the queue order the evaluator follows; the rows of one dispatch
#: would share ``now()``, so each is a microsecond after the one before it in the
#: dispatch's order (the order its events occurred, shared.dispatch).
_INSERT_ROWS = text(
    """
    INSERT INTO automation_events (
        id, tenant_id, outbox_event_id, event_type, conversation_id, payload, fingerprint,
        causation, sweep_at, created_at
    )
    SELECT r.id, r.tenant_id, r.outbox_event_id, r.event_type, r.conversation_id, r.payload,
           r.fingerprint, r.causation,
           now() + CAST(:sweep_after AS double precision) * interval '1 second',
           now() + r.ord * interval '1 microsecond'
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
        ord integer, id uuid, tenant_id uuid, outbox_event_id uuid, event_type text,
        conversation_id uuid, payload jsonb, fingerprint text, causation jsonb
    )
    ORDER BY r.ord
    ON CONFLICT (outbox_event_id) DO NOTHING
    RETURNING id, outbox_event_id
    """
).columns(id=Uuid, outbox_event_id=Uuid)


def target(session: Session, event: OutboxEvent) -> None:
    """:func:`target_many` of one event."""
    target_many(session, [event])


def target_many(session: Session, events: Sequence[OutboxEvent]) -> None:
    """The :func:`shared.dispatch.register_target` callable (``batch=True``): a queue row
    for each event that can trigger an active rule of its tenant, in one statement, sent
    to ``evaluate_rules`` after commit in the events' order (a re-dispatched event's row
    already exists and is not sent again)."""
    rows = []
    for event in events:
        if not is_triggerable(event.type):
            continue
        # PERF: the per-process dispatch facts, not a query per batch and event type.
        if event.type not in dispatch_facts.of(session, event.tenant_id).rule_types:
            continue
        rows.append(
            {
                "ord": len(rows),
                "id": uuid.uuid4(),
                "tenant_id": event.tenant_id,
                "outbox_event_id": event.id,
                "event_type": event.type,
                "conversation_id": conversation_id_of(event.type, event.data),
                "payload": event.data,
                "fingerprint": fingerprint(event.type, event.data),
                "causation": event.causation,
            }
        )
    if not rows:
        return
    created = {
        row.outbox_event_id: row.id
        for row in session.execute(
            _INSERT_ROWS,
            {
                "rows": to_json(rows),
                "sweep_after": float(get_settings().automation_sweep_after_seconds),
            },
        )
    }
    ids = [created[row["outbox_event_id"]] for row in rows if row["outbox_event_id"] in created]
    if ids:
        enqueue_after_commit(session, ids)


def requeue(session: Session, ids: Sequence[uuid.UUID], *, reprocess: bool = False) -> None:
    """Put rows back to ``pending`` (retry, reprocess) and send them after commit."""
    if not ids:
        return
    values: dict[str, Any] = {"status": "pending", "error": None, "sweep_at": sweep_delay()}
    if reprocess:
        values["reprocess"] = True
    else:
        values["attempts"] = 0
    session.execute(
        update(AutomationEvent)
        .where(AutomationEvent.id.in_(list(ids)))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    enqueue_after_commit(session, list(ids))


def sweep(session: Session, *, batch: int = 500) -> int:
    """Re-enqueue rows still pending or processing past their ``sweep_at``; return how many.

    Each claimed row's next sweep moves out with exponential backoff (by attempts),
    so a row that keeps failing is not re-sent every few seconds; the evaluator
    marks it failed after ``AUTOMATION_MAX_ATTEMPTS``. A suspended workspace's rows wait
    here until it is reactivated.
    """
    after = get_settings().automation_sweep_after_seconds
    active = select(Tenant.id).where(
        Tenant.id == AutomationEvent.tenant_id, Tenant.status == "active"
    )
    due = (
        select(AutomationEvent.id)
        .where(
            AutomationEvent.status.in_(("pending", "processing")),
            AutomationEvent.sweep_at <= func.now(),
            active.exists(),
        )
        .order_by(AutomationEvent.sweep_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .cte("due")
        .prefix_with("MATERIALIZED")
    )
    backoff = func.least(
        after * func.power(2, func.least(AutomationEvent.attempts, 10)), MAX_SWEEP_BACKOFF_SECONDS
    )
    ids = list(
        session.scalars(
            update(AutomationEvent)
            .where(AutomationEvent.id == due.c.id)
            .values(sweep_at=func.now() + backoff * _ONE_SECOND)
            .returning(AutomationEvent.id)
            .execution_options(synchronize_session=False)
        )
    )
    if ids:
        log.info("re-driving %d automation event(s)", len(ids))
        enqueue_after_commit(session, ids)
    return len(ids)
