"""The process-wide Redis client (connection-pooled, thread-safe)."""

from __future__ import annotations

import functools
import os
import threading

import redis

from shared.config import get_settings

#: Packed ``MGET`` commands by key tuple (bounded: emptied when full).
_PACKED_MGETS: dict[tuple[str, ...], list[bytes]] = {}
_MAX_PACKED = 4096
_own = threading.local()


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


def mget_on_own_connection(keys: tuple[str, ...]) -> list[bytes | None]:
    """``MGET keys`` on a connection of this thread's own, the command packed once per key set.

    PERF: every authenticated request reads its cache epochs with one MGET (see
    ``shared.epoch_cache``); redis-py's per-command path (pool checkout and return,
    packing, retry and metrics wrappers) cost more CPU than the rest of a cached
    request. Raises :class:`redis.RedisError` like the client; the connection is then
    dropped and the next call connects again.
    """
    conn = getattr(_own, "conn", None)
    if conn is None or _own.pid != os.getpid():
        conn, _own.pid = get_redis().connection_pool.make_connection(), os.getpid()
        _own.conn = conn
    packed = _PACKED_MGETS.get(keys)
    if packed is None:
        if len(_PACKED_MGETS) >= _MAX_PACKED:
            _PACKED_MGETS.clear()
        packed = _PACKED_MGETS[keys] = conn.pack_command("MGET", *keys)
    try:
        conn.send_packed_command(packed)
        return conn.read_response()
    except BaseException:
        _own.conn = None
        conn.disconnect()
        raise
