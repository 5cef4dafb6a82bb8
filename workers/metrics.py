"""Per-actor worker metrics, counted in Redis so that every process adds up.

Each process that enqueues (API, scheduler, workers) or processes messages
(workers) counts what happens to each message, per actor and per UTC minute,
plus all-time totals for Prometheus and, when a message carries a ``tenant_id``
option, per tenant. The key layout and the read side live in
:mod:`shared.worker_metrics`.

Counts are added up in memory and written to Redis in one pipelined round trip
per process every ``metrics_flush_seconds`` (and at shutdown), not per message:
a round trip per message cost a busy worker more CPU than some of its jobs.
Readers therefore see a process's counts up to that interval late.

Metrics never fail a job: Redis is written from a thread of its own. If it
cannot be written, the counts are kept (they are sums, so they merge exactly)
and written once Redis answers again; a warning is logged once per outage.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import NamedTuple

import dramatiq
import redis
from dramatiq.common import q_name
from dramatiq.middleware import CurrentMessage, Retries
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared import worker_metrics as wm
from shared.config import Settings

log = logging.getLogger(__name__)

#: Seconds to wait for Redis to connect or answer before a flush gives up (and retries later).
REDIS_TIMEOUT_SECONDS = 0.5

#: Attributes this middleware sets on a :class:`dramatiq.MessageProxy` during one attempt.
_STARTED_ATTR = "_omnistream_metrics_started"
_ATTEMPT_ATTR = "_omnistream_metrics_attempt"


class _Attempt(NamedTuple):
    duration_ms: float | None
    failed: bool
    skipped: bool


class Metrics(dramatiq.Middleware):
    """Count enqueued, processed, failed, retried and dead-lettered messages and time them.

    Counted at ``after_enqueue`` (a new message) and at ``after_ack`` or
    ``after_nack`` (the outcome of an attempt). The outcome is counted there, not in
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
      settings(Settings): ``redis_url``, ``redis_namespace``,
        ``metrics_retention_minutes`` and ``metrics_flush_seconds`` are used.
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
        self.flush_seconds = settings.metrics_flush_seconds
        #: Ids of delayed messages held in this process' memory until their eta.
        self._delayed: set[str] = set()
        self._lock = threading.Lock()
        # Under _lock: increments not yet written (Redis key -> field -> amount), the
        # expiry of each minute key, and the process they were counted in.
        self._pending: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._expire_at: dict[str, int] = {}
        self._pid = os.getpid()
        self._flusher: threading.Thread | None = None
        self._failing = False

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

    def after_worker_shutdown(self, broker, worker):
        self.flush()

    def count_items(self, message, items: Mapping[str, int]) -> None:
        """Add items of work ``message``'s actor reports (rows purged...) to its counters."""
        fields = {wm.item_field(item): amount for item, amount in items.items() if amount}
        if fields:
            self._record(message, fields)

    # --- counting ----------------------------------------------------------------------

    def _record(self, message, counts: Mapping[str, int], duration_ms: float | None = None):
        """Add ``counts`` (and one processing time) for ``message`` to the next flush."""
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
        minute_key = wm.minute_key(self.namespace, minute)
        totals_key = wm.totals_key(self.namespace)
        with self._lock:
            self._start_flusher()
            by_minute, totals = self._pending[minute_key], self._pending[totals_key]
            for name, amount in fields.items():
                by_minute[wm.field(queue, actor, name)] += amount
                totals[wm.field(queue, actor, name)] += amount
            if duration_ms is not None:
                # All-time only: the histogram /metrics exposes in Dramatiq's own buckets.
                totals[wm.field(queue, actor, wm.dramatiq_bucket_field(duration_ms))] += 1
                totals[wm.field(queue, actor, wm.DRAMATIQ_SUM_FIELD)] += int(duration_ms)
            self._expire_at[minute_key] = expire_at
            if tenant_id is not None:
                tenant_key = wm.tenant_minute_key(self.namespace, tenant_id, minute)
                by_tenant = self._pending[tenant_key]
                for name, amount in fields.items():
                    if name in wm.TENANT_FIELDS:
                        by_tenant[wm.field(queue, actor, name)] += amount
                self._expire_at[tenant_key] = expire_at
                flow_key = wm.tenant_flow_key(self.namespace, minute)
                by_queue = self._pending[flow_key]
                for name, amount in fields.items():
                    if name in wm.TENANT_FLOW_FIELDS:
                        by_queue[wm.field(queue, str(tenant_id), name)] += amount
                self._expire_at[flow_key] = expire_at

    # --- writing -----------------------------------------------------------------------

    def flush(self) -> bool:
        """Write every pending count to Redis in one round trip; False if Redis failed.

        Counts that could not be written stay pending for the next flush.
        """
        with self._lock:
            self._forget_if_forked()
            pending, self._pending = self._pending, defaultdict(Counter)
            expire_at, self._expire_at = self._expire_at, {}
        if not pending:
            return True
        try:
            pipe = self.client.pipeline(transaction=False)
            for redis_key, fields in pending.items():
                for name, amount in fields.items():
                    pipe.hincrby(redis_key, name, amount)
            for redis_key, deadline in expire_at.items():
                pipe.expireat(redis_key, deadline)
            pipe.execute()
        except Exception:
            self._keep(pending, expire_at)
            if not self._failing:
                self._failing = True
                log.warning(
                    "worker metrics could not be written to Redis; counts are kept and "
                    "retried every %.1f s",
                    self.flush_seconds,
                    exc_info=True,
                )
            return False
        if self._failing:
            self._failing = False
            log.warning("worker metrics written to Redis again")
        return True

    def _keep(self, pending: Mapping[str, Counter[str]], expire_at: Mapping[str, int]) -> None:
        """Put unwritten counts back (sums merge exactly), minus minutes already expired."""
        now = time.time()
        with self._lock:
            for redis_key, fields in pending.items():
                deadline = expire_at.get(redis_key)
                if deadline is not None and deadline <= now:
                    continue
                self._pending[redis_key].update(fields)
                if deadline is not None:
                    self._expire_at[redis_key] = max(deadline, self._expire_at.get(redis_key, 0))

    def _forget_if_forked(self) -> None:
        """In a forked child, drop the parent's pending counts and flusher (lock held).

        The parent writes its own counts; the child counting them again would double them.
        """
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._pending, self._expire_at = defaultdict(Counter), {}
            self._flusher = None

    def _start_flusher(self) -> None:
        """Start this process's flush thread on first use (lock held)."""
        self._forget_if_forked()
        if self._flusher is not None:
            return
        self._flusher = threading.Thread(
            target=_flush_forever,
            args=(weakref.ref(self),),
            name="worker-metrics-flush",
            daemon=True,
        )
        self._flusher.start()
        _live.add(self)


#: Every middleware that counted something in this process, flushed once more at exit.
_live: weakref.WeakSet[Metrics] = weakref.WeakSet()


def _flush_forever(ref: weakref.ref[Metrics]) -> None:
    """Flush every interval for as long as the middleware lives (a weak reference, so
    a middleware dropped by its owner takes its thread with it)."""
    while (metrics := ref()) is not None:
        interval = metrics.flush_seconds
        del metrics
        time.sleep(interval)
        if (metrics := ref()) is None:
            return
        try:
            metrics.flush()
        except Exception:  # pragma: no cover - flush() already handles Redis errors
            log.exception("worker metrics flush failed")
        del metrics


@atexit.register
def flush_all() -> None:
    """Write every live recorder's pending counts now (at exit, and before a test run
    deletes its Redis namespace, so no late flush leaves keys behind)."""
    for metrics in list(_live):
        metrics.flush()


def count_items(items: Mapping[str, int]) -> None:
    """Count items of work the running actor did, e.g. ``{"webhook_deliveries": 5000}``.

    They add up per actor beside its message counters (``"items"`` in the
    snapshot, ``omnistream_worker_items_total`` in Prometheus). Needs the
    CurrentMessage middleware; outside an actor it raises RuntimeError.
    """
    message = CurrentMessage.get_current_message()
    if message is None:
        raise RuntimeError("count_items() is for the actor that is running")
    for middleware in dramatiq.get_broker().middleware:
        if isinstance(middleware, Metrics):
            middleware.count_items(message, items)


def _has_retries(broker: dramatiq.Broker) -> bool:
    return any(isinstance(middleware, Retries) for middleware in broker.middleware)
