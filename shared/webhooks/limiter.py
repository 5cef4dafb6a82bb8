"""Per-endpoint concurrency: leases in a Redis sorted set, so one slow receiver holds few threads.

A lease is a member scored by its expiry, so a worker killed while holding one
cannot leak it: expired members are dropped before counting. When an endpoint is
at its limit the caller *parks* the delivery (it stays pending in Postgres) and
counts it; whoever releases a lease of that endpoint learns there are parked
deliveries and pulls the next one, so the endpoint's pipe stays full without
anybody polling.
"""

from __future__ import annotations

import logging
import time
import uuid

import redis

from shared.redis_client import get_redis, key

log = logging.getLogger(__name__)

_ACQUIRE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], 3600000)
return 0
"""
_RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
local parked = tonumber(redis.call('GET', KEYS[2]) or '0')
if parked > 0 then
  redis.call('DECR', KEYS[2])
  return 1
end
return 0
"""


class Limiter:
    """Acquire and release per-endpoint leases; fails open (with a warning) if Redis is down."""

    def __init__(self, client: redis.Redis | None = None) -> None:
        self.client = client or get_redis()
        self._acquire = self.client.register_script(_ACQUIRE)
        self._release = self.client.register_script(_RELEASE)

    @staticmethod
    def _keys(endpoint_id: uuid.UUID) -> list[str]:
        return [
            key("webhooks", "leases", str(endpoint_id)),
            key("webhooks", "parked", str(endpoint_id)),
        ]

    def acquire(self, endpoint_id: uuid.UUID, limit: int, ttl_seconds: float) -> str | None:
        """A lease token, or None when ``limit`` leases are held (the caller parks)."""
        token = uuid.uuid4().hex
        now_ms = int(time.time() * 1000)
        try:
            got = self._acquire(
                keys=self._keys(endpoint_id), args=[now_ms, limit, int(ttl_seconds * 1000), token]
            )
        except redis.RedisError:
            log.warning("webhook limiter unavailable; sending without a concurrency cap")
            return token
        return token if got else None

    def release(self, endpoint_id: uuid.UUID, token: str) -> bool:
        """Drop the lease; return whether a parked delivery of this endpoint waits for a slot."""
        try:
            return bool(self._release(keys=self._keys(endpoint_id), args=[token]))
        except redis.RedisError:
            return False
