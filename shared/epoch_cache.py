"""Per-process caches that never outlive a committed change, here or in another process.

Why: some reads (who a token is, the agents list) are asked far more often than
their rows change. A process keeps them in memory, each value tagged with the
*epochs* read from Redis before it was computed. Every committed write to a table a
cache watches (:mod:`shared.committed_writes`) sets a new epoch, which makes the
cached values stale in every process at once; a request reads the epochs of all
caches at once (:func:`read`), from this process's copy of them that Redis keeps true
by pushing each change (:mod:`shared.epoch_mirror`), so an unchanged epoch costs no
round trip.

Guarantees, for every cache:

- The process that commits a change forgets its own entries as soon as the commit
  is reported (within ``session.commit()``): the change applies at its very next
  request, whatever Redis does.
- Other processes read the epochs before they query PostgreSQL, so a request that
  starts after a new epoch was written never uses an older value (the epoch mirror
  takes Redis's push of the change first), and a value read while a write commits is
  tagged with the epoch from before the write.
- If Redis cannot be read, the cache is bypassed (PostgreSQL is asked). If an epoch
  cannot be written after a commit, other processes may use the old value for at
  most :data:`TTL_SECONDS`; so may they after a change the detection cannot see
  (hand-written SQL from another program: see :mod:`shared.committed_writes`).
- A per-tenant cache has an epoch per tenant plus a global one: a write is charged to
  its tenant, so one tenant's writes leave the others' entries alone; a write whose
  tenant cannot be told sets the global epoch (every tenant's entries go).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
import uuid
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from redis.exceptions import RedisError

from shared import committed_writes
from shared.committed_writes import Write
from shared.epoch_mirror import EpochMirror
from shared.redis_client import get_redis, key

log = logging.getLogger(__name__)

#: The longest a cached value may be used without being computed again.
TTL_SECONDS = 2.0
#: How long a tenant's epoch key lives in Redis (far longer than any entry: expiry only misses).
TENANT_EPOCH_SECONDS = 86_400
#: The epoch of a key Redis does not hold (never written, or expired).
_UNSET = b"-"

_caches: list[EpochCache] = []

#: The epochs a worker read before the message its thread runs now (with the tenant gate's
#: own, :mod:`workers.tenant_gate`): the message's caches need no round trip of their own.
FOR_MESSAGE: contextvars.ContextVar[Epochs | None] = contextvars.ContextVar(
    "omnistream_epochs_for_message", default=None
)


class EpochCache:
    """One cache: values per key, valid while the epochs they were tagged with hold.

    ``tables`` are the tables whose committed writes make entries stale; ``ignore``
    names, per table, columns whose changes do not (a write touching only those keeps
    the cache). ``hits`` and ``misses`` count lookups (approximately, across threads).
    """

    def __init__(
        self,
        name: str,
        *,
        tables: Iterable[str],
        per_tenant: bool = False,
        ignore: Mapping[str, frozenset[str]] | None = None,
        max_entries: int = 10_000,
        redis_key: tuple[str, ...] | None = None,
        enabled: bool = True,
    ) -> None:
        self.name = name
        self.tables = frozenset(tables)
        self.per_tenant = per_tenant
        self.enabled = enabled
        self.hits = self.misses = 0
        self._ignore = dict(ignore or {})
        self._max_entries = max_entries
        self._redis_key = redis_key or ("epoch", name)
        self._entries: dict[Hashable, tuple[tuple, float, Any]] = {}
        self._lock = threading.Lock()
        self._generation = 0
        self._tenant_generations: dict[Any, int] = {}
        _caches.append(self)
        committed_writes.watch(self.tables, _forget_written)

    @functools.cached_property
    def _base_key(self) -> str:
        return key(*self._redis_key)

    def epoch_keys(self, tenant_id: Any = None) -> tuple[str, ...]:
        """The Redis keys of this cache's epochs (the global one, then the tenant's)."""
        base = self._base_key
        if self.per_tenant and tenant_id is not None:
            return base, f"{base}:{tenant_id}"
        return (base,)

    def local_generation(self, tenant_id: Any = None) -> tuple[int, int]:
        """Bumped here when this process commits a change, so its own entries go at once."""
        return self._generation, self._tenant_generations.get(tenant_id, 0)

    def get(self, entry_key: Hashable, tag: tuple | None) -> Any:
        """The value kept for ``entry_key`` under ``tag`` and within its TTL, or None."""
        if tag is None or not self.enabled:
            return None
        entry = self._entries.get(entry_key)
        if entry is None or entry[0] != tag or entry[1] < time.monotonic():
            self.misses += 1
            return None
        self.hits += 1
        return entry[2]

    def put(self, entry_key: Hashable, tag: tuple | None, value: Any) -> None:
        """Keep ``value``, tagged with the epochs read *before* it was computed."""
        if tag is None or not self.enabled:
            return
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[entry_key] = (tag, time.monotonic() + TTL_SECONDS, value)

    def peek(self, entry_key: Hashable) -> Any:
        """Whatever is kept for ``entry_key``, stale or not: a hint, never an answer."""
        entry = self._entries.get(entry_key)
        return None if entry is None else entry[2]

    def stale_tenants(self, writes: list[Write]) -> set | None:
        """The tenants whose entries ``writes`` made stale (empty: none; None: every one)."""
        tenants: set = set()
        for write in writes:
            if write.table not in self.tables:
                continue
            ignored = self._ignore.get(write.table)
            if ignored and write.columns is not None and write.columns <= ignored:
                continue
            if write.tenant_id is None or not self.per_tenant:
                return None
            tenants.add(write.tenant_id)
        return tenants

    def forget(self, tenants: set | None) -> None:
        """Make this process's entries of ``tenants`` (None: all) stale."""
        with self._lock:
            if tenants is None:
                self._generation += 1
                self._entries.clear()
                return
            for tenant in tenants:
                self._tenant_generations[tenant] = self._tenant_generations.get(tenant, 0) + 1


class Epochs:
    """The epochs one request read from Redis, before it queried anything.

    A key the first read did not include (a tenant learnt later) is read on first use.
    """

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, bytes] | None) -> None:
        self._values = values

    def tag(self, cache: EpochCache, tenant_id: Any = None) -> tuple | None:
        """What to tag ``cache``'s values with, or None when Redis cannot say (bypass)."""
        if self._values is None:
            return None
        keys = cache.epoch_keys(tenant_id)
        missing = [k for k in keys if k not in self._values]
        if missing:
            found = _read(tuple(missing))
            if found is None:
                return None
            self._values.update(found)
        return (*(self._values[k] for k in keys), *cache.local_generation(tenant_id))


def _read(keys: tuple[str, ...]) -> dict[str, bytes] | None:
    try:
        values = _MIRROR.mget(keys)
    except RedisError:
        return None
    return {k: v or _UNSET for k, v in zip(keys, values, strict=True)}


_KEYS: dict[tuple[Any, int], tuple[str, ...]] = {}
#: The epochs this process has read, kept true by Redis's pushes (every cache's key prefix).
_MIRROR = EpochMirror(lambda: (cache._base_key for cache in _caches))


def _keys(tenant_id: Any) -> tuple[str, ...]:
    """Every cache's epoch keys for ``tenant_id`` (built once per tenant: asked per request)."""
    found = _KEYS.get((tenant_id, len(_caches)))
    if found is None:
        if len(_KEYS) >= 10_000:
            _KEYS.clear()
        found = _KEYS[tenant_id, len(_caches)] = tuple(
            k for cache in _caches for k in cache.epoch_keys(tenant_id)
        )
    return found


def read(tenant_id: Any = None, caches: Iterable[EpochCache] | None = None) -> Epochs:
    """Every cache's epochs (or ``caches``'; ``tenant_id``'s too, when known), read at once
    (a Redis round trip only for those the process's mirror does not hold)."""
    if caches is None:
        return Epochs(_read(_keys(tenant_id)))
    return Epochs(_read(tuple(k for cache in caches for k in cache.epoch_keys(tenant_id))))


def _forget_written(writes: list[Write]) -> None:
    """After a commit: forget here at once, then set new epochs for every other process."""
    new_epochs: dict[str, int | None] = {}
    for cache in _caches:
        tenants = cache.stale_tenants(writes)
        if tenants is not None and not tenants:
            continue
        cache.forget(tenants)
        if tenants is None:
            new_epochs[cache.epoch_keys()[0]] = None
        else:
            new_epochs.update((cache.epoch_keys(t)[1], TENANT_EPOCH_SECONDS) for t in tenants)
    if not new_epochs:
        return
    try:
        pipe = get_redis().pipeline(transaction=False)
        for epoch_key, expiry in new_epochs.items():
            pipe.set(epoch_key, uuid.uuid4().hex, ex=expiry)
        pipe.execute()
    except RedisError:
        log.warning(
            "could not publish new cache epochs (Redis down); others catch up in %ss", TTL_SECONDS
        )
