"""``GET /api/csat-surveys/analytics``: the ``/api/analytics/csat`` shape, from the surveys.

The analytics rollup has no division or channel, so this report filters the survey
rows themselves (each carries the agent, division and channel it was sent under).
Like the rollup, a survey counts on its sending day and a rating on its rating day,
both in the tenant's timezone; ``from`` and ``to`` are local dates, both included.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from shared.analytics.local_time import tenant_zone, today
from shared.context import Ctx
from shared.errors import ValidationFailed
from shared.models import CsatSurvey, User
from shared.time_bounds import parse_day

DEFAULT_DAYS = 30
MAX_DAYS = 366


def _range(
    session: Session, ctx: Ctx, start: str | None, end: str | None
) -> tuple[dt.date, dt.date, dt.datetime, dt.datetime]:
    tz = tenant_zone(session, ctx.tenant_id)
    first, last = parse_day(start, "from"), parse_day(end, "to")
    last = last or today(tz)
    first = first or last - dt.timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise ValidationFailed.field("from", "must not be after 'to'")
    if (last - first).days >= MAX_DAYS:
        raise ValidationFailed.field("from", f"the range is at most {MAX_DAYS} days")
    lo = dt.datetime.combine(first, dt.time(), tzinfo=tz)
    hi = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    return first, last, lo, hi


def _average(total: int, count: int) -> float:
    return round(total / count, 2) if count else 0.0


def report(
    session: Session,
    ctx: Ctx,
    *,
    first: str | None = None,
    last: str | None = None,
    agent_id: uuid.UUID | None = None,
    division_id: uuid.UUID | None = None,
    channel: str | None = None,
) -> dict[str, Any]:
    first, last, lo, hi = _range(session, ctx, first, last)
    s = CsatSurvey
    sent = and_(s.sent_at >= lo, s.sent_at < hi)
    rated = and_(s.rated_at >= lo, s.rated_at < hi)
    where = [s.tenant_id == ctx.tenant_id, or_(sent, rated)]
    if agent_id is not None:
        where.append(s.agent_id == agent_id)
    if division_id is not None:
        where.append(s.division_id == division_id)
    if channel is not None:
        where.append(s.channel == channel)
    surveys = func.count().filter(sent)
    rated_count = func.count().filter(rated)
    rating_sum = func.coalesce(func.sum(s.rating).filter(rated), 0)
    summary_row = session.execute(
        select(
            surveys,
            rated_count,
            rating_sum,
            *(func.count().filter(rated, s.rating == n) for n in range(1, 6)),
        ).where(*where)
    ).one()
    n_surveys, n_rated, total, *ratings = (int(v) for v in summary_row)
    summary = {
        "total_surveys": n_surveys,
        "rated_count": n_rated,
        "average_rating": _average(total, n_rated),
    } | {f"rating_{n}": ratings[n - 1] for n in range(1, 6)}
    name = func.coalesce(User.full_name, "")
    agents = session.execute(
        select(s.agent_id, name, surveys, rated_count, rating_sum)
        .outerjoin(User, and_(User.tenant_id == s.tenant_id, User.id == s.agent_id))
        .where(*where, s.agent_id.is_not(None))
        .group_by(s.agent_id, User.full_name)
        .order_by(name, s.agent_id)
    ).all()
    return {
        "period": f"{first.isoformat()}/{last.isoformat()}",
        "summary": summary,
        "agents": [
            {
                "agent_id": str(agent),
                "agent_name": agent_name,
                "total_surveys": int(a_surveys),
                "rated_count": int(a_rated),
                "average_rating": _average(int(a_total), int(a_rated)),
            }
            for agent, agent_name, a_surveys, a_rated, a_total in agents
        ],
    }
