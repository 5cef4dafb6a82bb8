"""Build the Dramatiq broker from settings and make it the global broker.

Redis is the default (``BROKER_URL`` unset or ``redis://``), its consumers woken by
enqueues rather than polling (:mod:`workers.wake`); ``amqp://`` selects RabbitMQ.
Import this module before any actor module: Dramatiq binds actors to the global
broker when they are declared.

Retries are set on purpose (Dramatiq's default of 20 retries from 15 s is far too
patient for most of our jobs): each actor names its own ``max_retries`` and
backoff, and a message that exhausts them is dead-lettered, recorded in
Postgres and counted in the worker metrics.
"""

from __future__ import annotations

import logging

import dramatiq
from dramatiq import cli
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from shared import logs
from shared.config import Settings, get_settings
from shared.queue_stats import redis_broker_namespace
from workers.dead_letters import DeadLetters
from workers.log_context import LogContext
from workers.metrics import Metrics
from workers.prefetch import shared_prefetch
from workers.presence import Presence
from workers.tenant_gate import TenantGate
from workers.tuning import FreezeStartupHeap, WorkerTimeout
from workers.wake import WakingRedisBroker

#: Default retry policy for actors that do not set their own.
DEFAULT_MAX_RETRIES = 5
DEFAULT_MIN_BACKOFF_MS = 1_000
DEFAULT_MAX_BACKOFF_MS = 5 * 60_000
#: Default bound on one job's run time; actors doing network I/O set their own.
DEFAULT_TIME_LIMIT_MS = 5 * 60_000


def build_middleware(settings: Settings) -> list[dramatiq.Middleware]:
    return [
        # NOTE: first, so its after-hooks run last: every record of a job has its tenant.
        LogContext(),
        AgeLimit(),
        TimeLimit(time_limit=DEFAULT_TIME_LIMIT_MS),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        CurrentMessage(),
        Retries(
            max_retries=DEFAULT_MAX_RETRIES,
            min_backoff=DEFAULT_MIN_BACKOFF_MS,
            max_backoff=DEFAULT_MAX_BACKOFF_MS,
        ),
        # NOTE: after-hooks run in reverse order, so these two see a message after
        # Retries has decided whether it failed for good.
        DeadLetters(),
        # NOTE: a suspended tenant's message is recorded and skipped before it counts as busy.
        TenantGate(),
        # NOTE: before Metrics, so a message it skips (cancelled) is counted as skipped.
        Presence(settings),
        Metrics(settings),
        WorkerTimeout(settings.effective_worker_timeout_ms),
        FreezeStartupHeap(),
    ]


class SharingRabbitmqBroker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker whose consumers hold a share of some queues
    (:mod:`workers.prefetch`), as the Redis broker's do."""

    def consume(self, queue_name, prefetch=1, timeout=5000):
        return super().consume(queue_name, shared_prefetch(queue_name, prefetch), timeout)


def build_broker(settings: Settings | None = None) -> dramatiq.Broker:
    """Return a new broker for ``settings`` (Redis, or RabbitMQ for ``amqp://`` URLs)."""
    settings = settings or get_settings()
    middleware = build_middleware(settings)
    if settings.uses_rabbitmq:
        return SharingRabbitmqBroker(url=settings.effective_broker_url, middleware=middleware)
    return WakingRedisBroker(
        url=settings.effective_broker_url,
        namespace=redis_broker_namespace(settings),
        middleware=middleware,
        heartbeat_timeout=settings.redis_broker_heartbeat_timeout_ms,
    )


def _adopt_dramatiq_cli_logging() -> None:
    """Under ``dramatiq workers.main``, log in LOG_FORMAT with our context too.

    Each worker process configured logging (a handler in Dramatiq's format, writing
    to the pipe its parent reads) before importing us: keep the handler, change its
    format. Under ``python -m workers`` ours is already there and this finds nothing.
    """
    logs.adopt(
        [
            handler
            for handler in logging.getLogger().handlers
            if handler.formatter is not None and handler.formatter._fmt == cli.LOGFORMAT
        ]
    )


# NOTE: before the broker reads the settings, whose first read may log a warning.
_adopt_dramatiq_cli_logging()
broker = build_broker()
dramatiq.set_broker(broker)
