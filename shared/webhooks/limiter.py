"""Per-endpoint concurrency: leases in a Redis sorted set, so one slow receiver holds few threads.

A lease is a member scored by its expiry, so a worker killed while holding one
cannot leak it: expired members are dropped before counting.

Waiting for a slot, two ways:

- the in-process pipeline (:mod:`.pipeline`) asks the lease *before* claiming; a
  refused delivery waits in its worker and the refusal marks the endpoint as waited
  for. A release of a marked endpoint publishes its id (:func:`freed_channel`), so a
  waiting worker asks again at once, whichever process freed the slot
  (:mod:`.freed_slots`). Before, the pipeline parked such deliveries in Postgres:
  with four worker processes on one endpoint most of them waited for a release to
  pull *the oldest* pending row of the endpoint (often one another process was about
  to send, so the parked one stayed) or for the sweeper, and 4 processes delivered
  5x slower than 1 (``bench/scale_out.py``).
- a ``deliver_webhooks`` job (sweeper re-drives, retries, resends) claims first and
  *parks* a delivery refused a lease: pending again in Postgres, counted
  (:meth:`Limiter.park`); whoever releases a lease of that endpoint learns there are
  parked deliveries and pulls the next one.

The count comes after the row is pending again, never with the refused lease: a
release landing in between would use the count up, find no pending row to pull (it
was still claimed) and leave the delivery to the sweeper. The opposite window,
every lease released after the row went pending and before it was counted, is closed
by :meth:`Limiter.park`: counting and looking for free room are one script, so a
release is seen either by the parker (who pulls the deliveries itself) or by the
releaser (who finds the count).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence

import redis

from shared.redis_client import get_redis, key

log = logging.getLogger(__name__)

#: KEYS: (leases, waiting) per request; ARGV: now, the waiting mark's ms, then
#: (limit, ttl, token) per request. A refusal marks the endpoint as waited for.
_ACQUIRE = """
local now, mark = tonumber(ARGV[1]), tonumber(ARGV[2])
local granted = {}
for i = 1, #KEYS / 2 do
  local leases, waiting = KEYS[2 * i - 1], KEYS[2 * i]
  local limit, ttl, token = tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1]), ARGV[3 * i + 2]
  redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
  if redis.call('ZCARD', leases) < limit then
    redis.call('ZADD', leases, now + ttl, token)
    redis.call('PEXPIRE', leases, ttl)
    granted[i] = 1
  else
    redis.call('SET', waiting, '1', 'PX', mark)
    granted[i] = 0
  end
end
return granted
"""
#: KEYS: (leases, parked, waiting) per release; ARGV: the channel, then (token, endpoint)
#: per release. A slot freed while a process waits for one is published to the channel.
_RELEASE = """
local waiting = {}
for i = 1, #KEYS / 3 do
  redis.call('ZREM', KEYS[3 * i - 2], ARGV[2 * i])
  if redis.call('EXISTS', KEYS[3 * i]) == 1 then
    redis.call('PUBLISH', ARGV[1], ARGV[2 * i + 1])
  end
  local parked = tonumber(redis.call('GET', KEYS[3 * i - 1]) or '0')
  if parked > 0 then
    redis.call('DECR', KEYS[3 * i - 1])
    waiting[i] = 1
  else
    waiting[i] = 0
  end
end
return waiting
"""


#: KEYS: (leases, parked) per endpoint; ARGV: now, then (count, limit) per endpoint.
#: Counts the parked deliveries, then takes back as many as there is room for now.
_PARK = """
local now = tonumber(ARGV[1])
local pull = {}
for i = 1, #KEYS / 2 do
  local leases, parked = KEYS[2 * i - 1], KEYS[2 * i]
  local count, limit = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local waiting = redis.call('INCRBY', parked, count)
  redis.call('PEXPIRE', parked, 3600000)
  redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
  local take = math.min(limit - redis.call('ZCARD', leases), waiting)
  if take > 0 then
    redis.call('DECRBY', parked, take)
    pull[i] = take
  else
    pull[i] = 0
  end
end
return pull
"""


#: How long a refused lease marks its endpoint as waited for: releases meanwhile are
#: published. Above the waiters' own retry interval (:mod:`.pipeline`), which renews it.
WAITING_MARK_MS = 5_000


def freed_channel() -> str:
    """The pub/sub channel a release of a waited-for endpoint publishes the endpoint's id on."""
    return key("webhooks", "freed")


class Limiter:
    """Acquire and release per-endpoint leases; fails open (with a warning) if Redis is down.

    PERF: a batch of deliveries takes (and gives back) all its leases in one script
    call, one Redis round trip per batch instead of one per delivery.
    """

    def __init__(self, client: redis.Redis | None = None) -> None:
        self.client = client or get_redis()
        self._acquire = self.client.register_script(_ACQUIRE)
        self._release = self.client.register_script(_RELEASE)
        self._park = self.client.register_script(_PARK)

    @staticmethod
    def _keys(endpoint_id: uuid.UUID) -> list[str]:
        """The endpoint's leases, its parked count and its waiting mark."""
        return [
            key("webhooks", "leases", str(endpoint_id)),
            key("webhooks", "parked", str(endpoint_id)),
            key("webhooks", "waiting", str(endpoint_id)),
        ]

    def acquire_many(self, requests: Sequence[tuple[uuid.UUID, int, float]]) -> list[str | None]:
        """One lease token per ``(endpoint_id, limit, ttl_seconds)``, None where at the limit.

        Requests are granted in order, so two of one endpoint with one free slot
        give the first a lease and park the second. A refused request is not counted
        as parked: the caller does that once the delivery is pending again.
        """
        if not requests:
            return []
        tokens = [uuid.uuid4().hex for _ in requests]
        keys: list[str] = []
        args: list[int | str] = [int(time.time() * 1000), WAITING_MARK_MS]
        for (endpoint_id, limit, ttl_seconds), token in zip(requests, tokens, strict=True):
            leases, _parked, waiting = self._keys(endpoint_id)
            keys += [leases, waiting]
            args += [limit, int(ttl_seconds * 1000), token]
        try:
            granted = self._acquire(keys=keys, args=args)
        except redis.RedisError:
            log.warning("webhook limiter unavailable; sending without a concurrency cap")
            return list(tokens)
        return [t if g else None for t, g in zip(tokens, granted, strict=True)]

    def release_many(self, leases: Sequence[tuple[uuid.UUID, str]]) -> list[bool]:
        """Drop the leases; for each, whether a parked delivery of its endpoint waits for a slot."""
        if not leases:
            return []
        keys = [k for endpoint_id, _ in leases for k in self._keys(endpoint_id)]
        args = [freed_channel()]
        for endpoint_id, token in leases:
            args += [token, str(endpoint_id)]
        try:
            waiting = self._release(keys=keys, args=args)
        except redis.RedisError:
            return [False] * len(leases)
        return [bool(w) for w in waiting]

    def park(
        self, counts: dict[uuid.UUID, int], limits: dict[uuid.UUID, int]
    ) -> dict[uuid.UUID, int]:
        """Count deliveries left waiting in Postgres, so releases of their endpoint pull them;
        how many of them the caller must pull itself, per endpoint, because a slot freed
        before they were counted (``limits``: each endpoint's concurrency)."""
        if not counts:
            return {}
        endpoints = list(counts)
        keys = [k for endpoint_id in endpoints for k in self._keys(endpoint_id)[:2]]
        args: list[int] = [int(time.time() * 1000)]
        for endpoint_id in endpoints:
            args += [counts[endpoint_id], limits[endpoint_id]]
        try:
            pull = self._park(keys=keys, args=args)
        except redis.RedisError:
            log.warning("webhook limiter unavailable; parked deliveries wait for the sweeper")
            return {}
        return {e: int(n) for e, n in zip(endpoints, pull, strict=True) if int(n) > 0}

    def waited_for(self, endpoint_id: uuid.UUID) -> bool:
        """Whether a lease of the endpoint was refused lately (a release is then published)."""
        try:
            return bool(self.client.exists(self._keys(endpoint_id)[2]))
        except redis.RedisError:
            return False

    def acquire(self, endpoint_id: uuid.UUID, limit: int, ttl_seconds: float) -> str | None:
        """A lease token, or None when ``limit`` leases are held (the caller parks)."""
        return self.acquire_many([(endpoint_id, limit, ttl_seconds)])[0]

    def release(self, endpoint_id: uuid.UUID, token: str) -> bool:
        """Drop the lease; return whether a parked delivery of this endpoint waits for a slot."""
        return self.release_many([(endpoint_id, token)])[0]
