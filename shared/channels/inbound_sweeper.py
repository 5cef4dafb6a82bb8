"""Scheduler job: re-enqueue inbound payloads still ``pending`` after their fast-path enqueue.

The ack path enqueues ``process_inbound`` after commit; a crash between commit and
enqueue, a lost broker message or a broker outage leaves the row ``pending``. Rows
received (or last swept) more than ``INBOUND_SWEEP_AFTER_SECONDS`` ago
are claimed with ``FOR UPDATE SKIP LOCKED`` and enqueued after this job commits.
Processing is idempotent, so an occasional double enqueue is harmless. A suspended
tenant's rows wait here (its worker would only drop them again) until it is reactivated.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.channels import inbound_queue
from shared.config import get_settings
from shared.models import InboundEvent, Tenant

log = logging.getLogger(__name__)

BATCH = 500


def sweep(session: Session) -> int:
    """Claim and re-enqueue stuck pending rows; return how many."""
    after = dt.timedelta(seconds=get_settings().inbound_sweep_after_seconds)
    active = select(Tenant.id).where(Tenant.id == InboundEvent.tenant_id, Tenant.status == "active")
    stuck = (
        select(InboundEvent.id)
        .where(
            InboundEvent.status == "pending",
            InboundEvent.sweep_at < func.now() - after,
            active.exists(),
        )
        .order_by(InboundEvent.sweep_at)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(stuck))
    if ids:
        # NOTE: sweep_at moves forward so the row is not swept again before its job ran.
        session.execute(
            update(InboundEvent).where(InboundEvent.id.in_(ids)).values(sweep_at=func.now())
        )
        inbound_queue.enqueue_after_commit(session, ids)
        log.warning("re-enqueued %d inbound payload(s) still pending", len(ids))
    return len(ids)
