"""This process's copy of the cache epochs, kept true by Redis's invalidation pushes.

Why: every authenticated request and every worker message reads its cache epochs
(:mod:`shared.epoch_cache`) before it queries anything. As a round trip that read was a
blocking wait per request: the thread is descheduled and comes back to cold caches,
which cost more than the ``MGET`` itself. Epochs change only when a watched table is
written, which is rare. So each process keeps the epochs it has read on one RESP3
connection in Redis's client-side caching broadcast mode (``CLIENT TRACKING ON BCAST
PREFIX ...``, Redis 6+): whenever a key under the epochs' prefixes is set, deleted or
expires, Redis pushes an invalidation on that connection, in the same pass of its event
loop that answers the writer. A read first takes the pushes already in the socket (a
poll with no wait), then answers from the copy; only a key the copy lacks costs a
round trip.

Guarantees, on top of :mod:`shared.epoch_cache`'s:

- A read that starts after a writer's ``SET`` was answered sees the new epoch: the
  push was written to this connection's socket in the same event-loop pass as the
  writer's reply (the only gap is the microseconds between those two socket writes).
- The copy is confirmed by a round trip at least every :data:`REFRESH_SECONDS`: a
  connection that died without a word (a half-open socket after a failover) is found
  within that time. Any error drops the copy with the connection, and the caller
  bypasses its cache as before (it gets the :class:`redis.RedisError`).
- Keys outside the tracked prefixes are read every time, never kept (a cache registered
  later reopens the connection with its prefix); so is everything when Redis refuses
  ``CLIENT TRACKING`` (before 6.0, or a proxy that does not pass it on) or with
  ``EPOCH_MIRROR=false``.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable

from redis.exceptions import ResponseError

from shared.config import get_settings
from shared.redis_client import get_redis, mget_on_own_connection

log = logging.getLogger(__name__)

#: The longest the copy is trusted without a round trip on its connection.
REFRESH_SECONDS = 1.0


class EpochMirror:
    """The copy, its tracking connection and the lock that serialises both.

    ``prefixes`` gives the key prefixes to track, asked each time the connection opens.
    """

    def __init__(self, prefixes: Callable[[], Iterable[str]]) -> None:
        self._prefixes_of = prefixes
        self._lock = threading.Lock()
        self._conn = None
        self._pid: int | None = None
        self._tracked: tuple[str, ...] = ()
        self._values: dict[str, bytes | None] = {}
        self._confirmed_at = -math.inf
        #: Why Redis will not keep the copy true (logged once); every read then goes to Redis.
        self.refused: str | None = None
        #: Round trips this copy made (misses and refreshes): for tests and diagnosis.
        self.round_trips = 0

    def mget(self, keys: tuple[str, ...]) -> list[bytes | None]:
        """The values of ``keys``, as ``MGET`` would answer now."""
        if self.refused is not None or not get_settings().epoch_mirror:
            return mget_on_own_connection(keys)
        with self._lock:
            try:
                return self._mget(keys)
            except _Refused as exc:
                self._drop()
                self.refused = f"Redis refused client tracking ({exc.__cause__})"
                log.warning("cache epochs are read per request: %s", self.refused)
            except BaseException:
                self._drop()
                raise
        return mget_on_own_connection(keys)

    def _mget(self, keys: tuple[str, ...]) -> list[bytes | None]:
        conn = self._connection()
        while conn.can_read(timeout=0):
            conn.read_response(push_request=True)  # each push reaches _invalidated
        now = time.monotonic()
        if now - self._confirmed_at < REFRESH_SECONDS:
            values = self._values
            try:
                return [values[k] for k in keys]  # only tracked keys are ever kept
            except KeyError:
                pass
            if not all(k.startswith(self._tracked) for k in keys) and self._prefixes_grew():
                conn = self._connection()
            wanted = tuple(k for k in keys if k not in self._values)
        else:
            wanted = keys
        conn.send_command("MGET", *wanted)
        # Pushes that arrived before the reply are applied first (by _invalidated), so
        # what the reply says is newer than every invalidation taken so far.
        fetched = dict(zip(wanted, conn.read_response(), strict=True))
        self.round_trips += 1
        self._confirmed_at = now
        tracked = self._tracked
        values = self._values
        values.update((k, v) for k, v in fetched.items() if k.startswith(tracked))
        return [fetched[k] if k in fetched else values[k] for k in keys]

    def _connection(self):
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self._conn, self._values = None, {}  # a fork's copy: its connection is the parent's
        pool = get_redis().connection_pool
        # Named, so an operator's CLIENT LIST shows whose tracking connection it is.
        name = f"omnistream:epochs:{os.getpid()}"
        conn = pool.connection_class(
            **{**pool.connection_kwargs, "protocol": 3, "client_name": name}
        )
        tracked = _disjoint(self._prefixes_of())
        args = [part for prefix in tracked for part in ("PREFIX", prefix)]
        try:
            conn.connect()  # HELLO 3: a server before Redis 6 refuses it
            # NOTE: the hook redis-py's own client-side cache registers its handler with.
            conn._parser.set_invalidation_push_handler(self._invalidated)
            conn.send_command("CLIENT", "TRACKING", "ON", "BCAST", *args)
            conn.read_response()
        except ResponseError as exc:
            conn.disconnect()
            raise _Refused from exc
        except BaseException:
            conn.disconnect()
            raise
        self._conn, self._pid, self._tracked = conn, os.getpid(), tracked
        self._confirmed_at = -math.inf
        return conn

    def _prefixes_grew(self) -> bool:
        """A cache registered after the connection opened: track its keys too (reconnect)."""
        if _disjoint(self._prefixes_of()) == self._tracked:
            return False
        self._drop()
        return True

    def _invalidated(self, push: list) -> None:
        """Redis says these keys changed (None: everything did, e.g. ``FLUSHALL``)."""
        changed = push[1]
        if changed is None:
            self._values.clear()
            return
        for raw in changed:
            self._values.pop(raw.decode() if isinstance(raw, bytes) else raw, None)

    def _drop(self) -> None:
        conn, self._conn, self._values = self._conn, None, {}
        if conn is not None and self._pid == os.getpid():
            conn.disconnect()


class _Refused(Exception):
    """The server (or a proxy before it) will not track keys for this connection."""


def _disjoint(prefixes: Iterable[str]) -> tuple[str, ...]:
    """The prefixes, less those another one already covers (Redis refuses overlaps)."""
    kept: list[str] = []
    for prefix in sorted(set(prefixes)):
        if not any(prefix.startswith(k) for k in kept):
            kept.append(prefix)
    return tuple(kept)
