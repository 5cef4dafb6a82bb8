"""The ``/api/analytics/*`` answers, read from the rollups (never from conversations or messages).

Each report is one statement over a tenant's few rollup rows, plus the agents'
catalogue (names, online flags) where the answer lists agents.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.analytics.local_time import tenant_zone, today
from shared.analytics.periods import last_days, period_days
from shared.context import Ctx
from shared.models.analytics import NOBODY
from shared.realtime import presence

_OVERVIEW = text(
    """
    SELECT
      (SELECT coalesce(sum(count), 0) FROM analytics_conversation_counts
        WHERE tenant_id = :t) AS total,
      (SELECT coalesce(sum(count), 0) FROM analytics_conversation_counts
        WHERE tenant_id = :t AND status = 'open') AS open,
      (SELECT coalesce(sum(count), 0) FROM analytics_conversation_counts
        WHERE tenant_id = :t AND status = 'pending') AS pending,
      (SELECT coalesce(sum(count), 0) FROM analytics_conversation_counts
        WHERE tenant_id = :t AND status = 'resolved') AS resolved,
      (SELECT coalesce(sum(contacts), 0) FROM analytics_daily WHERE tenant_id = :t) AS contacts,
      (SELECT coalesce(sum(inbound_messages + outbound_messages), 0) FROM analytics_daily
        WHERE tenant_id = :t AND day = :today) AS messages_today,
      (SELECT count(*) FROM users WHERE tenant_id = :t AND deleted_at IS NULL) AS agents,
      (SELECT count(*) FROM users
        WHERE tenant_id = :t AND deleted_at IS NULL
          AND (status = 'online' OR id = ANY(:connected))) AS online
    """
)


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def overview(session: Session, ctx: Ctx) -> dict[str, Any]:
    tz = tenant_zone(session, ctx.tenant_id)
    # An agent with a live stream open counts as online (shared.realtime.presence).
    connected = list(presence.connected_agents(ctx.tenant_id))
    params = {"t": ctx.tenant_id, "today": today(tz), "connected": connected}
    row = session.execute(_OVERVIEW, params).one()
    return {
        "total_conversations": int(row.total),
        "open_conversations": int(row.open),
        "pending_conversations": int(row.pending),
        "resolved_conversations": int(row.resolved),
        "total_contacts": int(row.contacts),
        "total_agents": int(row.agents),
        "online_agents": int(row.online),
        "messages_today": int(row.messages_today),
        "resolution_rate": _percent(int(row.resolved), int(row.total)),
    }


_TRENDS = text(
    """
    SELECT day, sum(conversations), sum(inbound_messages + outbound_messages)
      FROM analytics_daily
     WHERE tenant_id = :t AND day BETWEEN :first AND :last
     GROUP BY day
    """
)


def trends(session: Session, ctx: Ctx, period: str) -> dict[str, Any]:
    """Conversations started and messages per local day, one entry per day, zeros included."""
    days = period_days(period)
    tz = tenant_zone(session, ctx.tenant_id)
    span = last_days(today(tz), days)
    found = {
        day: (int(conversations), int(messages))
        for day, conversations, messages in session.execute(
            _TRENDS, {"t": ctx.tenant_id, "first": span[0], "last": span[-1]}
        )
    }
    return {
        "period": period,
        "days": days,
        "conversation_trend": [
            {"date": day.isoformat(), "count": found.get(day, (0, 0))[0]} for day in span
        ],
        "message_trend": [
            {"date": day.isoformat(), "count": found.get(day, (0, 0))[1]} for day in span
        ],
    }


_AGENTS = text(
    """
    WITH load AS (
        SELECT assignee_key,
               sum(count) FILTER (WHERE status = 'open') AS open,
               sum(count) FILTER (WHERE status = 'resolved') AS resolved,
               sum(count) AS total
          FROM analytics_conversation_counts
         WHERE tenant_id = :t
         GROUP BY assignee_key
    )
    SELECT u.id, u.full_name, u.email, u.status = 'online' OR u.id = ANY(:connected),
           coalesce(l.open, 0), coalesce(l.resolved, 0), coalesce(l.total, 0)
      FROM users u LEFT JOIN load l ON l.assignee_key = u.id
     WHERE u.tenant_id = :t AND u.deleted_at IS NULL
     ORDER BY u.full_name, u.id
    """
)


def agents(session: Session, ctx: Ctx) -> dict[str, Any]:
    connected = list(presence.connected_agents(ctx.tenant_id))
    rows = session.execute(_AGENTS, {"t": ctx.tenant_id, "connected": connected})
    return {
        "agents": [
            {
                "agent_id": str(agent_id),
                "full_name": full_name,
                "email": email,
                "is_online": bool(online),
                "open_conversations": int(open_),
                "resolved_conversations": int(resolved),
                "total_conversations": int(total),
            }
            for agent_id, full_name, email, online, open_, resolved, total in rows
        ]
    }


_CHANNELS = text(
    """
    WITH conv AS (
        SELECT channel, sum(count) AS n FROM analytics_conversation_counts
         WHERE tenant_id = :t GROUP BY channel
    ), cont AS (
        SELECT channel, sum(contacts) AS n FROM analytics_daily
         WHERE tenant_id = :t GROUP BY channel
    )
    SELECT channel, coalesce(cont.n, 0), coalesce(conv.n, 0)
      FROM conv FULL JOIN cont USING (channel)
     WHERE coalesce(cont.n, 0) <> 0 OR coalesce(conv.n, 0) <> 0
     ORDER BY channel
    """
)


def channels(session: Session, ctx: Ctx) -> dict[str, Any]:
    return {
        "channels": [
            {"channel": channel, "contact_count": int(contacts), "conversation_count": int(convs)}
            for channel, contacts, convs in session.execute(_CHANNELS, {"t": ctx.tenant_id})
        ]
    }


_CSAT_COLUMNS = ", ".join(
    f"coalesce(sum({c}), 0)"
    for c in ("surveys", "rated", "rating_sum", *(f"rating_{n}" for n in range(1, 6)))
)
_CSAT_SUMMARY = text(
    f"SELECT {_CSAT_COLUMNS} FROM analytics_csat_daily"  # noqa: S608 (constant columns)
    " WHERE tenant_id = :t AND day BETWEEN :first AND :last"
)
_CSAT_AGENTS = text(
    """
    SELECT c.agent_key, coalesce(u.full_name, ''), sum(c.surveys), sum(c.rated),
           sum(c.rating_sum)
      FROM analytics_csat_daily c
      LEFT JOIN users u ON u.tenant_id = c.tenant_id AND u.id = c.agent_key
     WHERE c.tenant_id = :t AND c.day BETWEEN :first AND :last AND c.agent_key <> :nobody
     GROUP BY c.agent_key, u.full_name
    HAVING sum(c.surveys) > 0 OR sum(c.rated) > 0
     ORDER BY coalesce(u.full_name, ''), c.agent_key
    """
)


def _average(total: int, count: int) -> float:
    return round(total / count, 2) if count else 0.0


def csat(session: Session, ctx: Ctx, period: str) -> dict[str, Any]:
    """Surveys sent and ratings received in the period, overall and per agent."""
    days = period_days(period)
    tz = tenant_zone(session, ctx.tenant_id)
    last = today(tz)
    params = {"t": ctx.tenant_id, "first": last - dt.timedelta(days=days - 1), "last": last}
    surveys, rated, total, *ratings = (int(v) for v in session.execute(_CSAT_SUMMARY, params).one())
    summary = {
        "total_surveys": surveys,
        "rated_count": rated,
        "average_rating": _average(total, rated),
    } | {f"rating_{n}": ratings[n - 1] for n in range(1, 6)}
    per_agent = [
        {
            "agent_id": str(agent_id),
            "agent_name": name,
            "total_surveys": int(a_surveys),
            "rated_count": int(a_rated),
            "average_rating": _average(int(a_total), int(a_rated)),
        }
        for agent_id, name, a_surveys, a_rated, a_total in session.execute(
            _CSAT_AGENTS, params | {"nobody": NOBODY}
        )
    ]
    return {"period": period, "summary": summary, "agents": per_agent}
