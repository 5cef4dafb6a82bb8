"""Automation alerts: per-rule thresholds checked by the scheduler against the stats rollups.

A rule's ``alert_settings`` may hold, each optional:

- ``failure_rate``: ``threshold_percent`` of the runs failed over the last
  ``window_minutes`` (with at least ``min_runs`` runs);
- ``no_runs``: no run for ``period_minutes`` (an active, unsnoozed rule that has been
  running that long: since it was created or switched back on, its snooze ended or
  the global control let it run again or its rollout rose from 0 %, and inside its
  schedule's windows throughout; not while the control pauses it, nor at 0 % rollout);
- ``latency``: p95 evaluation time above ``p95_ms`` over the last ``window_minutes``
  (with at least ``min_runs`` runs).

``evaluate_automation_alerts`` (:func:`evaluate`) reads the rollups, never the runs. An
alert *fires once per incident*: the first check that finds the condition inserts an
``open`` row (a partial unique index allows one open row per rule and kind) and emits
``automation.alert_triggered`` in the same transaction (outbox); later checks that still
find it change nothing. The first check that finds it cleared marks it ``resolved``; a
new crossing after that is a new incident.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.automation import clock, stats_query
from shared.automation import schedule as rule_schedule
from shared.automation.control import MANAGE, VIEW
from shared.automation.operations import _changed
from shared.automation.rules import get_rule
from shared.context import Ctx
from shared.events import Actor, emit
from shared.models import AutomationAlert, AutomationRule, AutomationSettings, Tenant

KINDS = ("failure_rate", "no_runs", "latency")
#: Rules read per page by the check (every page is checked in the same run).
CHECK_BATCH = 5_000
_A = AutomationAlert


# --- settings -----------------------------------------------------------------------------


def update_settings(
    session: Session, ctx: Ctx, rule_id: uuid.UUID, changes: dict[str, Any]
) -> AutomationRule:
    """Set (an object) or clear (null) each kind sent; the others are kept."""
    ctx.require(MANAGE)
    rule = get_rule(session, ctx, rule_id, for_update=True)
    current = dict(rule.alert_settings or {})
    for kind, value in changes.items():
        if value is None:
            current.pop(kind, None)
        else:
            current[kind] = value
    return _changed(
        session, ctx, rule, "automation_rule.alerts_updated", {"alert_settings": current or None}
    )


# --- the check ----------------------------------------------------------------------------


def _measure(
    session: Session, rule: Any, kind: str, settings: dict[str, Any], now: dt.datetime
) -> tuple[bool, float | None, float, dict[str, Any]]:
    """(firing, observed, threshold, details) of one configured kind of one rule."""
    if kind == "no_runs":
        minutes = settings["period_minutes"]
        since = now - dt.timedelta(minutes=minutes)
        figures = stats_query.totals(
            session, rule.tenant_id, *stats_query.span(since, now), rule.id
        )
        snoozed = rule.snoozed_until
        watched = (
            rule.is_active
            and (snoozed is None or snoozed <= now)
            and _running_since(rule) <= since
            and _scheduled_throughout(rule, since, now)
            and not _held(rule)
            and _rolled_out(rule)
        )
        details = {"period_minutes": minutes, "runs": figures["runs"]}
        return watched and figures["runs"] == 0, float(figures["runs"]), float(minutes), details
    minutes = settings["window_minutes"]
    since = now - dt.timedelta(minutes=minutes)
    figures = stats_query.totals(session, rule.tenant_id, *stats_query.span(since, now), rule.id)
    details = {"window_minutes": minutes, "runs": figures["runs"]}
    enough = figures["runs"] >= settings.get("min_runs", 1)
    if kind == "failure_rate":
        # NOTE: from the counts, not the answer's rounded ``failure_rate`` (2 of 3 runs
        # rounds to 66.67 %, which is not 66.67 % or more).
        runs = figures["runs"]
        rate = figures["failures"] * 100 / runs if runs else None
        threshold = float(settings["threshold_percent"])
        details["failures"] = figures["failures"]
        return enough and rate is not None and rate >= threshold, rate, threshold, details
    p95, threshold = figures["p95_ms"], float(settings["p95_ms"])
    return enough and p95 is not None and p95 > threshold, p95, threshold, details


def _running_since(rule: Any) -> dt.datetime:
    """Since when the rule could have run: (re)activated, or its snooze ended; a silence
    before that is not the rule's (it was off)."""
    snoozed = rule.snoozed_until
    return max(rule.activated_at, snoozed) if snoozed is not None else rule.activated_at


def _rolled_out(rule: Any) -> bool:
    """Whether the rule runs on any conversation: at 0 % rollout it runs on none by design,
    so its silence is not a fault."""
    return rule.rollout_percentage > 0


def _held(rule: Any) -> bool:
    """Whether the tenant's control pauses every event type the rule is triggered by (its
    events wait unevaluated: no run is the pause's doing, not the rule's)."""
    if rule.paused:
        return True
    paused = set(rule.paused_event_types or ())
    return bool(paused) and paused.issuperset(rule.trigger_event_types)


def _scheduled_throughout(rule: Any, since: dt.datetime, now: dt.datetime) -> bool:
    """Whether the rule's schedule (if any) let it run for the whole of ``[since, now]``:
    a rule outside its windows cannot run, so its silence there is not a fault."""
    prepared = rule_schedule.RuleSchedule.of(rule.schedule)
    if prepared is None:
        return True
    timezone = rule.tenant_timezone or "UTC"
    if not prepared.is_open(timezone, since):
        return False
    change = prepared.next_change(timezone, since)
    return change is None or change > now


def _event_data(alert: Any, rule_name: str | None) -> dict[str, Any]:
    return {
        "alert_id": str(alert.id),
        "rule_id": str(alert.rule_id),
        "rule_name": rule_name,
        "kind": alert.kind,
        "observed": alert.observed,
        "threshold": alert.threshold,
        "details": alert.details,
        "triggered_at": alert.triggered_at.isoformat(),
    }


_RETURNED = (_A.id, _A.rule_id, _A.kind, _A.observed, _A.threshold, _A.details, _A.triggered_at)


def _open(session: Session, rule: Any, kind: str, measured: tuple, now: dt.datetime) -> bool:
    """Record a new incident and emit its event; False when one is open already."""
    _, observed, threshold, details = measured
    row = session.execute(
        insert(_A)
        .values(
            id=uuid.uuid4(),
            tenant_id=rule.tenant_id,
            rule_id=rule.id,
            kind=kind,
            status="open",
            triggered_at=now,
            observed=observed,
            threshold=threshold,
            details=details,
        )
        .on_conflict_do_nothing(
            index_elements=["rule_id", "kind"], index_where=text("status = 'open'")
        )
        .returning(
            _A.id, _A.rule_id, _A.kind, _A.observed, _A.threshold, _A.details, _A.triggered_at
        )
    ).one_or_none()
    if row is None:
        return False
    emit(
        session,
        "automation.alert_triggered",
        _event_data(row, rule.name),
        tenant_id=rule.tenant_id,
        actor=Actor.system(),
    )
    return True


def _resolve(session: Session, rule_id: uuid.UUID, kinds: list[str], now: dt.datetime) -> int:
    if not kinds:
        return 0
    return session.execute(
        update(_A)
        .where(_A.rule_id == rule_id, _A.kind.in_(kinds), _A.status == "open")
        .values(status="resolved", resolved_at=now)
    ).rowcount


def _resolve_orphans(session: Session, now: dt.datetime) -> int:
    """Resolve the open alerts of deleted rules: no check finds them again (and no foreign
    key removes them), so they would stay open for good."""
    rule = select(AutomationRule.id).where(AutomationRule.id == _A.rule_id)
    return session.execute(
        update(_A)
        .where(_A.status == "open", ~rule.exists())
        .values(status="resolved", resolved_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount


def _rules_to_check(session: Session) -> Iterator[Any]:
    """Rules with alert settings (or an open alert) of the active tenants, in keyset pages."""
    r = AutomationRule
    with_open = select(_A.rule_id).where(_A.status == "open")
    after: tuple[uuid.UUID, uuid.UUID] | None = None
    while True:
        query = (
            select(
                r.id,
                r.tenant_id,
                r.name,
                r.is_active,
                r.snoozed_until,
                r.activated_at,
                r.schedule,
                r.trigger_event_types,
                r.rollout_percentage,
                Tenant.timezone.label("tenant_timezone"),
                AutomationSettings.paused,
                AutomationSettings.paused_event_types,
                r.alert_settings,
            )
            .join(Tenant, Tenant.id == r.tenant_id)
            .outerjoin(AutomationSettings, AutomationSettings.tenant_id == r.tenant_id)
            .where(
                Tenant.status == "active",
                or_(r.alert_settings.is_not(None), r.id.in_(with_open)),
            )
            .order_by(r.tenant_id, r.id)
            .limit(CHECK_BATCH)
        )
        if after is not None:
            query = query.where(tuple_(r.tenant_id, r.id) > tuple_(*after))
        rules = session.execute(query).all()
        yield from rules
        if len(rules) < CHECK_BATCH:
            return
        after = (rules[-1].tenant_id, rules[-1].id)


def evaluate(session: Session, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Check every rule with alert settings (or an open alert) of the active tenants;
    resolve the open alerts of deleted rules."""
    now = now or clock.db_now(session)
    counts = {"checked": 0, "triggered": 0, "resolved": 0}
    for rule in _rules_to_check(session):
        settings = rule.alert_settings or {}
        cleared = [kind for kind in KINDS if kind not in settings]
        for kind in KINDS:
            if kind not in settings:
                continue
            counts["checked"] += 1
            measured = _measure(session, rule, kind, settings[kind], now)
            if measured[0]:
                counts["triggered"] += _open(session, rule, kind, measured, now)
            else:
                cleared.append(kind)
        counts["resolved"] += _resolve(session, rule.id, cleared, now)
    counts["resolved"] += _resolve_orphans(session, now)
    return counts


# --- alert stats --------------------------------------------------------------------------


def alert_stats(
    session: Session,
    ctx: Ctx,
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    rule_id: uuid.UUID | None = None,
    status: str | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """Incidents triggered in ``[from, to)`` (newest first), counts by kind and status, and
    how many are open now."""
    ctx.require(VIEW)
    lo, hi = stats_query.period(session, start, end)
    scope = [_A.tenant_id == ctx.tenant_id]
    if rule_id is not None:
        scope.append(_A.rule_id == rule_id)
    in_range = [*scope, _A.triggered_at >= lo, _A.triggered_at < hi]
    if status is not None:
        in_range.append(_A.status == status)
    counts = session.execute(
        select(_A.kind, _A.status, func.count()).where(*in_range).group_by(_A.kind, _A.status)
    ).all()
    open_now = session.scalar(select(func.count()).where(*scope, _A.status == "open"))
    rows = session.execute(
        select(_A, AutomationRule.name)
        .outerjoin(
            AutomationRule,
            (AutomationRule.id == _A.rule_id) & (AutomationRule.tenant_id == _A.tenant_id),
        )
        .where(*in_range)
        .order_by(_A.triggered_at.desc(), _A.id.desc())
        .limit(limit)
    ).all()
    by_kind = dict.fromkeys(KINDS, 0)
    by_status = {"open": 0, "resolved": 0}
    for kind, state, count in counts:
        by_kind[kind] = by_kind.get(kind, 0) + count
        by_status[state] = by_status.get(state, 0) + count
    return {
        "start": lo,
        "end": hi,
        "open_now": open_now,
        "triggered": sum(by_kind.values()),
        "by_kind": by_kind,
        "by_status": by_status,
        "items": [
            {
                "id": alert.id,
                "rule_id": alert.rule_id,
                "rule_name": name,
                "kind": alert.kind,
                "status": alert.status,
                "triggered_at": alert.triggered_at,
                "resolved_at": alert.resolved_at,
                "observed": alert.observed,
                "threshold": alert.threshold,
                "details": alert.details,
            }
            for alert, name in rows
        ],
    }
