"""Outbox rows written as a test needs them: pending, never enqueued, out of the sweeper's
reach for an hour, so the test alone decides when (and with what) they are dispatched."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import func

from shared.db import session_scope
from shared.models import OutboxEvent


def unswept_event(
    tenant_id: uuid.UUID,
    event_type: str,
    data: dict[str, Any],
    *,
    actor_type: str = "system",
    **columns: Any,
) -> uuid.UUID:
    """Commit one pending outbox row in a transaction of its own; its id."""
    with session_scope() as session:
        row = OutboxEvent(
            tenant_id=tenant_id,
            type=event_type,
            actor_type=actor_type,
            data=data,
            next_sweep_at=func.now() + dt.timedelta(hours=1),
            **columns,
        )
        session.add(row)
        session.flush()
        return row.id
