"""The stored working hours and timezone of a tenant, and which schedule applies where.

The rule (README, "Working hours"): a conversation's division uses its override when it
has one, else the tenant's schedule; a tenant that never set working hours is **always
open** (nothing is outside working hours, and SLA working time is plain elapsed time).
Every reader goes through :func:`effective` / :func:`is_open_now`, and the automation
facts' SQL applies the same coalesce (``shared.automation.facts``).

A stored schedule is the API body as validated by
:func:`~shared.timekeeping.working_hours.validate_schedule`, with ``holidays`` and each
holiday's ``name`` filled in, so reading it back gives what was sent.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared import activity
from shared.context import Ctx
from shared.errors import NotFound, ValidationFailed
from shared.models import (
    Division,
    Tenant,
    WorkingHours,
)
from shared.timekeeping import working_hours

MANAGE = "settings.manage"
_NO_DIVISION = "00000000-0000-0000-0000-000000000000"


class Effective(NamedTuple):
    """The schedule that applies (None: no hours set, always open) and its timezone."""

    schedule: dict[str, Any] | None
    timezone: str


def _problems_to_error(problems: list[working_hours.Problem]) -> ValidationFailed:
    details = [{"field": p.path or "body", "message": p.message, "code": p.code} for p in problems]
    return ValidationFailed(f"{problems[0].path or 'body'}: {problems[0].message}", details=details)


def clean_schedule(body: Mapping[str, Any]) -> dict[str, Any]:
    """The schedule to store, or :class:`ValidationFailed` naming every bad field."""
    problems = working_hours.validate_schedule(body)
    if problems:
        raise _problems_to_error(problems)
    days = sorted(
        (
            {
                "weekday": day["weekday"],
                "intervals": sorted(
                    ({"start": i["start"], "end": i["end"]} for i in day["intervals"]),
                    key=lambda i: i["start"],
                ),
            }
            for day in body["days"]
        ),
        key=lambda d: d["weekday"],
    )
    holidays = sorted(
        ({"date": h["date"], "name": h.get("name", "")} for h in body.get("holidays") or []),
        key=lambda h: h["date"],
    )
    return {"days": days, "holidays": holidays}


def db_now(session: Session) -> dt.datetime:
    """The database clock: the one every "due" comparison uses (tests inject ``now``)."""
    return session.scalar(select(func.now()))


# --- reading ------------------------------------------------------------------------------


def _stored(session: Session, tenant_id: uuid.UUID, division_id: uuid.UUID | None):
    which = (
        WorkingHours.division_id.is_(None)
        if division_id is None
        else WorkingHours.division_id == division_id
    )
    return session.execute(
        select(WorkingHours.schedule, WorkingHours.updated_at).where(
            WorkingHours.tenant_id == tenant_id, which
        )
    ).one_or_none()


def tenant_timezone(session: Session, tenant_id: uuid.UUID) -> str:
    return session.scalar(select(Tenant.timezone).where(Tenant.id == tenant_id)) or "UTC"


def effective(
    session: Session, tenant_id: uuid.UUID, division_id: uuid.UUID | None = None
) -> Effective:
    """The schedule that applies to ``division_id`` (or the tenant), and the timezone."""
    division_hours = (
        select(WorkingHours.schedule)
        .where(WorkingHours.tenant_id == tenant_id, WorkingHours.division_id == division_id)
        .scalar_subquery()
    )
    tenant_hours = (
        select(WorkingHours.schedule)
        .where(WorkingHours.tenant_id == tenant_id, WorkingHours.division_id.is_(None))
        .scalar_subquery()
    )
    row = session.execute(
        select(Tenant.timezone, func.coalesce(division_hours, tenant_hours)).where(
            Tenant.id == tenant_id
        )
    ).one_or_none()
    if row is None:
        return Effective(None, "UTC")
    return Effective(row[1], row[0] or "UTC")


def is_open_now(
    session: Session,
    tenant_id: uuid.UUID,
    division_id: uuid.UUID | None = None,
    *,
    now: dt.datetime | None = None,
) -> bool:
    """Whether the tenant (or division) is inside working hours at ``now`` (database clock).

    The one question the AI agents' ``outside_working_hours`` mode asks.
    """
    schedule, timezone = effective(session, tenant_id, division_id)
    if schedule is None:
        return True
    return working_hours.is_open(schedule, timezone, now or db_now(session))


def _view(stored: Any, timezone: str) -> dict[str, Any]:
    if stored is None:
        return {
            "days": [],
            "holidays": [],
            "configured": False,
            "timezone": timezone,
            "updated_at": None,
        }
    schedule, updated_at = stored
    return {
        "days": schedule.get("days", []),
        "holidays": schedule.get("holidays", []),
        "configured": True,
        "timezone": timezone,
        "updated_at": updated_at,
    }


def get_global(session: Session, ctx: Ctx) -> dict[str, Any]:
    """The tenant's schedule (``configured: false`` when never set: always open)."""
    return _view(_stored(session, ctx.tenant_id, None), tenant_timezone(session, ctx.tenant_id))


def _division(session: Session, ctx: Ctx, division_id: uuid.UUID, *, lock: bool = False) -> None:
    query = select(Division.id).where(
        Division.tenant_id == ctx.tenant_id, Division.id == division_id
    )
    # NOTE: FOR NO KEY UPDATE, not FOR UPDATE: every insert naming the division (a resolve's
    # CSAT survey) takes FOR KEY SHARE on it, which FOR UPDATE conflicts with. Held while
    # the clocks were re-timed, it deadlocked with a resolve holding its clock and inserting
    # its survey. A change of the hours still queues behind another, and a deletion.
    if session.scalar(query.with_for_update(key_share=True) if lock else query) is None:
        raise NotFound("Division not found")


def get_division(session: Session, ctx: Ctx, division_id: uuid.UUID) -> dict[str, Any]:
    """The division's override, or the tenant's schedule with ``inherits_global: true``."""
    _division(session, ctx, division_id)
    timezone = tenant_timezone(session, ctx.tenant_id)
    override = _stored(session, ctx.tenant_id, division_id)
    if override is not None:
        view = _view(override, timezone) | {"inherits_global": False}
    else:
        view = _view(_stored(session, ctx.tenant_id, None), timezone) | {"inherits_global": True}
    return view | {"division_id": division_id}


# --- writing ------------------------------------------------------------------------------


def _upsert(
    session: Session, ctx: Ctx, division_id: uuid.UUID | None, schedule: dict[str, Any]
) -> tuple[Any, Any]:
    before = _stored(session, ctx.tenant_id, division_id)
    session.execute(
        insert(WorkingHours)
        .values(tenant_id=ctx.tenant_id, division_id=division_id, schedule=schedule)
        .on_conflict_do_update(
            index_elements=[
                WorkingHours.tenant_id,
                text(f"coalesce(division_id, '{_NO_DIVISION}'::uuid)"),
            ],
            set_={"schedule": schedule, "updated_at": func.now()},
        )
    )
    return before, _stored(session, ctx.tenant_id, division_id)


def retime_sla_clocks(
    session: Session, tenant_id: uuid.UUID, division_id: uuid.UUID | None = None
) -> None:
    """Running business-hours SLA clocks were timed by the hours that applied until now:
    queue their re-time by the hours that apply now (``check_sla`` does it in batches,
    :func:`shared.timekeeping.sla.queue_retime`). With ``division_id`` only that
    division's conversations (its override changed).
    """
    from shared.timekeeping import sla

    sla.queue_retime(session, tenant_id, division_id=division_id)


def put_global(session: Session, ctx: Ctx, body: Mapping[str, Any]) -> dict[str, Any]:
    """Create or replace the tenant's schedule."""
    ctx.require(MANAGE)
    schedule = clean_schedule(body)
    before, after = _upsert(session, ctx, None, schedule)
    retime_sla_clocks(session, ctx.tenant_id)
    activity.record(
        session,
        ctx,
        "working_hours.updated",
        "working_hours",
        None,
        before=before[0] if before else None,
        after=schedule,
    )
    return _view(after, tenant_timezone(session, ctx.tenant_id))


def put_division(
    session: Session, ctx: Ctx, division_id: uuid.UUID, body: Mapping[str, Any]
) -> dict[str, Any]:
    """Create or replace a division's override (it replaces the tenant's schedule there)."""
    ctx.require(MANAGE)
    _division(session, ctx, division_id, lock=True)
    schedule = clean_schedule(body)
    before, after = _upsert(session, ctx, division_id, schedule)
    retime_sla_clocks(session, ctx.tenant_id, division_id)
    activity.record(
        session,
        ctx,
        "working_hours.updated",
        "division",
        division_id,
        before=before[0] if before else None,
        after=schedule,
    )
    view = _view(after, tenant_timezone(session, ctx.tenant_id))
    return view | {"inherits_global": False, "division_id": division_id}


def delete_division(session: Session, ctx: Ctx, division_id: uuid.UUID) -> None:
    """Remove a division's override: it follows the tenant's schedule again."""
    ctx.require(MANAGE)
    _division(session, ctx, division_id, lock=True)
    removed = session.execute(
        delete(WorkingHours)
        .where(WorkingHours.tenant_id == ctx.tenant_id, WorkingHours.division_id == division_id)
        .returning(WorkingHours.schedule)
    ).scalar_one_or_none()
    if removed is None:
        raise NotFound("This division has no working hours override")
    retime_sla_clocks(session, ctx.tenant_id, division_id)
    activity.record(session, ctx, "working_hours.deleted", "division", division_id, before=removed)


def get_timezone(session: Session, ctx: Ctx) -> dict[str, Any]:
    return {"timezone": tenant_timezone(session, ctx.tenant_id)}


def put_timezone(session: Session, ctx: Ctx, timezone: str) -> dict[str, Any]:
    """Set the tenant's IANA timezone; every later computation reads it (nothing cached)."""
    ctx.require(MANAGE)
    problems = working_hours.validate_timezone(timezone)
    if problems:
        raise _problems_to_error(problems)
    # NOTE: FOR NO KEY UPDATE, not FOR UPDATE: every insert of a tenant-owned row takes
    # FOR KEY SHARE on the tenant, which FOR UPDATE conflicts with. Held while the clocks
    # were re-timed, it deadlocked with ``check_sla`` holding a clock and inserting its
    # breach. Two changes still queue on it (``shared.admin.tenants.get`` does the same).
    tenant = session.scalars(
        select(Tenant).where(Tenant.id == ctx.tenant_id).with_for_update(key_share=True)
    ).one()
    before = tenant.timezone
    if before != timezone:
        tenant.timezone = timezone
        session.flush()
        retime_sla_clocks(session, tenant.id)
        activity.record(
            session,
            ctx,
            "tenant.timezone_updated",
            "tenant",
            tenant.id,
            before={"timezone": before},
            after={"timezone": timezone},
        )
    return {"timezone": timezone}


# --- public -------------------------------------------------------------------------------


def public_status(
    session: Session,
    tenant_slug: str,
    division_id: uuid.UUID | None = None,
    *,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """``{is_open, timezone, now, next_change_at}`` for a tenant's public pages.

    An unknown or suspended tenant, or a division not of that tenant, is 404 alike.
    ``next_change_at`` is null when the state never changes (no hours set: always open).
    """
    tenant_id = session.scalar(
        select(Tenant.id).where(Tenant.slug == tenant_slug, Tenant.status == "active")
    )
    if tenant_id is None:
        raise NotFound("Tenant not found")
    if division_id is not None:
        found = session.scalar(
            select(Division.id).where(Division.tenant_id == tenant_id, Division.id == division_id)
        )
        if found is None:
            raise NotFound("Division not found")
    now = now or db_now(session)
    schedule, timezone = effective(session, tenant_id, division_id)
    if schedule is None:
        return {"is_open": True, "timezone": timezone, "now": now, "next_change_at": None}
    return {
        "is_open": working_hours.is_open(schedule, timezone, now),
        "timezone": timezone,
        "now": now,
        "next_change_at": working_hours.next_change(schedule, timezone, now),
    }
