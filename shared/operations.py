"""What operators and tenant admins read about the platform's health and background work."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from redis.exceptions import RedisError
from sqlalchemy import exists, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from shared import dead_letters, queue_stats, worker_metrics
from shared.config import Settings, get_settings
from shared.errors import DependencyUnavailable
from shared.models import OutboxEvent, Tenant
from shared.ops import processes, redis_access
from shared.ops.dramatiq_series import DramatiqCollector
from shared.redis_client import get_redis
from shared.scheduler_status import SchedulerStatus, scheduler_status

log = logging.getLogger(__name__)

#: What a tenant is told when the broker cannot be read (APPSEC: its address, in the
#: error's text, is the platform's: operators see the error itself).
BROKER_DOWN = "The message broker is unreachable"


def broker_error_for(error: str | None, tenant_id: uuid.UUID | None) -> str | None:
    """``error`` for the platform operator (``tenant_id`` None), a plain sentence for a tenant."""
    if error is None or tenant_id is None:
        return error
    return BROKER_DOWN


@dataclass
class HealthReport:
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def down(self) -> list[str]:
        return [name for name, check in self.checks.items() if not check["ok"]]

    def as_dict(self) -> dict[str, Any]:
        return {"status": "down" if self.down else "ok", "down": self.down, "checks": self.checks}


def _timed(check) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = check() or {}
        ok = result.pop("ok", True)
    except (
        SQLAlchemyError,
        psycopg.Error,
        RedisError,
        queue_stats.BrokerUnavailable,
        OSError,
    ) as exc:
        # APPSEC: the endpoint is public; the details (hosts, database names) go to the log.
        log.warning("health check %s failed", check.__name__, exc_info=True)
        result, ok = {"error": f"unreachable ({type(exc).__name__})"}, False
    return {"ok": ok, "latency_ms": round((time.perf_counter() - started) * 1000, 2), **result}


def _broker_is_the_redis(settings: Settings) -> bool:
    """True when the broker's queues live on the Redis of ``REDIS_URL`` (the default)."""
    return not settings.uses_rabbitmq and settings.effective_broker_url == settings.redis_url


def health(session: Session, queue_names: Sequence[str]) -> HealthReport:
    """Check PostgreSQL, Redis, the broker's queues and the scheduler heartbeat, now.

    Every answer is read for this request, except RabbitMQ's queue depths: those come
    over a kept connection and are reused for about a second (a burst of probes costs
    one check; see :mod:`shared.rabbitmq_probe`).
    PERF: health is polled by every load balancer, so each dependency gets one round
    trip. The heartbeat read is the database check (an answer proves PostgreSQL is
    up), and when the broker is the Redis of ``REDIS_URL`` its queue-depth script is
    the Redis check too; a separate broker (RabbitMQ, another Redis) still gets its
    own ``PING`` of ``REDIS_URL``.
    """
    settings = get_settings()
    status = None

    def database():
        nonlocal status
        status = scheduler_status(session)

    def broker():
        return {"queues": queue_stats.queue_depths(queue_names, settings)}

    def redis_ping():
        get_redis().ping()

    database_check = _timed(database)
    broker_check = _timed(broker)
    if _broker_is_the_redis(settings):
        redis_check = {"ok": broker_check["ok"], "checked_by": "broker"}
        if "error" in broker_check:
            redis_check["error"] = broker_check["error"]
    else:
        redis_check = _timed(redis_ping)
    report = HealthReport()
    report.checks["database"] = database_check
    report.checks["redis"] = redis_check
    report.checks["broker"] = broker_check
    report.checks["scheduler"] = _scheduler_check(status, database_ok=database_check["ok"])
    return report


def _scheduler_check(status: SchedulerStatus | None, *, database_ok: bool) -> dict[str, Any]:
    """The scheduler's check, from the heartbeat row the database check read."""
    if not database_ok:
        return {"ok": False, "error": "unknown: the database is down"}
    if status is None:
        return {"ok": False, "error": "no scheduler has ever run"}
    return {
        "ok": status.healthy,
        "heartbeat_age_seconds": round(status.age_seconds, 2),
        "leader": {"hostname": status.hostname, "pid": status.pid},
    }


def outbox_backlog(session: Session, tenant_id: uuid.UUID | None) -> dict[str, Any]:
    """Pending outbox events and the age of the oldest (the dispatch lag), and failed ones.

    ``pending`` and its age count only events that should be flowing: a suspended
    tenant's pending events are held on purpose (the sweeper leaves them until it is
    reactivated, :mod:`shared.outbox_sweeper`, by the same rule), so they are counted
    apart as ``held_for_suspended`` and never raise the lag operators alert on.
    """
    held = exists().where(Tenant.id == OutboxEvent.tenant_id, Tenant.status != "active")
    query = select(
        func.count().filter(~held),
        func.extract(
            "epoch", func.clock_timestamp() - func.min(OutboxEvent.occurred_at).filter(~held)
        ),
        func.count().filter(held),
    ).where(OutboxEvent.status == "pending")
    if tenant_id is not None:
        query = query.where(OutboxEvent.tenant_id == tenant_id)
    pending, oldest, held_count = session.execute(query).one()
    failed_query = select(func.count()).where(OutboxEvent.status == "failed")
    if tenant_id is not None:
        failed_query = failed_query.where(OutboxEvent.tenant_id == tenant_id)
    return {
        "pending": pending,
        "oldest_pending_age_seconds": round(float(oldest), 3) if oldest is not None else None,
        "held_for_suspended": held_count,
        "failed": session.scalar(failed_query),
    }


def worker_metrics_report(
    session: Session,
    queue_names: Sequence[str],
    *,
    tenant_id: uuid.UUID | None,
    minutes: int,
) -> dict[str, Any]:
    """Per-actor throughput, failures and latency, queue depths, dead letters, outbox lag.

    With ``tenant_id`` the counts are that tenant's messages only; queue depths
    are platform-wide (they say how busy the workers are, nothing about tenants).
    """
    settings = get_settings()
    try:
        report = worker_metrics.snapshot(
            get_redis(), settings.redis_namespace, minutes=minutes, tenant_id=tenant_id
        )
    except worker_metrics.MetricsUnavailable as exc:
        raise DependencyUnavailable("Worker metrics are unavailable: Redis is down") from exc
    try:
        report["queues"] = queue_stats.queue_depths(queue_names)
    except queue_stats.BrokerUnavailable as exc:
        report["queues"] = None
        report["broker_error"] = broker_error_for(str(exc), tenant_id)
    latest = dead_letters.list_dead_letters(session, tenant_id=tenant_id, limit=20)
    report["dead_letters"] = {
        "count": dead_letters.count_dead_letters(session, tenant_id=tenant_id),
        "latest": [
            {
                "id": str(row.id),
                "message_id": row.message_id,
                "queue": row.queue_name,
                "actor": row.actor_name,
                "retries": row.retries,
                "error": row.error,
                "failed_at": dead_letters.rfc3339(row.failed_at),
            }
            for row in latest
        ],
    }
    report["outbox"] = outbox_backlog(session, tenant_id)
    return report


def prometheus_exposition(session: Session, queue_names: Sequence[str]) -> bytes:
    """Our series and Dramatiq's own (:mod:`shared.ops.dramatiq_series`), one scrape."""
    settings = get_settings()
    try:
        depths = queue_stats.queue_depths(queue_names)
    except queue_stats.BrokerUnavailable:
        depths = None
    try:
        dead = dead_letters.count_dead_letters(session)
    except SQLAlchemyError:
        dead = None
    client = redis_access.client()
    try:
        live = processes.live_processes(client, settings.redis_namespace)
        running, held = processes.busy_by_actor(live), processes.delayed_by_actor(live)
        return worker_metrics.render_prometheus(
            client,
            settings.redis_namespace,
            depths,
            dead,
            extra=[lambda totals: DramatiqCollector(totals, running, held)],
        )
    except (worker_metrics.MetricsUnavailable, RedisError) as exc:
        raise DependencyUnavailable("Worker metrics are unavailable: Redis is down") from exc
