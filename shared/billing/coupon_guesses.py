"""A bound on guessing coupon codes: unknown codes a workspace tries, per 10 minutes.

Any visitor can register a workspace, and ``POST /api/billing/coupons/validate`` tells a
real code from a made-up one, so without a bound it is an oracle for enumerating
promotional codes. Past the bound the workspace gets 429 until the window ends; a code
that exists never counts. Redis holds the counter; when Redis is down the check is
skipped (logged), as the login limit does: a coupon check is not worth an outage.
"""

from __future__ import annotations

import logging
import uuid

from redis.exceptions import RedisError

from shared.errors import RateLimited
from shared.redis_client import get_redis, key

log = logging.getLogger(__name__)

WINDOW_SECONDS = 600
MAX_UNKNOWN_CODES = 20


def _counter(tenant_id: uuid.UUID) -> str:
    return key("ratelimit", "coupon-guesses", str(tenant_id))


def check(tenant_id: uuid.UUID) -> None:
    """429 when the workspace already tried too many unknown codes in this window."""
    try:
        misses = get_redis().get(_counter(tenant_id))
    except RedisError:
        log.warning("coupon guess limit unavailable (Redis down); allowing the check")
        return
    if misses and int(misses) >= MAX_UNKNOWN_CODES:
        raise RateLimited(
            "Too many unknown coupon codes; try again later", retry_after=WINDOW_SECONDS
        )


def count_miss(tenant_id: uuid.UUID) -> None:
    counter = _counter(tenant_id)
    try:
        pipe = get_redis().pipeline()
        pipe.incr(counter)
        pipe.expire(counter, WINDOW_SECONDS, nx=True)
        pipe.execute()
    except RedisError:
        log.warning("could not count an unknown coupon code (Redis down)")
