"""Operating rules without editing them: snooze, schedule, rollout, effective state.

Each change locks the rule, writes its column, bumps the tenant's rules version (so
every worker's compiled rules pick it up on their next event) and records an
activity row, in one transaction. None changes the rule's ``version``: what the rule
does when it runs is the same, only when and on which conversations it runs.
A snooze ends by itself: the evaluator compares ``snoozed_until`` with now.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared import activity
from shared.automation import clock
from shared.automation import control as global_control
from shared.automation import schedule as rule_schedule
from shared.automation.control import MANAGE, VIEW
from shared.automation.effective import Control, Gate, Moment, explain
from shared.automation.rules import bump_rules_version, get_rule, hold_rules
from shared.context import Ctx
from shared.errors import NotFound, ValidationFailed
from shared.models import AutomationRule, Conversation
from shared.pagination import Page, paginate
from shared.timekeeping.schedules import tenant_timezone

#: The longest snooze: further than this, switching the rule off says it better.
MAX_SNOOZE = dt.timedelta(days=366)
#: Most rules one bulk snooze takes.
MAX_BULK = 100


def _check_until(session: Session, until: dt.datetime, field: str = "until") -> dt.datetime:
    now = clock.db_now(session)
    if until <= now:
        raise ValidationFailed.field(field, "must be in the future")
    if until - now > MAX_SNOOZE:
        raise ValidationFailed.field(field, f"at most {MAX_SNOOZE.days} days ahead")
    return until.astimezone(dt.UTC)


def _changed(
    session: Session, ctx: Ctx, rule: AutomationRule, action: str, values: dict[str, Any]
) -> AutomationRule:
    """Write ``values`` on a locked rule, bump the rules version, audit; return it fresh."""
    before = {name: getattr(rule, name) for name in values}
    session.execute(
        update(AutomationRule)
        .where(AutomationRule.id == rule.id)
        .values(**values, updated_at=func.now())
        .execution_options(synchronize_session=False)
    )
    bump_rules_version(session, ctx.tenant_id)
    session.refresh(rule)
    activity.record(
        session,
        ctx,
        action,
        "automation_rule",
        rule.id,
        before=_plain(before),
        after=_plain({name: getattr(rule, name) for name in values}),
    )
    return rule


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in values.items()}


# --- snooze -------------------------------------------------------------------------------


def list_snoozed(
    session: Session, ctx: Ctx, *, limit: int, cursor: str | None = None
) -> Page[AutomationRule]:
    """Rules snoozed now (a snooze that has ended is not listed), newest first."""
    ctx.require(VIEW)
    r = AutomationRule
    query = select(r).where(r.tenant_id == ctx.tenant_id, r.snoozed_until > clock.db_now(session))
    return paginate(
        session, query, created_at=r.created_at, id_column=r.id, limit=limit, cursor=cursor
    )


def snooze(session: Session, ctx: Ctx, rule_id: uuid.UUID, until: dt.datetime) -> AutomationRule:
    """Snooze one rule until ``until`` (replacing an earlier snooze)."""
    ctx.require(MANAGE)
    until = _check_until(session, until)
    rule = get_rule(session, ctx, rule_id, for_update=True)
    return _changed(session, ctx, rule, "automation_rule.snoozed", {"snoozed_until": until})


def unsnooze(session: Session, ctx: Ctx, rule_id: uuid.UUID) -> AutomationRule:
    """End a rule's snooze now (a rule not snoozed is answered as it is)."""
    ctx.require(MANAGE)
    rule = get_rule(session, ctx, rule_id, for_update=True)
    if rule.snoozed_until is None:
        return rule
    # The snooze ended now (or when it ran out): a no_runs alert counts from then.
    resumed = min(rule.snoozed_until, clock.db_now(session))
    if resumed > rule.activated_at:
        session.execute(
            update(AutomationRule)
            .where(AutomationRule.id == rule.id)
            .values(activated_at=resumed)
            .execution_options(synchronize_session=False)
        )
    return _changed(session, ctx, rule, "automation_rule.unsnoozed", {"snoozed_until": None})


def snooze_many(
    session: Session, ctx: Ctx, rule_ids: list[uuid.UUID], until: dt.datetime
) -> dict[str, Any]:
    """Snooze several rules in one transaction; one result per id asked, in order.

    An id that is not one of the tenant's rules is ``not_found`` in the results; the
    others are snoozed all together (or, on any failure, none is).
    """
    ctx.require(MANAGE)
    until = _check_until(session, until)
    hold_rules(session, ctx.tenant_id)  # no evaluation in flight acts on them after this
    r = AutomationRule
    wanted = list(dict.fromkeys(rule_ids))
    # NOTE: locked in id order, so two bulk snoozes over the same rules cannot deadlock.
    rules = session.scalars(
        select(r)
        .where(r.tenant_id == ctx.tenant_id, r.id.in_(wanted))
        .order_by(r.id)
        .with_for_update()
    ).all()
    found = {rule.id: rule for rule in rules}
    if found:
        session.execute(
            update(r)
            .where(r.tenant_id == ctx.tenant_id, r.id.in_(list(found)))
            .values(snoozed_until=until, updated_at=func.now())
            .execution_options(synchronize_session=False)
        )
        bump_rules_version(session, ctx.tenant_id)
    results = []
    for rule_id in wanted:
        rule = found.get(rule_id)
        if rule is None:
            results.append({"rule_id": rule_id, "status": "not_found", "snoozed_until": None})
            continue
        activity.record(
            session,
            ctx,
            "automation_rule.snoozed",
            "automation_rule",
            rule_id,
            before=_plain({"snoozed_until": rule.snoozed_until}),
            after=_plain({"snoozed_until": until}),
        )
        results.append({"rule_id": rule_id, "status": "snoozed", "snoozed_until": until})
    return {
        "until": until,
        "snoozed": len(found),
        "not_found": len(wanted) - len(found),
        "results": results,
    }


# --- schedule and rollout -----------------------------------------------------------------


def update_schedule(
    session: Session, ctx: Ctx, rule_id: uuid.UUID, changes: dict[str, Any]
) -> AutomationRule:
    """Change the fields sent of the rule's schedule (see :mod:`shared.automation.schedule`)."""
    ctx.require(MANAGE)
    rule = get_rule(session, ctx, rule_id, for_update=True)
    cleaned = rule_schedule.clean(rule.schedule, changes)
    return _changed(session, ctx, rule, "automation_rule.schedule_updated", {"schedule": cleaned})


def update_rollout(
    session: Session, ctx: Ctx, rule_id: uuid.UUID, percentage: int
) -> AutomationRule:
    """Run the rule on ``percentage`` % of conversations (0-100, by hash: see ``rollout``)."""
    ctx.require(MANAGE)
    if not 0 <= percentage <= 100:
        raise ValidationFailed.field("rollout_percentage", "0 to 100")
    rule = get_rule(session, ctx, rule_id, for_update=True)
    if rule.rollout_percentage == 0 and percentage > 0:
        # It runs on conversations again from now: a no_runs alert counts from then.
        session.execute(
            update(AutomationRule)
            .where(AutomationRule.id == rule.id)
            .values(activated_at=clock.db_now(session))
            .execution_options(synchronize_session=False)
        )
    return _changed(
        session, ctx, rule, "automation_rule.rollout_updated", {"rollout_percentage": percentage}
    )


# --- reading ------------------------------------------------------------------------------


def _moment(
    session: Session,
    ctx: Ctx,
    *,
    event_type: str | None = None,
    subject_id: uuid.UUID | None = None,
) -> Moment:
    """What the checks need beyond the rule, read as the evaluator reads it."""
    return Moment(
        now=clock.db_now(session),
        tenant_timezone=tenant_timezone(session, ctx.tenant_id),
        control=Control.of(global_control.stored(session, ctx.tenant_id)),
        event_type=event_type,
        subject_id=subject_id,
    )


def effective_state(
    session: Session,
    ctx: Ctx,
    rule_id: uuid.UUID,
    *,
    event_type: str | None = None,
    conversation_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Whether the rule runs now (for an event type, on a conversation), and why not."""
    ctx.require(VIEW)
    rule = get_rule(session, ctx, rule_id)
    if event_type is not None and event_type not in rule.trigger_event_types:
        raise ValidationFailed.field("event_type", f"the rule is not triggered by '{event_type}'")
    if conversation_id is not None:
        found = session.scalar(
            select(Conversation.id).where(
                Conversation.tenant_id == ctx.tenant_id, Conversation.id == conversation_id
            )
        )
        if found is None:
            raise NotFound("Conversation not found")
    moment = _moment(session, ctx, event_type=event_type, subject_id=conversation_id)
    state = explain(
        rule.id, Gate.of(rule), moment, trigger_event_types=list(rule.trigger_event_types)
    )
    return {
        "rule_id": rule.id,
        "event_type": event_type,
        "conversation_id": conversation_id,
        "snoozed_until": rule.snoozed_until,
        "rollout_percentage": rule.rollout_percentage,
        "schedule": rule.schedule,
        **state,
    }


def preview_schedule(
    session: Session, ctx: Ctx, rule_id: uuid.UUID, *, count: int
) -> dict[str, Any]:
    """The next ``count`` windows of the rule's schedule, as the evaluator will apply them."""
    ctx.require(VIEW)
    rule = get_rule(session, ctx, rule_id)
    moment = _moment(session, ctx)
    prepared = rule_schedule.RuleSchedule.of(rule.schedule)
    if prepared is None:  # no schedule (or disabled): one window, open now and for good
        timezone = moment.tenant_timezone
        windows = [
            {
                "start": moment.now,
                "end": None,
                "start_local": moment.now.astimezone(ZoneInfo(timezone)).isoformat(),
                "end_local": None,
            }
        ]
        inside = True
    else:
        timezone = prepared.zone_name(moment.tenant_timezone)
        windows = rule_schedule.upcoming_windows(
            prepared, moment.tenant_timezone, moment.now, count
        )
        inside = moment.inside(prepared)
    return {
        "rule_id": rule.id,
        "at": moment.now,
        "timezone": timezone,
        "scheduled": prepared is not None,
        "inside_now": inside,
        "schedule": rule.schedule,
        "windows": windows,
    }
