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
delayed messages a worker already holds in memory are not in its ``delayed``.

Example::

    queue_depths(["events", "webhooks"])
    # {"events": {"ready": 0, "in_progress": 2, "delayed": 1, "dead": 0}, ...}
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable

import pika
import pika.exceptions
import redis
from dramatiq.common import dq_name, xq_name
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.config import Settings, get_settings

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

    One pipelined round trip on Redis; one connection and a passive declare per
    queue on RabbitMQ (a queue that does not exist yet counts 0). Raises
    :class:`BrokerUnavailable` when the broker cannot be reached.
    """
    settings = settings or get_settings()
    names = list(dict.fromkeys(queue_names))
    if settings.uses_rabbitmq:
        return _rabbitmq_depths(settings.effective_broker_url, names)
    client = redis_client or _redis_client(settings.effective_broker_url)
    return _redis_depths(client, redis_broker_namespace(settings), names)


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


def _redis_depths(
    client: redis.Redis, namespace: str, names: list[str]
) -> dict[str, dict[str, int]]:
    # Dramatiq 2.2.1 (brokers/redis/dispatch.lua), under "{namespace}:":
    #   {queue}          list of message ids not fetched yet
    #   {queue}.msgs     hash id -> message of every message not acked yet (waiting or fetched)
    #   {queue}.DQ.msgs  the same for the delay queue, whose messages workers hold until their eta
    #   {queue}.XQ       sorted set of dead-lettered ids (by time of death)
    try:
        pipe = client.pipeline(transaction=False)
        for name in names:
            base = f"{namespace}:{name}"
            pipe.llen(base)
            pipe.hlen(f"{base}.msgs")
            pipe.hlen(f"{namespace}:{dq_name(name)}.msgs")
            pipe.zcard(f"{namespace}:{xq_name(name)}")
        replies = pipe.execute()
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"Redis broker unreachable: {exc}") from exc
    depths = {}
    for index, name in enumerate(names):
        waiting, unacked, delayed, dead = replies[index * 4 : index * 4 + 4]
        depths[name] = {
            "ready": waiting,
            "in_progress": max(unacked - waiting, 0),
            "delayed": delayed,
            "dead": dead,
        }
    return depths


def _rabbitmq_depths(url: str, names: list[str]) -> dict[str, dict[str, int]]:
    parameters = pika.URLParameters(url.split(";")[0])
    parameters.connection_attempts = 1
    parameters.socket_timeout = TIMEOUT_SECONDS
    parameters.stack_timeout = TIMEOUT_SECONDS
    parameters.blocked_connection_timeout = TIMEOUT_SECONDS
    try:
        connection = pika.BlockingConnection(parameters)
    except pika.exceptions.AMQPError as exc:
        raise BrokerUnavailable(f"RabbitMQ broker unreachable: {exc!r}") from exc
    try:
        channel = connection.channel()
        depths = {}
        for name in names:
            counts = {}
            for state, queue in (
                ("ready", name),
                ("delayed", dq_name(name)),
                ("dead", xq_name(name)),
            ):
                try:
                    declared = channel.queue_declare(queue=queue, passive=True)
                    counts[state] = declared.method.message_count
                except pika.exceptions.ChannelClosedByBroker as exc:
                    if exc.reply_code != 404:
                        raise
                    # NOTE: a 404 closes the channel; the queue is simply not declared yet.
                    counts[state] = 0
                    channel = connection.channel()
            depths[name] = counts
        return depths
    except pika.exceptions.AMQPError as exc:
        raise BrokerUnavailable(f"RabbitMQ broker unavailable: {exc!r}") from exc
    finally:
        if connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError):
                connection.close()
