"""Count replies, handoffs, tokens and cost per AI agent and UTC day (``ai_usage_daily``).

One upsert per reply, in the reply's own transaction, so usage never disagrees with
the replies that were sent. Cost is tokens / 1,000 x the agent's prices.
"""

from __future__ import annotations

import decimal
import uuid

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

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
    used = session.scalar(
        select(AiUsageDaily.replies + AiUsageDaily.test_replies).where(
            AiUsageDaily.tenant_id == tenant_id,
            AiUsageDaily.ai_agent_id == agent_id,
            AiUsageDaily.day == func.cast(func.timezone("UTC", func.now()), AiUsageDaily.day.type),
        )
    )
    return int(used or 0)
