"""Scheduler jobs: re-drive due and stuck deliveries, disable endpoints failing for days.

:func:`sweep` first takes back claims whose ``locked_until`` passed (a worker was
killed mid-attempt: the attempt is logged as ``worker_lost`` and counts like a
failed one, see :func:`reclaim_stuck`), then claims pending deliveries whose
``sweep_at`` passed with
``FOR UPDATE SKIP LOCKED``, pushes their ``sweep_at`` out, commits and only then
enqueues them. At most ``2 x max_concurrency`` per endpoint are enqueued per sweep,
so a backlog for one slow endpoint does not flood the queue; the rest wait for
the next sweep (or are pulled when a lease frees, see :mod:`.limiter`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from sqlalchemy import case, func, insert, literal_column, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from shared.config import get_settings
from shared.context import Ctx
from shared.models import Tenant, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from shared.webhooks import delivery, health, queue, schedule

log = logging.getLogger(__name__)

#: How long a swept delivery waits before it may be swept again (its message is on the way).
RESWEEP_SECONDS = 30.0
#: Rows over an endpoint's per-sweep share wait this long before being looked at again.
OVERFLOW_SECONDS = 5.0
_ONE_SECOND = literal_column("interval '1 second'")


def reclaim_stuck(session: Session, *, batch: int = 500) -> int:
    """Take back in-flight deliveries whose claim expired: the worker died mid-attempt.

    The lost attempt counts like a failed one: the delivery waits the schedule's
    next delay (5 s after a first attempt), and one lost on its last attempt is
    failed and announced. So a delivery that kills its worker every time (say, a
    payload that runs it out of memory) ends instead of being re-sent forever.
    """
    d = WebhookDelivery
    last = schedule.MAX_ATTEMPTS
    delays = postgresql.array([float(x) for x in schedule.SCHEDULE])
    stuck = (
        select(d.id)
        .where(d.status == "in_flight", d.locked_until < func.now())
        .limit(batch)
        .with_for_update(skip_locked=True)
        .cte("stuck")
        .prefix_with("MATERIALIZED")
    )
    rows = session.execute(
        update(d)
        .where(d.id == stuck.c.id)
        .values(
            status=case((d.attempt_count >= last, "failed"), else_="pending"),
            finished_at=case((d.attempt_count >= last, func.now()), else_=None),
            locked_until=None,
            next_attempt_at=func.now()
            + func.make_interval(
                0, 0, 0, 0, 0, 0, delays[func.least(d.attempt_count, last - 1) + 1]
            ),
            sweep_at=func.now()
            + func.make_interval(
                0, 0, 0, 0, 0, 0, delays[func.least(d.attempt_count, last - 1) + 1]
            ),
            last_error_kind="worker_lost",
        )
        .returning(
            d.id,
            d.tenant_id,
            d.attempt_count,
            d.last_attempt_at,
            d.endpoint_id,
            d.status,
            d.event_id,
            d.event_type,
        )
        .execution_options(synchronize_session=False)
    ).all()
    if rows:
        urls = dict(
            session.execute(
                select(WebhookEndpoint.id, WebhookEndpoint.url).where(
                    WebhookEndpoint.id.in_({r.endpoint_id for r in rows})
                )
            ).all()
        )
        session.execute(
            insert(WebhookAttempt),
            [
                {
                    "tenant_id": r.tenant_id,
                    "delivery_id": r.id,
                    "attempt": r.attempt_count,
                    "started_at": r.last_attempt_at or dt.datetime.now(dt.UTC),
                    "duration_ms": 0,
                    "request_url": urls.get(r.endpoint_id, ""),
                    "request_headers": {},
                    "request_body": "",
                    "error_kind": "worker_lost",
                    "error": "the worker stopped mid-attempt; the outcome is unknown",
                }
                for r in rows
            ],
        )
        for r in rows:
            if r.status == "failed":
                delivery.exhaust(
                    session,
                    tenant_id=r.tenant_id,
                    delivery_id=r.id,
                    endpoint_id=r.endpoint_id,
                    event_id=r.event_id,
                    event_type=r.event_type,
                    attempts=r.attempt_count,
                    last_status_code=None,
                    last_error_kind="worker_lost",
                )
        log.warning("webhooks: took back %d deliveries from lost workers", len(rows))
    return len(rows)


def _active_tenant(d):
    """A suspended tenant's deliveries wait (a worker would skip them) until reactivation."""
    return select(Tenant.id).where(Tenant.id == d.tenant_id, Tenant.status == "active").exists()


def sweep(session: Session, *, batch: int = 500) -> int:
    """Re-drive stuck and due deliveries; commit, then enqueue; return how many were enqueued.

    A suspended tenant's deliveries are left pending until it is reactivated.
    """
    reclaim_stuck(session, batch=batch)
    d, e = WebhookDelivery, WebhookEndpoint
    rows = session.execute(
        select(d.id, d.endpoint_id, e.max_concurrency)
        .join(e, e.id == d.endpoint_id)
        .where(d.status == "pending", d.sweep_at <= func.now(), _active_tenant(d))
        .order_by(d.sweep_at)
        .limit(batch)
        .with_for_update(of=d, skip_locked=True)
    ).all()
    share: dict = defaultdict(int)
    chosen, overflow = [], []
    for row in rows:
        share[row.endpoint_id] += 1
        (chosen if share[row.endpoint_id] <= 2 * row.max_concurrency else overflow).append(row.id)
    for ids, wait in ((chosen, RESWEEP_SECONDS), (overflow, OVERFLOW_SECONDS)):
        if ids:
            session.execute(
                update(d)
                .where(d.id.in_(ids))
                .values(sweep_at=func.now() + wait * _ONE_SECOND)
                .execution_options(synchronize_session=False)
            )
    session.commit()
    if chosen:
        log.info("webhooks: re-driving %d deliveries", len(chosen))
        queue.enqueue([(i, 0.0) for i in chosen])
    return len(chosen)


def disable_failing(session: Session) -> int:
    """Disable endpoints with no success since their first failure longer ago than the limit.

    A suspended tenant's endpoints are skipped: its deliveries are held, so no success
    can end the streak, and disabling would end the held deliveries for good.
    """
    hours = get_settings().webhook_disable_after_hours
    reason = f"no successful delivery for {hours / 24:g} days"
    disabled = 0
    for endpoint_id in _failing(session, hours):
        # WHY again under the lock: a delivery that succeeded since the list was read
        # ended the streak; disabled anyway, the endpoint that works again was switched
        # off and its waiting deliveries ended for good.
        endpoint = session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, *_failing_for(hours))
            .with_for_update()
        ).one_or_none()
        if endpoint is not None:
            disabled += health.disable(session, Ctx.system(endpoint.tenant_id), endpoint, reason)
    return disabled


def _failing_for(hours: float) -> list:
    """Conditions of an endpoint with no success since its first failure ``hours`` ago."""
    return [
        WebhookEndpoint.enabled.is_(True),
        WebhookEndpoint.first_failure_at < func.now() - hours * 3600 * _ONE_SECOND,
        _active_tenant(WebhookEndpoint),
    ]


def _failing(session: Session, hours: float) -> list:
    """The ids of the endpoints failing for ``hours`` (read without locks)."""
    return list(session.scalars(select(WebhookEndpoint.id).where(*_failing_for(hours))))
