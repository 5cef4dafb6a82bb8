"""Runs and queue events as the API reads them: lists, one item, replay context, stats, CSV.

Every query is tenant-scoped; another tenant's rule, run or event id answers 404
exactly like an unknown one. CSV exports stream in keyset batches from a session
of their own (the request's session is closed before the body is sent).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session, lazyload

from shared.automation import rules as rule_service
from shared.automation.compiled import CompiledRule
from shared.automation.engine import evaluate
from shared.automation.views import EventView, RunDetail, RunView
from shared.context import Ctx
from shared.db import get_sessionmaker
from shared.errors import NotFound
from shared.inbox.access import get_conversation
from shared.inbox.quick_reply_csv import guard_cell
from shared.models import AutomationEvent, AutomationRun
from shared.pagination import Page, paginate

EXPORT_BATCH = 1000
#: Most rows one CSV export holds (narrow the window for more).
EXPORT_MAX_ROWS = 100_000


# ---------------------------------------------------------------- runs


def _page(session: Session, query, model: Any, limit: int, cursor: str | None) -> Page[Any]:
    return paginate(
        session, query, created_at=model.created_at, id_column=model.id, limit=limit, cursor=cursor
    )


def in_window(query, column, since: dt.datetime | None, until: dt.datetime | None):
    """``query`` restricted to ``since <= column < until`` (either bound optional)."""
    if since:
        query = query.where(column >= since)
    if until:
        query = query.where(column < until)
    return query


def _run_query(
    ctx: Ctx,
    *,
    rule_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    traces: bool = True,
):
    r = AutomationRun
    query = select(r).where(r.tenant_id == ctx.tenant_id)
    if not traces:
        # Exports show no trace, facts or snapshot: those rows are not loaded. (Lists
        # load them, one query each per page: a run's trace is rebuilt from them.)
        query = query.options(lazyload(r.context), lazyload(r.stored_snapshot))
    if rule_id:
        query = query.where(r.rule_id == rule_id)
    if event_id:
        query = query.where(r.automation_event_id == event_id)
    if status:
        query = query.where(r.status == status)
    return in_window(query, r.created_at, since, until)


def list_runs(
    session: Session, ctx: Ctx, *, limit: int, cursor: str | None = None, **filters: Any
) -> Page[AutomationRun]:
    ctx.require(rule_service.VIEW)
    if filters.get("event_id"):
        get_event(session, ctx, filters["event_id"])
    return _page(session, _run_query(ctx, **filters), AutomationRun, limit, cursor)


def list_rule_runs(
    session: Session, ctx: Ctx, rule_id: uuid.UUID, **kwargs: Any
) -> Page[AutomationRun]:
    """Runs of one rule; 404 unless the rule exists in the caller's tenant."""
    rule_service.get_rule(session, ctx, rule_id)
    return list_runs(session, ctx, rule_id=rule_id, **kwargs)


def get_run(session: Session, ctx: Ctx, run_id: uuid.UUID) -> AutomationRun:
    ctx.require(rule_service.VIEW)
    run = session.scalar(
        select(AutomationRun).where(
            AutomationRun.tenant_id == ctx.tenant_id, AutomationRun.id == run_id
        )
    )
    if run is None:
        raise NotFound("Automation run not found")
    return run


def replay(run: AutomationRun) -> dict[str, Any]:
    """The decision the stored rule snapshot makes on the stored facts, computed now."""
    compiled = CompiledRule.from_snapshot(run.rule_snapshot)
    changes = {k: (v[0], v[1]) for k, v in (run.changes or {}).items()}
    evaluation = evaluate(compiled.compiled, run.facts, changes, trace=True)
    return {"matched": evaluation.matched, "condition_results": list(evaluation.trace)}


def replay_context(session: Session, ctx: Ctx, run_id: uuid.UUID) -> dict[str, Any]:
    """What the run saw and decided, and the same evaluation replayed from its snapshots."""
    run = get_run(session, ctx, run_id)
    event = session.get(AutomationEvent, run.automation_event_id)
    replayed = replay(run) if run.status != "skipped" else None
    return {
        "run": RunDetail.data(run),
        "event": EventView.data(event) if event is not None else None,
        "rule_snapshot": run.rule_snapshot,
        "facts": run.facts,
        "changes": run.changes,
        "condition_results": run.condition_results,
        "matched": run.matched,
        "replayed": replayed,
        "same_decision": replayed is None
        or (
            replayed["matched"] == run.matched
            and replayed["condition_results"] == run.condition_results
        ),
    }


# ---------------------------------------------------------------- queue events


def _event_query(
    ctx: Ctx,
    *,
    status: str | None = None,
    event_type: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    conversation_id: uuid.UUID | None = None,
    fingerprint: str | None = None,
    rule_id: uuid.UUID | None = None,
):
    e = AutomationEvent
    query = select(e).where(e.tenant_id == ctx.tenant_id)
    if status:
        query = query.where(e.status == status)
    if event_type:
        query = query.where(e.event_type == event_type)
    query = in_window(query, e.created_at, since, until)
    if conversation_id:
        query = query.where(e.conversation_id == conversation_id)
    if fingerprint:
        query = query.where(e.fingerprint == fingerprint)
    if rule_id:
        ran = select(AutomationRun.automation_event_id).where(
            AutomationRun.tenant_id == ctx.tenant_id, AutomationRun.rule_id == rule_id
        )
        query = query.where(e.id.in_(ran))
    return query


def list_events(
    session: Session, ctx: Ctx, *, limit: int, cursor: str | None = None, **filters: Any
) -> Page[AutomationEvent]:
    ctx.require(rule_service.VIEW)
    return _page(session, _event_query(ctx, **filters), AutomationEvent, limit, cursor)


def list_conversation_events(
    session: Session, ctx: Ctx, conversation_id: uuid.UUID, **kwargs: Any
) -> Page[AutomationEvent]:
    ctx.require(rule_service.VIEW)
    get_conversation(session, ctx, conversation_id)
    return list_events(session, ctx, conversation_id=conversation_id, **kwargs)


def list_rule_events(
    session: Session, ctx: Ctx, rule_id: uuid.UUID, **kwargs: Any
) -> Page[AutomationEvent]:
    rule_service.get_rule(session, ctx, rule_id)
    return list_events(session, ctx, rule_id=rule_id, **kwargs)


def get_event(
    session: Session, ctx: Ctx, event_id: uuid.UUID, *, for_update: bool = False
) -> AutomationEvent:
    ctx.require(rule_service.VIEW)
    query = select(AutomationEvent).where(
        AutomationEvent.tenant_id == ctx.tenant_id, AutomationEvent.id == event_id
    )
    if for_update:
        query = query.with_for_update()
    event = session.scalar(query)
    if event is None:
        raise NotFound("Automation event not found")
    return event


def event_stats(
    session: Session,
    ctx: Ctx,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> dict[str, Any]:
    """Counts by status and the age of the oldest pending event (seconds, None if none)."""
    ctx.require(rule_service.VIEW)
    e = AutomationEvent
    query = _event_query(ctx, since=since, until=until).subquery()
    counts = dict(
        session.execute(select(query.c.status, func.count()).group_by(query.c.status)).all()
    )
    oldest = session.scalar(
        select(func.extract("epoch", func.now() - func.min(e.created_at))).where(
            e.tenant_id == ctx.tenant_id, e.status == "pending"
        )
    )
    by_status = {
        status: counts.get(status, 0) for status in ("pending", "processing", "done", "failed")
    }
    return {
        "counts": by_status,
        "total": sum(by_status.values()),
        "oldest_pending_age_seconds": float(oldest) if oldest is not None else None,
    }


# ---------------------------------------------------------------- CSV


RUN_COLUMNS = (
    "id",
    "created_at",
    "rule_id",
    "rule_version",
    "automation_event_id",
    "status",
    "matched",
    "duration_ms",
    "reprocess",
    "error",
)
EVENT_COLUMNS = (
    "id",
    "created_at",
    "event_type",
    "status",
    "attempts",
    "conversation_id",
    "fingerprint",
    "outbox_event_id",
    "started_at",
    "finished_at",
    "error",
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return guard_cell(str(value))


def _stream(
    query_factory: Callable[[], Any], model: Any, columns: tuple[str, ...]
) -> Iterator[bytes]:
    """CSV rows in keyset batches, newest first, each batch in a short read-only session."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    yield out.getvalue().encode()
    after: tuple[dt.datetime, uuid.UUID] | None = None
    sent = 0
    while sent < EXPORT_MAX_ROWS:
        query = (
            query_factory().order_by(model.created_at.desc(), model.id.desc()).limit(EXPORT_BATCH)
        )
        if after is not None:
            query = query.where(tuple_(model.created_at, model.id) < tuple_(*after))
        with get_sessionmaker(read_only=True)() as session:
            rows = session.scalars(query).all()
        if not rows:
            return
        out.seek(0)
        out.truncate()
        writer.writerows([_cell(getattr(row, c)) for c in columns] for row in rows)
        yield out.getvalue().encode()
        sent += len(rows)
        after = (rows[-1].created_at, rows[-1].id)


def export_runs(ctx: Ctx, **filters: Any) -> Iterator[bytes]:
    ctx.require(rule_service.VIEW)
    return _stream(lambda: _run_query(ctx, traces=False, **filters), AutomationRun, RUN_COLUMNS)


def export_events(ctx: Ctx, **filters: Any) -> Iterator[bytes]:
    ctx.require(rule_service.VIEW)
    return _stream(lambda: _event_query(ctx, **filters), AutomationEvent, EVENT_COLUMNS)


def run_data(run: AutomationRun) -> dict[str, Any]:
    return RunView.data(run)
