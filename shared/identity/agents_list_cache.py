"""The per-process cache of agent list pages, rendered, kept while the tenant's agents
are unchanged.

Why: ``GET /api/agents`` is the API's busiest read and a tenant's agents change
rarely; reading and rendering a 100-row page costs several times the rest of the
request. A page is kept as the JSON bytes it was answered with, per tenant and
query (limit, cursor, status, role, search), and tagged with the tenant's epoch:
any committed write to a ``users`` row of the tenant (created, edited, status,
login time, deleted) or to a ``roles`` row of it (a rename shows in every item)
sets a new one. Guarantees: :mod:`shared.epoch_cache` (the committing process at
once, the others at their next request; Redis unreadable: not used; an epoch that
could not be written: at most ``TTL_SECONDS`` stale). ``AGENTS_LIST_CACHE=false``
turns it off.
"""

from __future__ import annotations

from shared import epoch_cache
from shared.config import get_settings
from shared.models import Role, User

PAGES = epoch_cache.EpochCache(
    "agents-list",
    tables=(User.__table__.name, Role.__table__.name),
    per_tenant=True,
    max_entries=10_000,
    enabled=get_settings().agents_list_cache,
)
