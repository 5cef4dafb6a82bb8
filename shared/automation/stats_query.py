"""Reading the automation stats rollups: totals over a range and time series.

A range ``[from, to)`` (to the minute) is read from the coarsest buckets that tile it:
whole UTC days, then whole hours at its edges, then minutes (:func:`segments`), so a
30-day overview sums about 30 + 48 + 120 rows per rule however many runs there were.
p50/p95 are interpolated inside the summed latency histogram's bucket (exact to the
bucket bounds, mergeable across buckets and rules).

A *day* series counts days in the tenant's timezone (or the one asked for): each point
sums the hour buckets whose start falls on that local date, so days across a
daylight-saving change have 23 or 25 hours, and a change of the tenant's timezone
re-cuts every past day at once (nothing stored is keyed by it). In the few zones whose
offset is not a whole number of hours, an hour straddling local midnight counts for the
day it starts in.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, and_, cast, func, or_, select
from sqlalchemy.orm import Session

from shared.automation import clock
from shared.automation.control import VIEW
from shared.automation.rules import get_rule
from shared.automation.stats import KEEP_MINUTES
from shared.context import Ctx
from shared.errors import ValidationFailed
from shared.models import AutomationRule, Tenant
from shared.models.automation_stats import (
    ALL_RULES,
    LATENCY_BOUNDS_MS,
    LATENCY_COLUMNS,
    AutomationStats,
)

SIZES = {
    "minute": dt.timedelta(minutes=1),
    "hour": dt.timedelta(hours=1),
    "day": dt.timedelta(days=1),
}
DEFAULT_RANGE = dt.timedelta(hours=24)
MAX_RANGE = dt.timedelta(days=400)
MAX_POINTS = 1500
#: Rules the overview lists (most runs first).
MAX_RULES = 100
_S = AutomationStats
_SUMMED = ("runs", "matches", "skipped", "failures", "actions", "duration_ms_sum", *LATENCY_COLUMNS)


def floor(at: dt.datetime, granularity: str) -> dt.datetime:
    at = at.astimezone(dt.UTC)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity == "day":
        return day
    if granularity == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(second=0, microsecond=0)


def ceil(at: dt.datetime, granularity: str) -> dt.datetime:
    start = floor(at, granularity)
    return start if start == at else start + SIZES[granularity]


def segments(lo: dt.datetime, hi: dt.datetime) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """The buckets tiling ``[lo, hi)`` (minute-aligned): the coarsest that fit, edges finer."""
    for granularity in ("day", "hour"):
        a, b = ceil(lo, granularity), floor(hi, granularity)
        if a < b:
            return [*segments(lo, a), (granularity, a, b), *segments(b, hi)]
    return [("minute", lo, hi)] if lo < hi else []


def percentile(histogram: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0-1) of a latency histogram, interpolated in its bucket (ms)."""
    total = sum(histogram)
    if not total:
        return None
    target, seen = q * total, 0
    for index, count in enumerate(histogram):
        if count and seen + count >= target:
            low = LATENCY_BOUNDS_MS[index - 1] if index else 0.0
            if index == len(LATENCY_BOUNDS_MS):  # +Inf: the last finite bound is all we know
                return float(low)
            high = LATENCY_BOUNDS_MS[index]
            return round(low + (high - low) * (target - seen) / count, 3)
        seen += count
    return None  # pragma: no cover (the loop always reaches the target)


def figures(row: Any) -> dict[str, Any]:
    """The answer's figures from a row of summed counters (None sums count as zero)."""
    values = {name: float(getattr(row, name) or 0) for name in _SUMMED}
    runs = int(values["runs"])
    histogram = [int(values[c]) for c in LATENCY_COLUMNS]
    return {
        "runs": runs,
        "matches": int(values["matches"]),
        "skipped": int(values["skipped"]),
        "failures": int(values["failures"]),
        "actions_executed": int(values["actions"]),
        "failure_rate": round(values["failures"] / runs, 4) if runs else None,
        "avg_ms": round(values["duration_ms_sum"] / runs, 3) if runs else None,
        "p50_ms": percentile(histogram, 0.50),
        "p95_ms": percentile(histogram, 0.95),
    }


def _sums() -> list[Any]:
    return [func.sum(getattr(_S, name)).label(name) for name in _SUMMED]


def _covering(lo: dt.datetime, hi: dt.datetime) -> Any:
    return or_(
        *(
            and_(_S.granularity == g, _S.bucket_start >= a, _S.bucket_start < b)
            for g, a, b in segments(lo, hi)
        )
    )


def period(
    session: Session, start: dt.datetime | None, end: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    """``[from, to)`` widened to whole minutes (to whole hours where minute buckets are no
    longer kept); defaults: the last 24 hours."""
    now = clock.db_now(session)
    end = end or now
    start = start or end - DEFAULT_RANGE
    if start >= end:
        raise ValidationFailed.field("from", "must be before `to`")
    if end - start > MAX_RANGE:
        raise ValidationFailed.field("from", f"the range is at most {MAX_RANGE.days} days")
    kept_since = now - KEEP_MINUTES
    lo = floor(start, "minute" if start >= kept_since else "hour")
    hi = ceil(end, "minute" if end >= kept_since else "hour")
    return lo, hi


def span(start: dt.datetime, end: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` widened to whole minutes (the finest buckets)."""
    return floor(start, "minute"), ceil(end, "minute")


def totals(
    session: Session, tenant_id: uuid.UUID, lo: dt.datetime, hi: dt.datetime, rule_id: uuid.UUID
) -> dict[str, Any]:
    """The figures of one rule (or :data:`ALL_RULES`) over ``[lo, hi)``."""
    row = session.execute(
        select(*_sums()).where(_S.tenant_id == tenant_id, _S.rule_id == rule_id, _covering(lo, hi))
    ).one()
    return figures(row)


def _window(lo: dt.datetime, hi: dt.datetime) -> dict[str, dt.datetime]:
    return {"start": lo, "end": hi}


def overview(
    session: Session, ctx: Ctx, *, start: dt.datetime | None, end: dt.datetime | None
) -> dict[str, Any]:
    """Totals of every rule together and per rule (the busiest :data:`MAX_RULES`)."""
    ctx.require(VIEW)
    lo, hi = period(session, start, end)
    # NOTE: the totals row rides in the same statement (one snapshot): a roll-up
    # committing between two reads would make the rules disagree with the totals.
    is_total = (_S.rule_id == ALL_RULES).label("is_total")
    rows = session.execute(
        select(_S.rule_id, is_total, *_sums())
        .where(_S.tenant_id == ctx.tenant_id, _covering(lo, hi))
        .group_by(_S.rule_id)
        .order_by(is_total.desc(), func.sum(_S.runs).desc(), _S.rule_id)
        .limit(MAX_RULES + 1)
    ).all()
    total = next((row for row in rows if row.is_total), None)
    rows = [row for row in rows if not row.is_total][:MAX_RULES]
    names = dict(
        session.execute(
            select(AutomationRule.id, AutomationRule.name).where(
                AutomationRule.tenant_id == ctx.tenant_id,
                AutomationRule.id.in_([row.rule_id for row in rows]),
            )
        ).all()
    )
    return {
        **_window(lo, hi),
        "totals": figures(total if total is not None else _Zero(dict.fromkeys(_SUMMED, 0))),
        "rules": [
            {"rule_id": row.rule_id, "name": names.get(row.rule_id), **figures(row)} for row in rows
        ],
    }


def rule_stats(
    session: Session,
    ctx: Ctx,
    rule_id: uuid.UUID,
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> dict[str, Any]:
    """One rule's totals (404 for a rule not of the tenant)."""
    rule = get_rule(session, ctx, rule_id)
    lo, hi = period(session, start, end)
    return {
        **_window(lo, hi),
        "rule_id": rule.id,
        "name": rule.name,
        "totals": totals(session, ctx.tenant_id, lo, hi, rule.id),
    }


def _granularity(lo: dt.datetime, hi: dt.datetime, wanted: str | None) -> str:
    if wanted is not None:
        return wanted
    span = hi - lo
    if span <= dt.timedelta(hours=6):
        return "minute"
    return "hour" if span <= dt.timedelta(days=7) else "day"


def timeseries(
    session: Session,
    ctx: Ctx,
    *,
    rule_id: uuid.UUID | None = None,
    granularity: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    timezone: str | None = None,
) -> dict[str, Any]:
    """One point per bucket of ``[from, to)`` (empty buckets as zeros), all rules or one;
    days are local days of ``timezone`` (default: the tenant's)."""
    ctx.require(VIEW)
    if rule_id is not None:
        get_rule(session, ctx, rule_id)
    lo, hi = period(session, start, end)
    granularity = _granularity(lo, hi, granularity)
    if granularity == "day":
        zone = timezone or session.scalar(select(Tenant.timezone).where(Tenant.id == ctx.tenant_id))
        return _local_days(session, ctx, rule_id, lo, hi, ZoneInfo(zone or "UTC"))
    size = SIZES[granularity]
    lo, hi = floor(lo, granularity), ceil(hi, granularity)
    count = math.ceil((hi - lo) / size)
    if count > MAX_POINTS:
        raise ValidationFailed.field(
            "granularity", f"{count} {granularity} points; at most {MAX_POINTS}: a coarser one"
        )
    rows = session.execute(
        select(_S.bucket_start, *(getattr(_S, name) for name in _SUMMED)).where(
            _S.tenant_id == ctx.tenant_id,
            _S.rule_id == (rule_id or ALL_RULES),
            _S.granularity == granularity,
            _S.bucket_start >= lo,
            _S.bucket_start < hi,
        )
    ).all()
    found = {row.bucket_start: row for row in rows}
    empty = dict.fromkeys(_SUMMED, 0)
    points = []
    for index in range(count):
        at = lo + index * size
        row = found.get(at)
        points.append({"start": at, **figures(row if row is not None else _Zero(empty))})
    return {
        **_window(lo, hi),
        "rule_id": rule_id,
        "granularity": granularity,
        "timezone": "UTC",
        "points": points,
    }


def _midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """The UTC instant a local day starts (``fold=0``: the first midnight if it repeats)."""
    return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)


def _local_days(
    session: Session,
    ctx: Ctx,
    rule_id: uuid.UUID | None,
    lo: dt.datetime,
    hi: dt.datetime,
    zone: ZoneInfo,
) -> dict[str, Any]:
    """The day series in ``zone``: hour buckets summed by the local date they start on."""
    first = lo.astimezone(zone).date()
    last = (hi - dt.timedelta(microseconds=1)).astimezone(zone).date()
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    if len(days) > MAX_POINTS:
        raise ValidationFailed.field(
            "granularity", f"{len(days)} day points; at most {MAX_POINTS}: a shorter range"
        )
    lo = _midnight(first, zone)
    hi = _midnight(last + dt.timedelta(days=1), zone)
    local_date = cast(func.timezone(zone.key, _S.bucket_start), Date).label("local_date")
    rows = session.execute(
        select(local_date, *_sums())
        .where(
            _S.tenant_id == ctx.tenant_id,
            _S.rule_id == (rule_id or ALL_RULES),
            _S.granularity == "hour",
            _S.bucket_start >= floor(lo, "hour"),
            _S.bucket_start < ceil(hi, "hour"),
        )
        .group_by(local_date)
    ).all()
    found = {row.local_date: row for row in rows}
    empty = _Zero(dict.fromkeys(_SUMMED, 0))
    points = [{"start": _midnight(day, zone), **figures(found.get(day, empty))} for day in days]
    return {
        **_window(lo, hi),
        "rule_id": rule_id,
        "granularity": "day",
        "timezone": zone.key,
        "points": points,
    }


class _Zero:
    def __init__(self, values: dict[str, int]) -> None:
        self.__dict__.update(values)
