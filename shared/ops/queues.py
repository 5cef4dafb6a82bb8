"""Queues as operators see them: depth, latency (age of the oldest message), paused or not.

Latency is Sidekiq's: how long the message at the head of the queue has waited since
it was sent (``message_timestamp``), so a queue that is drained promptly reads ~0 and
a starved one grows. Dramatiq's Redis broker only: RabbitMQ cannot show its head
without consuming it, so its latency is None.

Pausing writes the queue name to a Redis set that every worker reads each beat
(:class:`workers.presence.Presence`): a paused queue's consumers stop fetching
(Dramatiq's own ``ConsumerThread.pause``), messages already fetched finish, new ones
wait in the broker, and resuming picks them up again.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script

from shared import queue_stats
from shared.config import get_settings
from shared.errors import NotFound
from shared.ops import keys, processes

#: For each queue (KEYS in pairs: the list and its ``.msgs`` hash), the head message's
#: ``message_timestamp`` in ms, or false when the queue is empty.
_HEAD_TIMESTAMPS_LUA = """
local stamps = {}
for i = 1, #KEYS, 2 do
  local head = redis.call('LINDEX', KEYS[i], 0)
  local stamp = false
  if head then
    local body = redis.call('HGET', KEYS[i + 1], head)
    if body then
      local ok, message = pcall(cjson.decode, body)
      if ok and type(message) == 'table' and message['message_timestamp'] then
        stamp = tostring(message['message_timestamp'])
      end
    end
  end
  stamps[#stamps + 1] = stamp
end
return stamps
"""


@functools.cache
def _head_script(client: redis.Redis) -> Script:
    return client.register_script(_HEAD_TIMESTAMPS_LUA)


def latencies(
    client: redis.Redis, broker_namespace: str, queue_names: Sequence[str], *, now: float
) -> dict[str, float | None]:
    """Seconds the head message of each queue has waited (0.0 when empty, None when the
    head's ``message_timestamp`` is not a number: a message written by something else)."""
    script_keys: list[str] = []
    for name in queue_names:
        script_keys += [f"{broker_namespace}:{name}", f"{broker_namespace}:{name}.msgs"]
    stamps = _head_script(client)(keys=script_keys)
    result: dict[str, float | None] = {}
    for name, stamp in zip(queue_names, stamps, strict=True):
        if not stamp:
            result[name] = 0.0
            continue
        try:
            sent = float(stamp) / 1000
        except ValueError:
            sent = math.nan
        result[name] = round(max(now - sent, 0.0), 3) if math.isfinite(sent) else None
    return result


def paused_queues(client: redis.Redis, namespace: str) -> set[str]:
    return {raw.decode() for raw in client.smembers(keys.paused_key(namespace))}


def known_queues(queue_names: Sequence[str], live: Sequence[dict[str, Any]]) -> list[str]:
    """The platform's queues, then any other queue a live worker consumes (``-Q extra``)."""
    extra = {name for state in live for name in state.get("queues", [])} - set(queue_names)
    return [*queue_names, *sorted(extra)]


def set_paused(
    client: redis.Redis, namespace: str, queue: str, queue_names: Sequence[str], paused: bool
) -> None:
    """Pause or resume ``queue`` on every worker (within a beat).

    404 for a queue that is neither the platform's nor consumed by a live worker;
    resuming is always allowed, so a queue paused by a worker gone since can be freed.
    """
    live = processes.live_processes(client, namespace)
    if paused and queue not in known_queues(queue_names, live):
        raise NotFound(f"Unknown queue {queue!r}")
    if paused:
        client.sadd(keys.paused_key(namespace), queue)
    else:
        client.srem(keys.paused_key(namespace), queue)


def overview(
    client: redis.Redis, namespace: str, queue_names: Sequence[str]
) -> tuple[list[dict[str, Any]], str | None]:
    """Return one row per queue and the broker's error (rows then lack depth and latency).

    Raises :class:`redis.RedisError` when the console's Redis cannot be read.
    """
    settings = get_settings()
    paused = paused_queues(client, namespace)
    broker_error = None
    try:
        depths = queue_stats.queue_depths(queue_names, settings)
    except queue_stats.BrokerUnavailable as exc:
        depths, broker_error = {}, str(exc)
    lags: dict[str, float | None] = {}
    if depths and not settings.uses_rabbitmq:
        try:
            lags = latencies(
                queue_stats.redis_broker_client(settings),
                queue_stats.redis_broker_namespace(settings),
                list(queue_names),
                now=time.time(),
            )
        except redis.RedisError as exc:
            broker_error = f"Redis broker unreachable: {exc}"
    rows = []
    for name in queue_names:
        depth = depths.get(name, {})
        rows.append(
            {
                "queue": name,
                "paused": name in paused,
                "ready": depth.get("ready"),
                "in_progress": depth.get("in_progress"),
                "delayed": depth.get("delayed"),
                "dead": depth.get("dead"),
                "latency_seconds": lags.get(name),
            }
        )
    return rows, broker_error
