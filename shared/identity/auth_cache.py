"""The per-process cache of token principals, kept while the auth epoch holds.

Why: every authenticated request looked up its user, role, tenant state and the
token's revocation in PostgreSQL. Here that row is kept in memory per token and
tagged with the *auth epoch* in Redis: any committed write to what the row is made
of (users' role, deletion or ``tokens_valid_after``; roles; tenants; revoked tokens;
API keys; super admins, whose impersonation tokens end with them) sets a new epoch,
which makes every process's cached rows stale at once.
The guarantees (own process at commit, others before their next query, Redis down,
at most ``TTL_SECONDS`` stale when the epoch cannot be written) are those of
:mod:`shared.epoch_cache`.
"""

from __future__ import annotations

from shared import epoch_cache
from shared.models import ApiKey, RevokedToken, Role, SuperAdmin, Tenant, User

#: Bound on cached tokens per process; the cache is emptied when it is full.
MAX_ENTRIES = 10_000

CACHE = epoch_cache.EpochCache(
    "auth",
    tables=[
        model.__table__.name for model in (User, Role, Tenant, RevokedToken, ApiKey, SuperAdmin)
    ],
    # Frequent, harmless writes: they do not change who a caller is.
    ignore={
        User.__table__.name: frozenset(
            {"last_login_at", "status", "full_name", "avatar_url", "updated_at"}
        ),
        ApiKey.__table__.name: frozenset({"last_used_at"}),
        SuperAdmin.__table__.name: frozenset({"last_login_at", "full_name", "updated_at"}),
    },
    max_entries=MAX_ENTRIES,
    redis_key=("auth", "epoch"),
)


def current_epoch() -> tuple | None:
    """The auth epoch now (None when Redis cannot be read)."""
    return epoch_cache.read().tag(CACHE)
