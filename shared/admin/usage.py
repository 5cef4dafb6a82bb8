"""Usage statistics per tenant, from the rollups (never by counting raw rows of big tables).

Conversations and messages come from ``analytics_daily`` (counted as events happen),
AI replies from ``ai_usage_daily``, storage from the sizes of ``media_files`` and agents
from ``users`` (small per tenant). One grouped query per source for a whole page.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.models import AiUsageDaily, AnalyticsDaily, MediaFile, Tenant, User
from shared.pagination import paginate


def _pairs(result) -> dict[uuid.UUID, Any]:
    return {tenant_id: value for tenant_id, value in result}


def usage_for(session: Session, tenant_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    """``{tenant_id: {conversations, messages, agents, ai_replies, storage_bytes}}``."""
    if not tenant_ids:
        return {}
    analytics = session.execute(
        select(
            AnalyticsDaily.tenant_id,
            func.sum(AnalyticsDaily.conversations),
            func.sum(AnalyticsDaily.inbound_messages),
            func.sum(AnalyticsDaily.outbound_messages),
        )
        .where(AnalyticsDaily.tenant_id.in_(tenant_ids))
        .group_by(AnalyticsDaily.tenant_id)
    )
    counts = {row[0]: row[1:] for row in analytics}
    ai = _pairs(
        session.execute(
            select(AiUsageDaily.tenant_id, func.sum(AiUsageDaily.replies))
            .where(AiUsageDaily.tenant_id.in_(tenant_ids))
            .group_by(AiUsageDaily.tenant_id)
        )
    )
    agents = _pairs(
        session.execute(
            select(User.tenant_id, func.count())
            .where(User.tenant_id.in_(tenant_ids), User.deleted_at.is_(None))
            .group_by(User.tenant_id)
        )
    )
    storage = _pairs(
        session.execute(
            select(MediaFile.tenant_id, func.sum(MediaFile.size))
            .where(MediaFile.tenant_id.in_(tenant_ids))
            .group_by(MediaFile.tenant_id)
        )
    )
    found = {}
    for tenant_id in tenant_ids:
        conversations, inbound, outbound = counts.get(tenant_id, (0, 0, 0))
        found[tenant_id] = {
            "conversations": int(conversations or 0),
            "messages": int((inbound or 0) + (outbound or 0)),
            "inbound_messages": int(inbound or 0),
            "outbound_messages": int(outbound or 0),
            "agents": int(agents.get(tenant_id, 0)),
            "ai_replies": int(ai.get(tenant_id) or 0),
            "storage_bytes": int(storage.get(tenant_id) or 0),
        }
    return found


def list_usage(
    session: Session, *, status: str | None, limit: int, cursor: str | None
) -> dict[str, Any]:
    """A page of tenants, newest first, each with its ``usage``."""
    query = select(Tenant)
    if status:
        query = query.where(Tenant.status == status)
    page = paginate(
        session,
        query,
        created_at=Tenant.created_at,
        id_column=Tenant.id,
        limit=limit,
        cursor=cursor,
    )
    usage = usage_for(session, [tenant.id for tenant in page.items])
    return {
        "items": [{"tenant": tenant, "usage": usage[tenant.id]} for tenant in page.items],
        "next_cursor": page.next_cursor,
    }
