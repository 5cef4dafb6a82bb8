"""Worker metrics in Redis: the key layout, the read side and the Prometheus rendering.

:class:`workers.metrics.Metrics` writes the counters from every process that
enqueues or processes messages (API, scheduler, workers), so they add up across
machines. This module is the other half: the API reads them here without
importing ``workers``. Every key lives under ``{namespace}:metrics:``:

``minute:{m}``
    One hash per UTC minute ``m`` (Unix time // 60) for every actor; it expires
    ``metrics_retention_minutes`` after the minute ends.
``tenant:{tenant_id}:minute:{m}``
    The same for the messages of one tenant (the ``tenant_id`` message option),
    with the lean field set :data:`TENANT_FIELDS`: no histogram buckets.
``totals``
    All-time counters and histogram that never expire, so the Prometheus
    counters rendered from them are monotonic.

A field is ``{queue}|{actor}|{name}`` where ``name`` is one of :data:`COUNTERS`,
a histogram bucket (``le:25`` counts processing times in (10 ms, 25 ms]; the
buckets are *not* cumulative in Redis), ``time_us`` (the sum of processing
times in microseconds), ``time_count``, or ``count:{item}``: items of work an
actor reports it did (``count:webhook_deliveries`` rows purged...), see
:data:`ITEM_PREFIX`.

Example::

    client = redis.Redis.from_url(settings.redis_url)
    data = snapshot(client, settings.redis_namespace, minutes=15)
    data["actors"]["dispatch_event"]["totals"]["p95_ms"]
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

#: The message option that names the tenant a message works for.
TENANT_OPTION = "tenant_id"

#: What can happen to a message, one counter each:
#: ``enqueued`` a new message was sent (retries and delay hand-overs are not new);
#: ``processed`` the actor returned; ``failed`` the actor raised (every attempt);
#: ``retried`` a failure that Retries scheduled again; ``dead_lettered`` the message
#: was rejected for good; ``skipped`` a middleware skipped it (e.g. AgeLimit).
COUNTERS = ("enqueued", "processed", "failed", "retried", "dead_lettered", "skipped")

#: Upper bounds of the processing-time histogram buckets, in milliseconds (+Inf is implied).
#: PERF: a bucket costs a hash field only in the minutes it is hit, so the fine
#: low end (most of our jobs take a few ms) is free for slow actors.
BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

#: Histogram field names, one per bucket, the last one for +Inf.
BUCKET_FIELDS = (*(f"le:{bound}" for bound in BUCKETS_MS), "le:+Inf")

#: Dramatiq's own Prometheus middleware (dramatiq/middleware/prometheus.py, 2.x) buckets its
#: ``dramatiq_message_duration_milliseconds`` histogram here; the all-time totals keep a
#: second histogram on these bounds (fields ``dramatiq_le:{bound}``, not cumulative) so
#: ``/metrics`` can expose that series exactly as Dramatiq does.
DRAMATIQ_BUCKETS_MS = (
    5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000, 30000, 60000,
    600000, 900000,
)  # fmt: skip
DRAMATIQ_BUCKET_FIELDS = (
    *(f"dramatiq_le:{bound}" for bound in DRAMATIQ_BUCKETS_MS),
    "dramatiq_le:+Inf",
)

#: Sum of those whole-millisecond durations (Dramatiq's histogram ``_sum``).
DRAMATIQ_SUM_FIELD = "dramatiq_ms"


def dramatiq_bucket_field(duration_ms: float) -> str:
    """Return the Dramatiq-histogram field counting ``duration_ms``.

    Dramatiq observes whole milliseconds (``current_millis()`` differences), so the
    duration is truncated the same way before it is placed.
    """
    whole = int(duration_ms)
    for bound, name in zip(DRAMATIQ_BUCKETS_MS, DRAMATIQ_BUCKET_FIELDS, strict=False):
        if whole <= bound:
            return name
    return DRAMATIQ_BUCKET_FIELDS[-1]


#: Sum (microseconds, an integer so HINCRBY adds it exactly) and count of processing times.
TIME_SUM_FIELD = "time_us"
TIME_COUNT_FIELD = "time_count"

#: Prefix of the fields that count items of work an actor reports (rows deleted...):
#: ``count:{item}``. They appear as ``"items": {item: n}`` in :func:`snapshot` and as
#: ``omnistream_worker_items_total{actor,queue,item}`` in Prometheus.
ITEM_PREFIX = "count:"

#: Fields kept per tenant: enough for throughput, failure rate and mean latency.
TENANT_FIELDS = (*COUNTERS, TIME_SUM_FIELD, TIME_COUNT_FIELD)

#: The widest window :func:`snapshot` reads (one week of minutes).
MAX_SNAPSHOT_MINUTES = 7 * 24 * 60

#: ``Content-Type`` of :func:`render_prometheus` output.
CONTENT_TYPE = CONTENT_TYPE_LATEST

_SEPARATOR = "|"


class MetricsUnavailable(Exception):
    """Redis could not be read; the API answers 503."""


# --- key layout (shared with workers.metrics) ---------------------------------------------


def minute_of(timestamp: float) -> int:
    """Return the UTC minute number (Unix time // 60) of a Unix timestamp."""
    return int(timestamp // 60)


def minute_key(namespace: str, minute: int) -> str:
    return f"{namespace}:metrics:minute:{minute}"


def tenant_minute_key(namespace: str, tenant_id: uuid.UUID | str, minute: int) -> str:
    return f"{namespace}:metrics:tenant:{tenant_id}:minute:{minute}"


def tenant_flow_key(namespace: str, minute: int) -> str:
    """Per-minute hash of every tenant's counts per queue: fields ``{queue}|{tenant}|{name}``
    for the names in :data:`TENANT_FLOW_FIELDS` (which tenant floods which queue)."""
    return f"{namespace}:metrics:tenants:minute:{minute}"


#: Counters kept per queue and tenant in :func:`tenant_flow_key`.
TENANT_FLOW_FIELDS = ("enqueued", "processed", "failed", "dead_lettered")


def totals_key(namespace: str) -> str:
    return f"{namespace}:metrics:totals"


def field(queue: str, actor: str, name: str) -> str:
    """Return the hash field of one counter of one actor."""
    return f"{queue}{_SEPARATOR}{actor}{_SEPARATOR}{name}"


def item_field(item: str) -> str:
    """Return the counter name of one kind of work item (see :data:`ITEM_PREFIX`)."""
    return f"{ITEM_PREFIX}{item}"


def _items(counts: Mapping[str, int]) -> dict[str, int]:
    return {
        name.removeprefix(ITEM_PREFIX): value
        for name, value in sorted(counts.items())
        if name.startswith(ITEM_PREFIX)
    }


def bucket_field(duration_ms: float) -> str:
    """Return the histogram field counting ``duration_ms`` (the first bound it fits under)."""
    for bound, name in zip(BUCKETS_MS, BUCKET_FIELDS, strict=False):
        if duration_ms <= bound:
            return name
    return BUCKET_FIELDS[-1]


def tenant_id_from_options(options: Mapping[str, Any]) -> uuid.UUID | None:
    """Return the message's ``tenant_id`` option as a UUID, or None when absent or malformed.

    NOTE: parsing (rather than trusting the string) keeps arbitrary option values
    out of Redis key names.
    """
    value = options.get(TENANT_OPTION)
    if not value:
        return None
    return _parsed_tenant(value if isinstance(value, str) else str(value))


@functools.lru_cache(maxsize=4096)
def _parsed_tenant(value: str) -> uuid.UUID | None:
    """PERF: five middlewares ask for each message's tenant; its few strings repeat."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _parse_field(raw: bytes | str) -> tuple[str, str, str] | None:
    text = raw.decode() if isinstance(raw, bytes) else raw
    queue, sep, rest = text.partition(_SEPARATOR)
    actor, sep2, name = rest.rpartition(_SEPARATOR)
    if not (sep and sep2 and actor):
        return None
    return queue, actor, name


# --- read side ------------------------------------------------------------------------------


def percentile_ms(bucket_counts: Sequence[int], quantile: float) -> float | None:
    """Estimate a quantile from non-cumulative bucket counts (aligned with :data:`BUCKET_FIELDS`).

    Interpolates linearly inside the bucket holding the rank, as Prometheus'
    ``histogram_quantile`` does; a rank in the +Inf bucket returns the highest
    finite bound. Returns None when there are no observations.
    """
    total = sum(bucket_counts)
    if total <= 0:
        return None
    rank = quantile * total
    seen, lower = 0, 0.0
    for bound, count in zip((*BUCKETS_MS, math.inf), bucket_counts, strict=False):
        if count and seen + count >= rank:
            if bound == math.inf:
                return float(BUCKETS_MS[-1])
            return round(lower + (bound - lower) * (rank - seen) / count, 3)
        seen += count
        lower = float(bound)
    return float(BUCKETS_MS[-1])


def _summarise(counts: Mapping[str, int], *, with_histogram: bool) -> dict[str, Any]:
    summary: dict[str, Any] = {name: counts.get(name, 0) for name in COUNTERS}
    attempts = summary["processed"] + summary["failed"]
    summary["failure_rate"] = round(summary["failed"] / attempts, 4) if attempts else None
    time_count = counts.get(TIME_COUNT_FIELD, 0)
    summary["avg_ms"] = (
        round(counts.get(TIME_SUM_FIELD, 0) / time_count / 1000, 3) if time_count else None
    )
    buckets = [counts.get(name, 0) for name in BUCKET_FIELDS]
    summary["p50_ms"] = percentile_ms(buckets, 0.50) if with_histogram else None
    summary["p95_ms"] = percentile_ms(buckets, 0.95) if with_histogram else None
    summary["p99_ms"] = percentile_ms(buckets, 0.99) if with_histogram else None
    if items := _items(counts):
        summary["items"] = items
    return summary


def _iso_minute(minute: int) -> str:
    return dt.datetime.fromtimestamp(minute * 60, dt.UTC).isoformat().replace("+00:00", "Z")


def snapshot(
    redis_client: redis.Redis,
    namespace: str,
    *,
    minutes: int = 60,
    tenant_id: uuid.UUID | str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Return per-actor metrics for the last ``minutes`` minutes (the current one included).

    With ``tenant_id``, only that tenant's messages are counted, and latency is
    the mean only (``p50_ms``/``p95_ms``/``p99_ms`` are None: tenants keep no histogram).
    One pipelined round trip to Redis. Raises :class:`MetricsUnavailable` when
    Redis cannot be read, ``ValueError`` for a window outside
    1..:data:`MAX_SNAPSHOT_MINUTES` or a ``tenant_id`` that is not a UUID.

    The result, for each actor seen in the window::

        {"window": {"minutes": 60, "from": "...Z", "to": "...Z"}, "tenant_id": None,
         "actors": {"dispatch_event": {
             "queue": "events",
             "totals": {"enqueued": 9, "processed": 8, "failed": 1, "retried": 1,
                        "dead_lettered": 0, "skipped": 0, "failure_rate": 0.1111,
                        "avg_ms": 3.2, "p50_ms": 2.5, "p95_ms": 9.0, "p99_ms": 9.8},
             "series": [{"minute": "...Z", ...the same keys...}, ...]}}}   # oldest first

    ``failure_rate`` is failed / (processed + failed) attempts, None without attempts.
    An actor that reports items of work (``purge_old_rows``: rows deleted per table)
    has ``"items": {"webhook_deliveries": 5000, ...}`` beside its counters, wherever
    the window counted some.
    """
    if not 1 <= minutes <= MAX_SNAPSHOT_MINUTES:
        raise ValueError(f"minutes must be within 1..{MAX_SNAPSHOT_MINUTES}")
    last = minute_of(time.time() if now is None else now)
    first = last - minutes + 1
    tenant = str(uuid.UUID(str(tenant_id))) if tenant_id is not None else None
    try:
        pipe = redis_client.pipeline(transaction=False)
        for minute in range(first, last + 1):
            key = (
                tenant_minute_key(namespace, tenant, minute)
                if tenant
                else minute_key(namespace, minute)
            )
            pipe.hgetall(key)
        rows = pipe.execute()
    except redis.RedisError as exc:
        raise MetricsUnavailable(f"worker metrics unavailable: {exc}") from exc

    queues: dict[str, str] = {}
    per_minute: dict[str, dict[int, Counter[str]]] = {}
    for offset, row in enumerate(rows):
        for raw_field, raw_value in row.items():
            parsed = _parse_field(raw_field)
            if parsed is None:
                continue
            queue, actor, name = parsed
            queues.setdefault(actor, queue)
            per_minute.setdefault(actor, {}).setdefault(offset, Counter())[name] += int(raw_value)

    actors: dict[str, Any] = {}
    for actor in sorted(per_minute):
        minutes_seen = per_minute[actor]
        totals: Counter[str] = Counter()
        series = []
        for offset in range(minutes):
            counts = minutes_seen.get(offset, Counter())
            totals.update(counts)
            entry = {"minute": _iso_minute(first + offset)}
            entry.update(_summarise(counts, with_histogram=tenant is None))
            series.append(entry)
        actors[actor] = {
            "queue": queues[actor],
            "totals": _summarise(totals, with_histogram=tenant is None),
            "series": series,
        }
    return {
        "window": {"minutes": minutes, "from": _iso_minute(first), "to": _iso_minute(last + 1)},
        "tenant_id": tenant,
        "actors": actors,
    }


# --- Prometheus -----------------------------------------------------------------------------


class _WorkerCollector:
    """A custom collector over values already read, so collecting does no I/O."""

    def __init__(
        self,
        totals: Mapping[tuple[str, str], Mapping[str, int]],
        queue_depths: Mapping[str, Mapping[str, int | None]] | None,
        dead_letter_count: int | None,
    ):
        self.totals = totals
        self.queue_depths = queue_depths
        self.dead_letter_count = dead_letter_count

    def collect(self) -> Iterator[Metric]:
        messages = CounterMetricFamily(
            "omnistream_worker_messages",
            "Messages by actor and outcome, summed over every process.",
            labels=["actor", "queue", "outcome"],
        )
        seconds = HistogramMetricFamily(
            "omnistream_worker_processing_seconds",
            "Time actors spent processing a message (every attempt).",
            labels=["actor", "queue"],
        )
        for (queue, actor), counts in sorted(self.totals.items()):
            for outcome in COUNTERS:
                messages.add_metric([actor, queue, outcome], counts.get(outcome, 0))
            if counts.get(TIME_COUNT_FIELD, 0):
                cumulative, buckets = 0, []
                for bound, name in zip((*BUCKETS_MS, math.inf), BUCKET_FIELDS, strict=False):
                    cumulative += counts.get(name, 0)
                    buckets.append((floatToGoString(bound / 1000), cumulative))
                seconds.add_metric(
                    [actor, queue], buckets, sum_value=counts.get(TIME_SUM_FIELD, 0) / 1e6
                )
        items = CounterMetricFamily(
            "omnistream_worker_items",
            "Items of work actors report (rows purged per table...), summed over every process.",
            labels=["actor", "queue", "item"],
        )
        for (queue, actor), counts in sorted(self.totals.items()):
            for item, value in _items(counts).items():
                items.add_metric([actor, queue, item], value)
        yield messages
        yield seconds
        yield items

        depths = GaugeMetricFamily(
            "omnistream_queue_messages",
            "Messages in the broker by queue and state (ready, delayed, dead, ...).",
            labels=["queue", "state"],
        )
        for queue, states in sorted((self.queue_depths or {}).items()):
            for state, value in sorted(states.items()):
                if value is not None:
                    depths.add_metric([queue, state], value)
        yield depths
        yield GaugeMetricFamily(
            "omnistream_broker_up",
            "1 when the queue depths could be read from the broker.",
            value=int(self.queue_depths is not None),
        )

        dead = GaugeMetricFamily(
            "omnistream_dead_letters",
            "Dead-lettered messages recorded in Postgres and not requeued.",
            labels=[],
        )
        if self.dead_letter_count is not None:
            dead.add_metric([], self.dead_letter_count)
        yield dead


def read_totals(redis_client: redis.Redis, namespace: str) -> dict[tuple[str, str], Counter[str]]:
    """Return the all-time counters by ``(queue, actor)``; raise :class:`MetricsUnavailable`."""
    try:
        raw = redis_client.hgetall(totals_key(namespace))
    except redis.RedisError as exc:
        raise MetricsUnavailable(f"worker metrics unavailable: {exc}") from exc
    totals: dict[tuple[str, str], Counter[str]] = {}
    for raw_field, raw_value in raw.items():
        parsed = _parse_field(raw_field)
        if parsed is not None:
            queue, actor, name = parsed
            totals.setdefault((queue, actor), Counter())[name] += int(raw_value)
    return totals


def render_prometheus(
    redis_client: redis.Redis,
    namespace: str,
    queue_depths: Mapping[str, Mapping[str, int | None]] | None,
    dead_letter_count: int | None,
    *,
    extra: Sequence[Callable[[Mapping[tuple[str, str], Mapping[str, int]]], Any]] = (),
) -> bytes:
    """Return the Prometheus text exposition of worker, queue and dead-letter metrics.

    ``queue_depths`` is :func:`shared.queue_stats.queue_depths`'s result, or None
    when the broker is unreachable (``omnistream_broker_up`` is then 0);
    ``dead_letter_count`` is :func:`shared.dead_letters.count_dead_letters`, or
    None to leave the gauge without a sample. Serve it with :data:`CONTENT_TYPE`.

    Series: ``omnistream_worker_messages_total{actor,queue,outcome}``,
    ``omnistream_worker_items_total{actor,queue,item}``,
    ``omnistream_worker_processing_seconds{actor,queue}`` (histogram),
    ``omnistream_queue_messages{queue,state}``, ``omnistream_broker_up`` and
    ``omnistream_dead_letters``; ``extra`` builds more collectors from the same
    totals (Dramatiq's own series, :mod:`shared.ops.dramatiq_series`). Raises
    :class:`MetricsUnavailable` when Redis cannot be read.
    """
    totals = read_totals(redis_client, namespace)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_WorkerCollector(totals, queue_depths, dead_letter_count))
    for make_collector in extra:
        registry.register(make_collector(totals))
    return generate_latest(registry)
