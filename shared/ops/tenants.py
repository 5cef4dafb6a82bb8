"""Which tenant floods which queue: messages per queue and tenant over the last minutes.

Counted by :class:`workers.metrics.Metrics` for every message that carries a
``tenant_id`` option, in :func:`shared.worker_metrics.tenant_flow_key`.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import worker_metrics as wm
from shared.models import Tenant

#: Tenants listed per queue at most (the heaviest first).
TOP_TENANTS = 10


def breakdown(
    client: redis.Redis,
    namespace: str,
    *,
    minutes: int,
    tenant_id: uuid.UUID | None = None,
    now: float | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Return ``{queue: [{"tenant_id", "enqueued", "processed", "failed", "dead_lettered"}]}``,
    heaviest tenant (by enqueued) first; with ``tenant_id`` that tenant's rows only."""
    last = wm.minute_of(time.time() if now is None else now)
    pipe = client.pipeline(transaction=False)
    for minute in range(last - minutes + 1, last + 1):
        pipe.hgetall(wm.tenant_flow_key(namespace, minute))
    counts: defaultdict[str, defaultdict[str, Counter[str]]] = defaultdict(
        lambda: defaultdict(Counter)
    )
    wanted = str(tenant_id) if tenant_id is not None else None
    for row in pipe.execute():
        for raw_field, raw_value in row.items():
            queue, _, rest = raw_field.decode().partition("|")
            tenant, _, name = rest.rpartition("|")
            if wanted is not None and tenant != wanted:
                continue
            counts[queue][tenant][name] += int(raw_value)
    result = {}
    for queue in sorted(counts):
        rows = [
            {"tenant_id": tenant, **{name: c.get(name, 0) for name in wm.TENANT_FLOW_FIELDS}}
            for tenant, c in counts[queue].items()
        ]
        rows.sort(key=lambda r: (-r["enqueued"], -r["processed"], r["tenant_id"]))
        result[queue] = rows[:TOP_TENANTS]
    return result


def name_tenants(session: Session, by_queue: dict[str, list[dict[str, Any]]]) -> None:
    """Add each row's tenant ``name`` (one query for every tenant listed)."""
    ids = {uuid.UUID(row["tenant_id"]) for rows in by_queue.values() for row in rows}
    if not ids:
        return
    names = dict(session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(ids))).all())
    for rows in by_queue.values():
        for row in rows:
            row["tenant_name"] = names.get(uuid.UUID(row["tenant_id"]))
