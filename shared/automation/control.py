"""The global automation control of a tenant, and the events that wait while it pauses them.

``PATCH /api/automation/control`` pauses everything, pauses chosen event types, or
sets a ceiling on action executions per minute. The evaluator reads the control with
the rules version, in the round trip it already makes per event, so a change applies
to the very next event any worker takes (well within a second), with no cache to go
stale.

While paused, events are queued as usual but not evaluated (API.md): the evaluator
*holds* each one, ``pending`` with ``sweep_at`` at :data:`HELD_SWEEP_AT` (the sweeper
never reaches it) and the reason in ``error``. When the control allows them again,
the update releases them in its own transaction and they are evaluated after commit.

NOTE: race-free by a lock on the settings row. :func:`hold` re-reads the control
``FOR SHARE`` and holds only if it still pauses; an update locks the row first and
releases held rows in a later statement. Either the hold commits first (the release
then sees it) or it waits for the update and sees the new control (it re-enqueues).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared import activity
from shared.automation import ceiling, clock, queue
from shared.automation.effective import Control
from shared.context import Ctx
from shared.db import session_scope
from shared.errors import ValidationFailed
from shared.event_types import CATALOGUE
from shared.models import AutomationEvent, AutomationRule, AutomationSettings

VIEW = "automation.view"
MANAGE = "automation.manage"
#: The ``sweep_at`` of a held event: far enough that no sweep reaches it, yet a plain
#: timestamp (Python's datetime cannot hold PostgreSQL's ``infinity``).
HELD_SWEEP_AT = dt.datetime(2999, 1, 1, tzinfo=dt.UTC)
_FIELDS = ("paused", "paused_event_types", "max_actions_per_minute", "pause_reason")
_S = AutomationSettings


def stored(session: Session, tenant_id: uuid.UUID, *, lock: bool = False) -> Any:
    query = select(
        _S.paused,
        _S.paused_event_types,
        _S.max_actions_per_minute,
        _S.pause_reason,
        _S.control_updated_at,
        _S.control_updated_by,
    ).where(_S.tenant_id == tenant_id)
    return session.execute(query.with_for_update() if lock else query).one_or_none()


def _held_count(session: Session, tenant_id: uuid.UUID) -> int:
    return session.scalar(
        select(func.count()).where(
            AutomationEvent.tenant_id == tenant_id,
            AutomationEvent.status == "pending",
            AutomationEvent.sweep_at == HELD_SWEEP_AT,
        )
    )


def _view(session: Session, tenant_id: uuid.UUID, row: Any) -> dict[str, Any]:
    control = Control.of(row)
    return {
        "enabled": not control.paused,
        "paused_event_types": sorted(control.paused_event_types),
        "max_actions_per_minute": control.max_actions_per_minute,
        "pause_reason": control.pause_reason,
        "updated_at": row.control_updated_at if row is not None else None,
        "updated_by": row.control_updated_by if row is not None else None,
        "held_events": _held_count(session, tenant_id),
        "actions_this_minute": ceiling.used(tenant_id, clock.db_now(session)),
    }


def get_control(session: Session, ctx: Ctx) -> dict[str, Any]:
    """The tenant's control (a tenant that never set it: enabled, no ceiling)."""
    ctx.require(VIEW)
    return _view(session, ctx.tenant_id, stored(session, ctx.tenant_id))


def _type_problems(types: list[str]) -> list[dict[str, Any]]:
    problems = []
    for i, name in enumerate(types):
        known = CATALOGUE.get(name)
        if known is None or not known.automation:
            problems.append(
                {
                    "field": f"paused_event_types[{i}]",
                    "message": f"'{name}' is not an event type that triggers rules",
                    "code": "unknown" if known is None else "not_triggerable",
                }
            )
    return problems


def update_control(session: Session, ctx: Ctx, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply the fields sent; audit the change; release events the control no longer holds.

    ``changes`` may hold ``enabled``, ``paused_event_types``, ``max_actions_per_minute``
    (None: no ceiling) and ``pause_reason``.
    """
    ctx.require(MANAGE)
    types = changes.get("paused_event_types")
    if types is not None:
        problems = _type_problems(types)
        if problems:
            raise ValidationFailed(
                f"{problems[0]['field']}: {problems[0]['message']}", details=problems
            )
    values: dict[str, Any] = {}
    if "enabled" in changes:
        values["paused"] = not changes["enabled"]
    if types is not None:
        values["paused_event_types"] = sorted(set(types))
    for name in ("max_actions_per_minute", "pause_reason"):
        if name in changes:
            values[name] = changes[name]
    if "enabled" in changes or types is not None:
        _lock_active_rules(session, ctx.tenant_id)
    # NOTE: the upsert locks the settings row before anything else but the rules a resume
    # marks (see the module note and _lock_active_rules).
    session.execute(
        insert(_S)
        .values(tenant_id=ctx.tenant_id)
        .on_conflict_do_nothing(index_elements=[_S.tenant_id])
    )
    before = stored(session, ctx.tenant_id, lock=True)
    session.execute(
        update(_S)
        .where(_S.tenant_id == ctx.tenant_id)
        .values(**values, control_updated_at=func.now(), control_updated_by=ctx.user_id)
    )
    after = stored(session, ctx.tenant_id)
    activity.record(
        session,
        ctx,
        "automation_control.updated",
        "automation_control",
        None,
        before=_audit(before),
        after=_audit(after),
    )
    release(session, ctx.tenant_id, Control.of(after))
    _resumed(session, ctx.tenant_id, Control.of(before), Control.of(after))
    return _view(session, ctx.tenant_id, after)


def _lock_active_rules(session: Session, tenant_id: uuid.UUID) -> None:
    """Lock the tenant's active rules (id order), which :func:`_resumed` may change.

    NOTE: lock order rules, then the settings row, as every rule change takes them (the
    rule, then the rules version's bump). Locked after the settings row, a resume waited
    for a rule being changed while that change waited for the settings row: a deadlock.
    A rule switched on meanwhile is not matched by :func:`_resumed` (its committed row is
    inactive) and sets its own ``activated_at``.
    """
    r = AutomationRule
    session.execute(
        select(r.id)
        .where(r.tenant_id == tenant_id, r.is_active.is_(True))
        .order_by(r.id)
        .with_for_update(key_share=True)
    ).all()


def _resumed(session: Session, tenant_id: uuid.UUID, before: Control, after: Control) -> None:
    """Mark the rules the change lets run again as (re)activated now: a ``no_runs`` alert
    counts their silence from here, not through the pause (they could not run)."""
    if after.paused or not (before.paused or before.paused_event_types):
        return
    r = AutomationRule
    query = update(r).where(r.tenant_id == tenant_id, r.is_active.is_(True))
    if not before.paused:  # only the rules all of whose trigger types were paused
        query = query.where(r.trigger_event_types.contained_by(sorted(before.paused_event_types)))
        if after.paused_event_types:
            query = query.where(
                ~r.trigger_event_types.contained_by(sorted(after.paused_event_types))
            )
    now = clock.db_now(session)
    session.execute(
        query.where(r.activated_at < now)
        .values(activated_at=now)
        .execution_options(synchronize_session=False)
    )


def _audit(row: Any) -> dict[str, Any]:
    return {
        "enabled": not row.paused,
        "paused_event_types": list(row.paused_event_types or []),
        "max_actions_per_minute": row.max_actions_per_minute,
        "pause_reason": row.pause_reason,
    }


def release(session: Session, tenant_id: uuid.UUID, control: Control) -> int:
    """Send held events that ``control`` lets run again (after commit); return how many."""
    if control.paused:
        return 0
    e = AutomationEvent
    query = (
        update(e)
        .where(e.tenant_id == tenant_id, e.status == "pending", e.sweep_at == HELD_SWEEP_AT)
        .values(sweep_at=queue.sweep_delay(), error=None)
        .returning(e.id)
        .execution_options(synchronize_session=False)
    )
    if control.paused_event_types:
        query = query.where(e.event_type.not_in(sorted(control.paused_event_types)))
    ids = list(session.scalars(query))
    queue.enqueue_after_commit(session, ids)
    return len(ids)


def hold(event_id: uuid.UUID, tenant_id: uuid.UUID, event_type: str) -> str:
    """Park a claimed event the control pauses (``held``), or send it again if the control
    changed meanwhile (``released``). Its claim does not count as an attempt."""
    with session_scope() as session:
        row = session.execute(
            select(_S.paused, _S.paused_event_types, _S.max_actions_per_minute, _S.pause_reason)
            .where(_S.tenant_id == tenant_id)
            .with_for_update(read=True)
        ).one_or_none()
        reason = Control.of(row).blocks(event_type)
        values: dict[str, Any] = {"status": "pending", "attempts": AutomationEvent.attempts - 1}
        if reason is not None:
            values.update(sweep_at=HELD_SWEEP_AT, error=f"held: {reason}")
        else:
            values.update(sweep_at=queue.sweep_delay(), error=None)
        session.execute(
            update(AutomationEvent)
            .where(AutomationEvent.id == event_id, AutomationEvent.status == "processing")
            .values(**values)
        )
        if reason is None:
            queue.enqueue_after_commit(session, [event_id])
    return "held" if reason is not None else "released"
