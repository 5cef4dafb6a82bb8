"""Usage reports: replies, tokens and cost per AI agent and day, read from ``ai_usage_daily``.

The reply path adds to those rows as it works (``shared/ai/usage.py``); this module only
reads them. Days are UTC days, as the rows are kept. A day without a row is a day
without work, so an agent's report is zero-filled: one entry per day of the range.
Ranges are inclusive, ``from`` <= ``to`` and at most :data:`MAX_DAYS` long (422
otherwise); without them the report covers the last 30 days up to today.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.ai import agents
from shared.context import Ctx
from shared.errors import ValidationFailed
from shared.models import AiAgent, AiUsageDaily
from shared.time_bounds import parse_day

#: Longest range one report covers (a year and a leap day).
MAX_DAYS = 366
DEFAULT_DAYS = 30
COUNTERS = ("replies", "test_replies", "handoffs", "prompt_tokens", "completion_tokens", "cost")


def resolve_range(from_: str | None, to: str | None) -> tuple[dt.date, dt.date]:
    """The inclusive range to report, defaults filled, or a 422 naming the bad bound.

    ``from_`` and ``to`` are as the client sent them: ``YYYY-MM-DD``, read by
    :func:`shared.time_bounds.parse_day` as every date-only parameter is.
    """
    start, end = parse_day(from_, "from"), parse_day(to, "to")
    span = dt.timedelta(days=DEFAULT_DAYS - 1)
    if end is None:
        end = start + span if start else dt.datetime.now(dt.UTC).date()
    if start is None:
        start = end - span
    if start > end:
        raise ValidationFailed.field("from", "must not be after 'to'")
    if (end - start).days + 1 > MAX_DAYS:
        raise ValidationFailed.field("to", f"a range covers at most {MAX_DAYS} days")
    return start, end


def _zero() -> dict[str, Any]:
    return {name: 0 for name in COUNTERS} | {"cost": decimal.Decimal(0)}


def _sums():
    u = AiUsageDaily
    return (
        func.coalesce(func.sum(u.replies), 0).label("replies"),
        func.coalesce(func.sum(u.test_replies), 0).label("test_replies"),
        func.coalesce(func.sum(u.handoffs), 0).label("handoffs"),
        func.coalesce(func.sum(u.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(u.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(u.cost), 0).label("cost"),
    )


def agent_usage(
    session: Session,
    ctx: Ctx,
    agent_id: uuid.UUID,
    *,
    start: str | None = None,
    end: str | None = None,
) -> dict[str, Any]:
    """One agent's days (zero-filled, oldest first) and totals; 404 for another tenant's."""
    agents.get_agent(session, ctx, agent_id)
    start, end = resolve_range(start, end)
    u = AiUsageDaily
    rows = session.execute(
        select(u.day, *(getattr(u, name) for name in COUNTERS)).where(
            u.tenant_id == ctx.tenant_id,
            u.ai_agent_id == agent_id,
            u.day >= start,
            u.day <= end,
        )
    )
    by_day = {row.day: {name: getattr(row, name) for name in COUNTERS} for row in rows}
    days, totals = [], _zero()
    for offset in range((end - start).days + 1):
        day = start + dt.timedelta(days=offset)
        counts = by_day.get(day) or _zero()
        days.append({"day": day, **counts})
        for name in COUNTERS:
            totals[name] += counts[name]
    return {
        "ai_agent_id": agent_id,
        "from_date": start,
        "to_date": end,
        "days": days,
        "totals": totals,
    }


def usage_summary(
    session: Session, ctx: Ctx, *, start: str | None = None, end: str | None = None
) -> dict[str, Any]:
    """Every AI agent's totals over the range (agents without usage show zeros), and the sum."""
    ctx.require(agents.VIEW)
    start, end = resolve_range(start, end)
    u = AiUsageDaily
    per_agent = (
        select(u.ai_agent_id, *_sums())
        .where(u.tenant_id == ctx.tenant_id, u.day >= start, u.day <= end)
        .group_by(u.ai_agent_id)
        .subquery()
    )
    rows = session.execute(
        select(AiAgent.id, AiAgent.name, *(getattr(per_agent.c, name) for name in COUNTERS))
        .outerjoin(per_agent, per_agent.c.ai_agent_id == AiAgent.id)
        .where(AiAgent.tenant_id == ctx.tenant_id)
        .order_by(AiAgent.name, AiAgent.id)
    )
    items, totals = [], _zero()
    for row in rows:
        counts = {name: getattr(row, name) or 0 for name in COUNTERS}
        items.append({"ai_agent_id": row.id, "name": row.name, **counts})
        for name in COUNTERS:
            totals[name] += counts[name]
    return {"from_date": start, "to_date": end, "totals": totals, "agents": items}
