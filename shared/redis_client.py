"""The process-wide Redis client (connection-pooled, thread-safe)."""

from __future__ import annotations

import functools

import redis

from shared.config import get_settings


@functools.cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(
        get_settings().redis_url,
        socket_timeout=2,
        socket_connect_timeout=2,
        health_check_interval=30,
    )


def key(*parts: str) -> str:
    """Build a key under this deployment's namespace: ``key("ratelimit", "login", ip)``."""
    return ":".join((get_settings().redis_namespace, *parts))
