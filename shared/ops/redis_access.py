"""The console's Redis client, and the one error it raises when Redis is down.

A client per URL (not :func:`shared.redis_client.get_redis`, cached once per process)
with short timeouts and a single retry: a console must answer 503 naming Redis within
a couple of seconds, not after redis-py's default backoff.
"""

from __future__ import annotations

import functools

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.config import get_settings
from shared.errors import DependencyUnavailable

TIMEOUT_SECONDS = 2.0


class RedisDown(DependencyUnavailable):
    """Redis could not be read or written: the console's figures live there (503)."""

    def __init__(self, exc: BaseException | None = None):
        super().__init__(
            "Redis is unavailable: the operators' console and the metrics read their figures"
            " from it",
            details=[{"field": "redis", "message": f"unreachable ({type(exc).__name__})"}]
            if exc is not None
            else None,
        )


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=TIMEOUT_SECONDS,
        socket_connect_timeout=TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 1),
    )


def client() -> redis.Redis:
    """The Redis of ``REDIS_URL`` (cached per URL, so a changed setting takes effect)."""
    return _client(get_settings().redis_url)


def namespace() -> str:
    return get_settings().redis_namespace
