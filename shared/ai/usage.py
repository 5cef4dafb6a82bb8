"""Count replies, handoffs, tokens and cost per AI agent and UTC day (``ai_usage_daily``).

One upsert per reply, in the reply's own transaction, so usage never disagrees with
the replies that were sent; replies settled together add theirs once, at the end of
their transaction (:class:`Tally`). Cost is tokens / 1,000 x the agent's prices.
"""

from __future__ import annotations

import decimal
import uuid
from collections import Counter

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from shared.models.ai import AiAgent, AiUsageDaily

#: The upsert's SQL, for callers that add it to a statement of theirs (one round trip).
UPSERT_SQL = """
    INSERT INTO ai_usage_daily AS u (tenant_id, ai_agent_id, day, replies, test_replies,
                                     handoffs, prompt_tokens, completion_tokens, cost)
    VALUES (:tenant_id, :agent_id, (now() AT TIME ZONE 'UTC')::date, :replies, :test_replies,
            :handoffs, :prompt_tokens, :completion_tokens, :cost)
    ON CONFLICT (tenant_id, ai_agent_id, day) DO UPDATE SET
        replies = u.replies + excluded.replies,
        test_replies = u.test_replies + excluded.test_replies,
        handoffs = u.handoffs + excluded.handoffs,
        prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = u.completion_tokens + excluded.completion_tokens,
        cost = u.cost + excluded.cost
    """
_UPSERT = text(UPSERT_SQL)
#: Today's replies of an agent, its row of the day created if need be and locked.
_LOCK_TODAY = text(UPSERT_SQL + " RETURNING u.replies + u.test_replies")

_THOUSAND = decimal.Decimal(1000)


def cost_of(agent: AiAgent, prompt_tokens: int, completion_tokens: int) -> decimal.Decimal:
    prompt_price = decimal.Decimal(agent.prompt_cost_per_1k or 0)
    completion_price = decimal.Decimal(agent.completion_cost_per_1k or 0)
    return (prompt_tokens * prompt_price + completion_tokens * completion_price) / _THOUSAND


def record(
    session: Session,
    agent: AiAgent,
    *,
    replies: int = 0,
    test_replies: int = 0,
    handoffs: int = 0,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
) -> None:
    """Add to today's row of ``agent`` (created on first use), in the caller's transaction."""
    session.execute(
        _UPSERT,
        params(
            agent,
            replies=replies,
            test_replies=test_replies,
            handoffs=handoffs,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        ),
    )


def params(
    agent: AiAgent,
    *,
    replies: int = 0,
    test_replies: int = 0,
    handoffs: int = 0,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
) -> dict[str, object]:
    """The bound values of :data:`UPSERT_SQL`."""
    return {
        "tenant_id": agent.tenant_id,
        "agent_id": agent.id,
        "replies": replies,
        "test_replies": test_replies,
        "handoffs": handoffs,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost": cost_of(agent, prompt_tokens, completion_tokens),
    }


def replies_today(session: Session, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> int:
    """Replies (test replies included: they cost the same) ``agent_id`` made today, UTC."""
    return int(session.scalar(select(replies_today_column(tenant_id, agent_id))))


def lock_today(session: Session, agent: AiAgent) -> int:
    """:func:`replies_today`, with ``agent``'s row of the day locked until the transaction ends.

    Whoever locks the rows of several agents locks them in id order (no deadlock).
    """
    return int(session.scalar(_LOCK_TODAY, params(agent)))


def replies_today_column(tenant_id: uuid.UUID, agent_id: uuid.UUID) -> ColumnElement[int]:
    """:func:`replies_today` as a column, for a query that reads the agent anyway."""
    used = (
        select(AiUsageDaily.replies + AiUsageDaily.test_replies)
        .where(
            AiUsageDaily.tenant_id == tenant_id,
            AiUsageDaily.ai_agent_id == agent_id,
            AiUsageDaily.day == func.cast(func.timezone("UTC", func.now()), AiUsageDaily.day.type),
        )
        .scalar_subquery()
    )
    return func.coalesce(used, 0)


class Tally:
    """Usage of the replies one transaction settles, written once per agent at its end.

    PERF: the agent's row of the day is every reply's hot row; written per reply, a
    transaction settling many replies would hold its lock throughout and serialize the
    other settling transactions of that agent behind it.
    """

    def __init__(self) -> None:
        self._agents: dict[uuid.UUID, AiAgent] = {}
        self._counts: dict[uuid.UUID, Counter[str]] = {}

    def add(self, agent: AiAgent, **counts: int) -> None:
        self._agents[agent.id] = agent
        self._counts.setdefault(agent.id, Counter()).update(counts)

    def replies(self, agent_id: uuid.UUID) -> int:
        """Replies (test replies included) tallied for ``agent_id`` and not written yet."""
        counts = self._counts.get(agent_id, Counter())
        return counts["replies"] + counts["test_replies"]

    def write(self, session: Session) -> None:
        """Add the tallied usage (agents in id order: concurrent writers lock alike)."""
        for agent_id in sorted(self._counts):
            record(session, self._agents[agent_id], **self._counts[agent_id])
        self._counts.clear()
