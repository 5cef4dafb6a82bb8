"""The activity log: one row per state change, written in the change's own transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from shared import bulk_insert
from shared.context import Ctx
from shared.errors import ValidationFailed
from shared.events import emit, emit_many
from shared.models import ActivityLog
from shared.pagination import Page, paginate

# PERF: built once, bound per call, like the outbox insert (shared.events): every write
# path records a row, and building the construct per call cost more CPU than running it.
_INSERT_ACTIVITY = insert(ActivityLog.__table__)


def impersonator_id(ctx: Ctx) -> uuid.UUID | None:
    """The super admin behind ``ctx``: the request's ``imp`` claim, or its actor's (a job's)."""
    if ctx.impersonator_id is not None:
        return ctx.impersonator_id
    return ctx.actor.impersonated_by.id if ctx.actor.impersonated_by else None


def record(
    session: Session,
    ctx: Ctx,
    action: str,
    entity_type: str,
    entity_id: uuid.UUID | None,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Append who did ``action`` to which entity, with its state before and after."""
    session.execute(_INSERT_ACTIVITY, _row(ctx, action, entity_type, entity_id, before, after))


def record_many(
    session: Session,
    ctx: Ctx,
    action: str,
    entity_type: str,
    changes: Sequence[tuple[uuid.UUID | None, dict[str, Any] | None, dict[str, Any] | None]],
) -> None:
    """:func:`record` of many ``(entity_id, before, after)`` by one caller, one statement."""
    if changes:
        rows = [_row(ctx, action, entity_type, *change) for change in changes]
        bulk_insert.insert_many(session, ActivityLog.__table__, rows)


def _row(
    ctx: Ctx,
    action: str,
    entity_type: str,
    entity_id: uuid.UUID | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "tenant_id": ctx.tenant_id,
        "actor_type": ctx.actor.type,
        "actor_id": ctx.actor.id,
        "action": action,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "before": before,
        "after": after,
        "request_id": ctx.request_id,
        "ip_address": ctx.ip,
        "impersonator_id": impersonator_id(ctx),
        "impersonator_email": (
            ctx.actor.impersonated_by.email if ctx.actor.impersonated_by else None
        ),
    }


def list_logs(
    session: Session,
    ctx: Ctx,
    *,
    actor_id: uuid.UUID | None = None,
    action: str | None = None,
    entity_type: str | None = None,
    entity_id: uuid.UUID | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int,
    cursor: str | None,
) -> Page[ActivityLog]:
    """The tenant's activity, newest first; ``since`` inclusive, ``until`` exclusive.

    ``since`` not before ``until`` is 422 naming ``from`` (an empty page would read as
    "nothing happened"), as every ranged list answers.
    """
    ctx.require("activity_logs.view")
    if since and until and since >= until:
        raise ValidationFailed.field("from", "must be before 'to'")
    query = select(ActivityLog).where(ActivityLog.tenant_id == ctx.tenant_id)
    if actor_id:
        query = query.where(ActivityLog.actor_id == actor_id)
    if action:
        query = query.where(ActivityLog.action == action)
    if entity_type:
        query = query.where(ActivityLog.entity_type == entity_type)
    if entity_id:
        query = query.where(ActivityLog.entity_id == entity_id)
    if since:
        query = query.where(ActivityLog.created_at >= since)
    if until:
        query = query.where(ActivityLog.created_at < until)
    return paginate(
        session,
        query,
        created_at=ActivityLog.created_at,
        id_column=ActivityLog.id,
        limit=limit,
        cursor=cursor,
    )


def record_change(
    session: Session,
    ctx: Ctx,
    event_type: str,
    entity_type: str,
    entity_id: uuid.UUID | None,
    data: dict[str, Any],
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> uuid.UUID:
    """Audit a change and announce it: the activity row and the outbox event, one transaction.

    ``data`` is the event's payload (the resource as its GET shows it); ``before`` and
    ``after`` are what the activity log keeps. Returns the event id.
    """
    row = {"id": uuid.uuid4(), **_row(ctx, event_type, entity_type, entity_id, before, after)}
    # PERF: the activity row rides in the event's INSERT: one statement, one round trip.
    return emit(
        session,
        event_type,
        data,
        tenant_id=ctx.tenant_id,
        actor=ctx.actor,
        alongside=(ActivityLog.__table__, row),
    )


def record_changes(
    session: Session,
    ctx: Ctx,
    event_type: str,
    entity_type: str,
    items: Sequence[tuple[uuid.UUID, dict[str, Any]]],
) -> list[uuid.UUID]:
    """:func:`record_change` for many new ``(entity_id, data)`` (``after`` = ``data``): the
    activity rows and the events in one batched statement each. Returns the event ids."""
    if not items:
        return []
    row = _row(ctx, event_type, entity_type, None, None, None)
    bulk_insert.insert_many(
        session,
        ActivityLog.__table__,
        [{**row, "entity_id": entity_id, "after": data} for entity_id, data in items],
    )
    return emit_many(
        session, event_type, [(ctx.tenant_id, data) for _, data in items], actor=ctx.actor
    )
