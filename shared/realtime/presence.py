"""Presence: an agent with a stream open counts as online, across every stream process.

Each stream process keeps, per tenant, a sorted set member ``<user id>|<process>``
scored with the time it expires, refreshed every :data:`REFRESH_SECONDS` while the
agent has a stream open there and removed when their last one there closes. A
process that dies stops refreshing and its members lapse after :data:`TTL_SECONDS`.
:func:`connected_agents` is what analytics and assignment ask; the agent's own
``status`` (their manual availability) is unchanged.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from redis.exceptions import RedisError

from shared.redis_client import get_redis, key

#: How long a presence mark lives without a refresh.
TTL_SECONDS = 60
#: How often a stream process refreshes the marks of its connected agents.
REFRESH_SECONDS = 20
#: The sorted set itself expires once no process refreshes it.
KEY_EXPIRY_SECONDS = 3_600


def presence_key(tenant_id: Any) -> str:
    return key("realtime", "online", str(tenant_id))


def member(user_id: Any, process: str) -> str:
    return f"{user_id}|{process}"


def mark_commands(pipe: Any, tenant_id: Any, members: Iterable[str], now: float) -> None:
    """Queue on ``pipe`` (sync or asyncio) a refresh of ``members``, a purge of lapsed ones."""
    name = presence_key(tenant_id)
    pipe.zadd(name, dict.fromkeys(members, now + TTL_SECONDS))
    pipe.zremrangebyscore(name, "-inf", now)
    pipe.expire(name, KEY_EXPIRY_SECONDS)


def connected_agents(tenant_id: uuid.UUID) -> set[uuid.UUID]:
    """The agents of the tenant with a stream open now (empty if Redis cannot say)."""
    try:
        members = get_redis().zrangebyscore(presence_key(tenant_id), time.time(), "+inf")
    except RedisError:
        return set()
    return {uuid.UUID(m.decode().split("|", 1)[0]) for m in members}
