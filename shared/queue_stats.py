"""Queue depths read straight from the broker, for health checks and Prometheus.

``shared`` cannot import ``workers``, so callers pass the queue names in
(``workers.queues.ALL``). Both brokers report, per queue:

``ready``
    Messages waiting for a worker to fetch them.
``delayed``
    Messages waiting for their eta (retries with backoff, ``delay=`` sends).
``dead``
    Messages Dramatiq dead-lettered and still keeps (for a week).

Redis also reports ``in_progress``: fetched by a worker and not yet acked
(prefetched, running, or held by a worker that died until Dramatiq's maintenance
requeues it). RabbitMQ counts only messages not delivered to any consumer, so
delayed messages a worker already holds in memory are not in its ``delayed``; its
counts are read over a kept connection and may be up to a second old.

Example::

    queue_depths(["events", "webhooks"])
    # {"events": {"ready": 0, "in_progress": 2, "delayed": 1, "dead": 0}, ...}
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import redis
from dramatiq.common import dq_name, xq_name
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from shared.config import Settings, get_settings
from shared.rabbitmq_probe import ProbeFailed, probe_for

#: Seconds to wait for the broker to connect or answer; the health check must stay fast.
TIMEOUT_SECONDS = 2.0


class BrokerUnavailable(Exception):
    """The message broker could not be reached or answered in time (health answers 503)."""


def redis_broker_namespace(settings: Settings) -> str:
    """Return the key prefix of Dramatiq's Redis broker (``workers.broker`` builds it the same)."""
    return f"{settings.redis_namespace}:dramatiq"


def queue_depths(
    queue_names: Iterable[str],
    settings: Settings | None = None,
    *,
    redis_client: redis.Redis | None = None,
) -> dict[str, dict[str, int]]:
    """Return ``{queue: {state: count}}`` for each queue, from the broker of ``settings``.

    One round trip on Redis (a Lua script); on RabbitMQ a passive declare per queue
    over a kept connection, at most once a second per process (a queue that does not
    exist yet counts 0). Raises
    :class:`BrokerUnavailable` when the broker cannot be reached.
    """
    settings = settings or get_settings()
    names = list(dict.fromkeys(queue_names))
    if settings.uses_rabbitmq:
        return _rabbitmq_depths(settings.effective_broker_url, names)
    client = redis_client or _redis_client(settings.effective_broker_url)
    return _redis_depths(client, redis_broker_namespace(settings), names)


def redis_broker_client(settings: Settings) -> redis.Redis:
    """A fail-fast client of the Redis broker of ``settings`` (cached per URL)."""
    return _redis_client(settings.effective_broker_url)


@functools.cache
def _redis_client(url: str) -> redis.Redis:
    # NOTE: cached per URL so a health check reuses connections; redis-py resets
    # its pool in a forked child, so this is safe under gunicorn.
    return redis.Redis.from_url(
        url,
        socket_timeout=TIMEOUT_SECONDS,
        socket_connect_timeout=TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 1),  # not redis-py's default 10 retries: fail fast, answer 503
    )


#: Every queue's four counts in one server-side call. KEYS come in fours per queue (see
#: :func:`_depth_keys`); the reply is flat: ready, in_progress, delayed, dead per queue.
_DEPTHS_LUA = """
local depths = {}
for i = 1, #KEYS, 4 do
  local waiting = redis.call('LLEN', KEYS[i])
  depths[#depths + 1] = waiting
  depths[#depths + 1] = math.max(redis.call('HLEN', KEYS[i + 1]) - waiting, 0)
  depths[#depths + 1] = redis.call('HLEN', KEYS[i + 2])
  depths[#depths + 1] = redis.call('ZCARD', KEYS[i + 3])
end
return depths
"""
_STATES = ("ready", "in_progress", "delayed", "dead")


@functools.cache
def _depths_script(client: redis.Redis) -> Script:
    return client.register_script(_DEPTHS_LUA)


@functools.lru_cache(maxsize=64)
def _depth_keys(namespace: str, names: tuple[str, ...]) -> tuple[str, ...]:
    # Dramatiq 2.2.1 (brokers/redis/dispatch.lua), under "{namespace}:":
    #   {queue}          list of message ids not fetched yet
    #   {queue}.msgs     hash id -> message of every message not acked yet (waiting or fetched)
    #   {queue}.DQ.msgs  the same for the delay queue, whose messages workers hold until their eta
    #   {queue}.XQ       sorted set of dead-lettered ids (by time of death)
    keys = []
    for name in names:
        base = f"{namespace}:{name}"
        keys += [base, f"{base}.msgs", f"{namespace}:{dq_name(name)}.msgs"]
        keys.append(f"{namespace}:{xq_name(name)}")
    return tuple(keys)


def _redis_depths(
    client: redis.Redis, namespace: str, names: list[str]
) -> dict[str, dict[str, int]]:
    # PERF: one EVALSHA of a registered script, not a pipeline of four commands per
    # queue (36 for the 9 queues): redis-py packed and parsed each of them, about twice
    # the client CPU of this call. Script loads the script again on NOSCRIPT (after a
    # Redis restart or SCRIPT FLUSH) and retries.
    try:
        flat = _depths_script(client)(keys=_depth_keys(namespace, tuple(names)))
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"Redis broker unreachable: {exc}") from exc
    return {
        name: dict(zip(_STATES, flat[index * 4 : index * 4 + 4], strict=True))
        for index, name in enumerate(names)
    }


def _rabbitmq_depths(url: str, names: list[str]) -> dict[str, dict[str, int]]:
    # PERF: one kept connection per process, and an answer reused for about a second
    # (see shared.rabbitmq_probe): a load balancer's health probes cost nothing.
    try:
        return probe_for(url, timeout=TIMEOUT_SECONDS).depths(tuple(names))
    except ProbeFailed as exc:
        raise BrokerUnavailable(str(exc)) from exc
