"""Typing indicators: relayed to the conversation's watchers, never stored.

An agent's client POSTs that they are typing; the API checks they may see the
conversation and PUBLISHes the indicator on the tenant's typing channel (Redis
pub/sub: fire and forget, no backlog). Every stream process is subscribed to all
tenants' typing channels with one pattern subscription and passes the indicator
to the clients that may see the conversation, the typist excepted.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from shared.context import Ctx
from shared.errors import DependencyUnavailable
from shared.inbox.access import get_conversation
from shared.redis_client import get_redis, key


def channel(tenant_id: Any) -> str:
    return key("realtime", "typing", str(tenant_id))


def channel_pattern() -> str:
    return key("realtime", "typing", "*")


def relay(session: Session, ctx: Ctx, conversation_id: uuid.UUID, typing: bool) -> dict[str, Any]:
    """Publish that the caller is (or stopped) typing in a conversation they may see."""
    conversation = get_conversation(session, ctx, conversation_id)
    assignee = str(conversation.assignee_id) if conversation.assignee_id else None
    division = str(conversation.division_id) if conversation.division_id else None
    data = {
        "conversation_id": str(conversation.id),
        "user_id": str(ctx.user_id) if ctx.user_id else None,
        "typing": typing,
    }
    message = {
        "data": data,
        "scope": {
            "c": data["conversation_id"],
            "a": assignee,
            "d": division,
            "pa": assignee,
            "pd": division,
        },
    }
    try:
        get_redis().publish(channel(ctx.tenant_id), json.dumps(message, separators=(",", ":")))
    except RedisError as exc:
        raise DependencyUnavailable("Typing indicators are unavailable right now") from exc
    return data
