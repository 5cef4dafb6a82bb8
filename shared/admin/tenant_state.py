"""Is a tenant suspended? Asked by workers for every message and by the inbound ack path.

PERF: the answer is kept per process and tenant in an epoch cache
(:mod:`shared.epoch_cache`): a committed write to ``tenants`` sets the tenant's epoch,
so a suspension applies in every process before its next message. A hit costs one
Redis ``MGET`` of two keys and no query; Redis down means a query each time.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import epoch_cache
from shared.db import session_scope
from shared.models import Tenant

CACHE = epoch_cache.EpochCache(
    "tenant_status", tables=[Tenant.__table__.name], per_tenant=True, max_entries=50_000
)


def status(
    tenant_id: uuid.UUID,
    session: Session | None = None,
    epochs: epoch_cache.Epochs | None = None,
) -> str | None:
    """The tenant's status (``active``, ``suspended``), or None for an unknown tenant.

    On a miss ``session`` is asked (a session of its own when None). ``epochs``: read
    already (the worker's, for the message), else read now.
    """
    # NOTE: the epochs are read before the query, so a value is never tagged newer than it is.
    tag = (epochs or epoch_cache.Epochs({})).tag(CACHE, tenant_id)
    cached = CACHE.get(tenant_id, tag)
    if cached is not None:
        return cached[0]
    query = select(Tenant.status).where(Tenant.id == tenant_id)
    if session is not None:
        found = session.scalar(query)
    else:
        with session_scope() as own:
            found = own.scalar(query)
    CACHE.put(tenant_id, tag, (found,))
    return found


def is_suspended(
    tenant_id: uuid.UUID,
    session: Session | None = None,
    epochs: epoch_cache.Epochs | None = None,
) -> bool:
    """True only for a tenant that exists and is not active (unknown: the caller decides)."""
    found = status(tenant_id, session, epochs)
    return found is not None and found != "active"
