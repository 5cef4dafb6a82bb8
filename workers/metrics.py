"""Per-actor worker metrics, counted in Redis so that every process adds up.

Each process that enqueues (API, scheduler, workers) or processes messages
(workers) counts what happens to each message, per actor and per UTC minute,
plus all-time totals for Prometheus and, when a message carries a ``tenant_id``
option, per tenant. The key layout and the read side live in
:mod:`shared.worker_metrics`.

Metrics are best effort: a Redis failure is logged and the update dropped,
never raised into the job, and updates pause for a while afterwards so a Redis
outage costs each job nothing (not one timeout each).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import NamedTuple

import dramatiq
import redis
from dramatiq.common import q_name
from dramatiq.middleware import Retries
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared import worker_metrics as wm
from shared.config import Settings

log = logging.getLogger(__name__)

#: Seconds to wait for Redis to connect or answer before dropping one update.
REDIS_TIMEOUT_SECONDS = 0.5

#: After a Redis failure, updates are dropped (and counted) for this many seconds.
PAUSE_AFTER_FAILURE_SECONDS = 10.0

#: Attributes this middleware sets on a :class:`dramatiq.MessageProxy` during one attempt.
_STARTED_ATTR = "_omnistream_metrics_started"
_ATTEMPT_ATTR = "_omnistream_metrics_attempt"


class _Attempt(NamedTuple):
    duration_ms: float | None
    failed: bool
    skipped: bool


class Metrics(dramatiq.Middleware):
    """Count enqueued, processed, failed, retried and dead-lettered messages and time them.

    One pipelined Redis round trip per message and event: a new message at
    ``after_enqueue``, the outcome of an attempt at ``after_ack`` or
    ``after_nack``. The outcome is written there, not in
    ``after_process_message``, because after-hooks run in reverse middleware
    order: this middleware's ``after_process_message`` runs *before* Retries
    decides whether to retry or fail the message, while ack and nack come once
    that decision is final (a retried message is acked, its copy re-enqueued
    with a delay; a message failed for good is nacked to the dead-letter queue).

    Retry re-enqueues (``retries`` option set) and the hand-over of a delayed
    message from the delay queue to its queue are not counted as enqueued, so
    ``enqueued`` counts new messages only.

    Example::

        RedisBroker(url=..., middleware=[..., Retries(), DeadLetters(), Metrics(settings)])
        # then shared.worker_metrics.snapshot(client, settings.redis_namespace)

    Parameters:
      settings(Settings): ``redis_url``, ``redis_namespace`` and
        ``metrics_retention_minutes`` are used.
      client(redis.Redis): A client to use instead of one built from ``redis_url``.
    """

    def __init__(self, settings: Settings, *, client: redis.Redis | None = None):
        self.namespace = settings.redis_namespace
        self.retention_seconds = settings.metrics_retention_minutes * 60
        self.client = client or redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            # NOTE: redis-py retries 10 times with backoff by default; one immediate
            # retry (a stale pooled connection) is all a best-effort counter may cost.
            retry=Retry(NoBackoff(), 1),
        )
        #: Ids of delayed messages held in this process' memory until their eta.
        self._delayed: set[str] = set()
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._dropped = 0

    # --- enqueue side (every process) ---------------------------------------------------

    def before_delay_message(self, broker, message):
        # NOTE: the consumer re-enqueues this message onto its queue when its eta
        # passes; remembering it here keeps that hand-over from counting as new.
        self._delayed.add(message.message_id)

    def after_enqueue(self, broker, message, delay):
        if message.message_id in self._delayed:
            self._delayed.discard(message.message_id)
            return
        if message.options.get("retries"):
            return  # Retries re-enqueued it; counted as ``retried`` when the attempt is acked.
        self._record(message, {"enqueued": 1})

    # --- processing side (workers) -----------------------------------------------------

    def before_process_message(self, broker, message):
        setattr(message, _STARTED_ATTR, time.perf_counter())

    def after_process_message(self, broker, message, *, result=None, exception=None):
        started = getattr(message, _STARTED_ATTR, None)
        duration_ms = (time.perf_counter() - started) * 1000 if started is not None else None
        setattr(message, _ATTEMPT_ATTR, _Attempt(duration_ms, exception is not None, False))

    def after_skip_message(self, broker, message):
        setattr(message, _ATTEMPT_ATTR, _Attempt(None, False, True))

    def after_ack(self, broker, message):
        attempt: _Attempt | None = getattr(message, _ATTEMPT_ATTR, None)
        if attempt is None:
            return  # a delayed message handed over to its queue, not an attempt
        if attempt.skipped:
            counts = {"skipped": 1}
        elif attempt.failed:
            # NOTE: without Retries, a failure is acked and dropped, not retried.
            counts = {"failed": 1, "retried": 1} if _has_retries(broker) else {"failed": 1}
        else:
            counts = {"processed": 1}
        self._record(message, counts, attempt.duration_ms)

    def after_nack(self, broker, message):
        # NOTE: a nack without an attempt is a message failed before it could run
        # (an unknown actor); it lands in the dead-letter queue all the same.
        attempt: _Attempt | None = getattr(message, _ATTEMPT_ATTR, None)
        counts = {"dead_lettered": 1}
        if attempt is not None and attempt.skipped:
            counts["skipped"] = 1
        elif attempt is not None and attempt.failed:
            counts["failed"] = 1
        self._record(message, counts, attempt.duration_ms if attempt else None)

    # --- writing -----------------------------------------------------------------------

    def _record(self, message, counts: Mapping[str, int], duration_ms: float | None = None):
        """Add ``counts`` (and one processing time) for ``message`` in one round trip."""
        if self._paused():
            return
        queue, actor = q_name(message.queue_name), message.actor_name
        fields = dict(counts)
        if duration_ms is not None:
            fields[wm.bucket_field(duration_ms)] = 1
            fields[wm.TIME_SUM_FIELD] = round(duration_ms * 1000)
            fields[wm.TIME_COUNT_FIELD] = 1
        minute = wm.minute_of(time.time())
        # NOTE: EXPIREAT from the end of the minute, so every write sets the same deadline.
        expire_at = (minute + 1) * 60 + self.retention_seconds
        tenant_id = wm.tenant_id_from_options(message.options)
        try:
            pipe = self.client.pipeline(transaction=False)
            key = wm.minute_key(self.namespace, minute)
            for name, amount in fields.items():
                pipe.hincrby(key, wm.field(queue, actor, name), amount)
                pipe.hincrby(wm.totals_key(self.namespace), wm.field(queue, actor, name), amount)
            pipe.expireat(key, expire_at)
            if tenant_id is not None:
                key = wm.tenant_minute_key(self.namespace, tenant_id, minute)
                for name, amount in fields.items():
                    if name in wm.TENANT_FIELDS:
                        pipe.hincrby(key, wm.field(queue, actor, name), amount)
                pipe.expireat(key, expire_at)
            pipe.execute()
        except Exception:
            self._pause()

    def _paused(self) -> bool:
        if time.monotonic() >= self._paused_until:
            with self._lock:
                dropped, self._dropped = self._dropped, 0
            if dropped:
                log.warning("worker metrics resumed; %d update(s) were dropped", dropped)
            return False
        with self._lock:
            self._dropped += 1
        return True

    def _pause(self) -> None:
        with self._lock:
            self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_SECONDS
            self._dropped += 1
        log.warning(
            "worker metrics could not be written to Redis; dropping updates for %.0f s",
            PAUSE_AFTER_FAILURE_SECONDS,
            exc_info=True,
        )


def _has_retries(broker: dramatiq.Broker) -> bool:
    return any(isinstance(middleware, Retries) for middleware in broker.middleware)
