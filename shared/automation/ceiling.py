"""The per-tenant ceiling on action executions per minute, counted in Redis.

The evaluator takes a matched rule's actions from the tenant's count of the current
minute (``INCRBY``, one round trip per matched rule, only when a ceiling is set)
before it applies them. Past the ceiling the event waits for the next minute
(:class:`~shared.automation.evaluator` defers it) and what it took is given back,
so the count says what really ran. An event needing more actions than the whole
ceiling still runs, alone, in a fresh minute: a ceiling slows a tenant, it never
stops one rule for good.

Redis down: the ceiling is not enforced (logged); automation keeps working.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from redis.exceptions import RedisError

from shared.redis_client import get_redis, key

log = logging.getLogger(__name__)

#: A minute's counter outlives its minute by this much (clock skew between workers).
_KEEP_SECONDS = 120


def minute_of(at: dt.datetime) -> int:
    return int(at.timestamp() // 60)


def next_minute(at: dt.datetime) -> dt.datetime:
    return dt.datetime.fromtimestamp((minute_of(at) + 1) * 60, dt.UTC)


def _counter(tenant_id: uuid.UUID, minute: int) -> str:
    return key("automation", "actions", str(tenant_id), str(minute))


def take(tenant_id: uuid.UUID, count: int, ceiling: int, at: dt.datetime) -> bool:
    """Count ``count`` actions in ``at``'s minute; False (and nothing counted) past the ceiling."""
    counter = _counter(tenant_id, minute_of(at))
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.incrby(counter, count)
        pipe.expire(counter, _KEEP_SECONDS, nx=True)
        total = pipe.execute()[0]
        if total <= ceiling or total == count:
            return True
        get_redis().decrby(counter, count)
        return False
    except RedisError:
        log.warning("automation action ceiling unavailable (Redis down); not enforced")
        return True


def give_back(tenant_id: uuid.UUID, count: int, at: dt.datetime) -> None:
    """Uncount actions taken for an evaluation that was rolled back."""
    if count <= 0:
        return
    try:
        get_redis().decrby(_counter(tenant_id, minute_of(at)), count)
    except RedisError:
        log.warning("could not give back %d automation action(s) (Redis down)", count)


def used(tenant_id: uuid.UUID, at: dt.datetime) -> int | None:
    """Actions counted in ``at``'s minute (None when Redis cannot say)."""
    try:
        value = get_redis().get(_counter(tenant_id, minute_of(at)))
    except RedisError:
        return None
    return int(value or 0)
