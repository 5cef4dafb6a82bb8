"""A per-process cache of token principals, invalidated by an auth epoch in Redis.

Why: every authenticated request looked up its user, role, tenant state and the
token's revocation in PostgreSQL. Here that row is kept in memory per token, and
each request instead reads one Redis key, the *auth epoch*. Any committed
transaction that touches what the row is made of (users' role, deletion or
``tokens_valid_after``; roles; tenants; revoked tokens; API keys) sets a new epoch,
which makes every process's cached rows stale at once.

Guarantees:

- The process that commits the change clears its own cache in the commit hook:
  the change applies at its very next request, whatever Redis does.
- Other processes read the epoch before they query PostgreSQL, so a request that
  starts after the new epoch was written never uses an older row.
- If Redis cannot be read, the cache is bypassed (PostgreSQL is asked). If the epoch
  cannot be written after a commit, other processes may use the old row for at
  most :data:`TTL_SECONDS`; so does a change made outside the application's
  sessions (hand-written SQL).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from shared.db import collected_until_commit
from shared.models import ApiKey, RevokedToken, Role, Tenant, User
from shared.redis_client import get_redis, key

log = logging.getLogger(__name__)

#: The longest a cached row may be used without being read again from PostgreSQL.
TTL_SECONDS = 2.0
#: Bound on cached tokens per process; the cache is emptied when it is full.
MAX_ENTRIES = 10_000

#: Tables whose rows make up a principal; a committed change to one bumps the epoch.
_AUTH_TABLES = frozenset(
    model.__table__.name for model in (User, Role, Tenant, RevokedToken, ApiKey)
)
#: ORM attributes that do not affect who a caller is (frequent, harmless writes).
_IRRELEVANT = {
    User: frozenset({"last_login_at", "status", "full_name", "avatar_url", "updated_at"}),
    ApiKey: frozenset({"last_used_at"}),
}
_WATCHED = frozenset({User, Role, Tenant, RevokedToken, ApiKey})
_PENDING = "omnistream.auth_changed"

_entries: dict[str, tuple[bytes, float, Any]] = {}
_lock = threading.Lock()


def _epoch_key() -> str:
    return key("auth", "epoch")


def current_epoch() -> bytes | None:
    """The epoch to tag rows with, or None when Redis cannot say (then do not cache)."""
    try:
        return get_redis().get(_epoch_key()) or b"-"
    except RedisError:
        return None


def get(token: str, epoch: bytes | None) -> Any:
    """What was cached for ``token`` under ``epoch`` and is still within its TTL, or None."""
    if epoch is None:
        return None
    entry = _entries.get(token)
    if entry is None or entry[0] != epoch or entry[1] < time.monotonic():
        return None
    return entry[2]


def put(token: str, epoch: bytes | None, value: Any) -> None:
    """Remember ``value`` for ``token``, tagged with the epoch read *before* the query."""
    if epoch is None:
        return
    with _lock:
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[token] = (epoch, time.monotonic() + TTL_SECONDS, value)


def invalidate() -> None:
    """Forget every cached row here and tell the other processes to do the same."""
    with _lock:
        _entries.clear()
    try:
        get_redis().set(_epoch_key(), uuid.uuid4().hex)
    except RedisError:
        log.warning(
            "could not publish a new auth epoch (Redis down); others catch up in %ss", TTL_SECONDS
        )


def _mark_changed(session: Session) -> None:
    pending = collected_until_commit(session, _PENDING, lambda _items: invalidate())
    if not pending:
        pending.append(True)


def _changes_auth(instance: Any) -> bool:
    """Whether a dirty row changed something a principal is made of."""
    ignored = _IRRELEVANT.get(type(instance), frozenset())
    return any(
        attr.key not in ignored and attr.history.has_changes() for attr in inspect(instance).attrs
    )


@event.listens_for(Session, "before_flush")
def _watch_flush(session: Session, _context: Any, _instances: Any) -> None:
    for instance in (*session.new, *session.deleted):
        if type(instance) in _WATCHED:
            _mark_changed(session)
            return
    for instance in session.dirty:
        if type(instance) in _WATCHED and _changes_auth(instance):
            _mark_changed(session)
            return


@event.listens_for(Session, "do_orm_execute")
def _watch_statements(state: Any) -> None:
    if not (state.is_update or state.is_delete or state.is_insert):
        return
    table = getattr(state.statement, "table", None)
    if getattr(table, "name", None) in _AUTH_TABLES:
        _mark_changed(state.session)
