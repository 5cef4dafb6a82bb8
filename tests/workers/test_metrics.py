"""Worker metrics: counted by a real worker in Redis, read back by snapshot() and Prometheus."""

from __future__ import annotations

import logging
import time
import uuid

import dramatiq
import pytest
import redis
from dramatiq.broker import MessageProxy
from dramatiq.message import Message
from prometheus_client.parser import text_string_to_metric_families

from shared import worker_metrics as wm
from shared.config import get_settings
from tests.waiting import wait_until
from workers import metrics as metrics_module
from workers.main import broker as _broker  # noqa: F401  (the global broker the actors bind to)
from workers.metrics import Metrics

QUEUE = "test_metrics"


@dramatiq.actor(queue_name=QUEUE, max_retries=2, min_backoff=10, max_backoff=50)
def metrics_test_succeeds(value: int) -> None:
    time.sleep(0.002)


@dramatiq.actor(queue_name=QUEUE, max_retries=2, min_backoff=10, max_backoff=50)
def metrics_test_always_fails() -> None:
    raise RuntimeError("metrics test failure")


def _totals(client, namespace, actor, **kwargs):
    data = wm.snapshot(client, namespace, minutes=5, **kwargs)
    return data["actors"].get(actor, {}).get("totals", {})


def _flushed(client, namespace, actor, outcome: str, count: int) -> dict | None:
    """The actor's totals once ``count`` messages reached ``outcome`` and were all counted
    as enqueued.

    NOTE: a message is counted as enqueued after the broker has queued it. On a loaded
    machine the worker may fail it three times and dead-letter it in between, and those
    counts reach Redis one flush (metrics_flush_seconds) before the enqueue's.
    """
    totals = _totals(client, namespace, actor)
    return totals if totals.get(outcome) == count and totals.get("enqueued", 0) >= count else None


def _samples(text: bytes) -> dict[tuple[str, frozenset], float]:
    samples = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


@pytest.mark.broker
def test_succeeding_actor_counts_enqueued_processed_and_latency(
    broker, worker, redis_client, namespace, tenant
):
    actor = metrics_test_succeeds.actor_name
    metrics_test_succeeds.send_with_options(args=(1,), tenant_id=str(tenant))
    metrics_test_succeeds.send(2)
    metrics_test_succeeds.send_with_options(args=(3,), delay=30)  # via the delay queue
    broker.join(QUEUE, timeout=10_000)

    totals = wait_until(lambda: _flushed(redis_client, namespace, actor, "processed", 3))
    # NOTE: the delayed message's hand-over to its queue is not a new message.
    assert totals["enqueued"] == 3
    assert (totals["failed"], totals["retried"], totals["dead_lettered"]) == (0, 0, 0)
    assert totals["failure_rate"] == 0.0
    assert totals["avg_ms"] >= 2 and 0 < totals["p50_ms"] <= totals["p95_ms"]

    series = wm.snapshot(redis_client, namespace, minutes=5)["actors"][actor]["series"]
    assert len(series) == 5
    assert sum(minute["processed"] for minute in series) == 3

    tenant_totals = _totals(redis_client, namespace, actor, tenant_id=tenant)
    assert (tenant_totals["enqueued"], tenant_totals["processed"]) == (1, 1)
    assert tenant_totals["avg_ms"] >= 2 and tenant_totals["p50_ms"] is None
    assert _totals(redis_client, namespace, actor, tenant_id=uuid.uuid4()) == {}

    samples = _samples(wm.render_prometheus(redis_client, namespace, None, None))
    labels = {("actor", actor), ("queue", QUEUE)}
    assert samples[("omnistream_worker_processing_seconds_count", frozenset(labels))] == 3
    assert samples[("omnistream_worker_processing_seconds_sum", frozenset(labels))] > 0.006
    processed = frozenset({*labels, ("outcome", "processed")})
    assert samples[("omnistream_worker_messages_total", processed)] == 3


@pytest.mark.broker
def test_failing_actor_is_dead_lettered_after_its_retries(
    broker, worker, redis_client, namespace, tenant
):
    from shared.db import session_scope
    from shared.dead_letters import count_dead_letters, list_dead_letters

    actor = metrics_test_always_fails.actor_name
    message = metrics_test_always_fails.send_with_options(tenant_id=str(tenant))
    broker.join(QUEUE, timeout=10_000)

    def dead_letter():
        with session_scope() as session:
            rows = list_dead_letters(session, tenant_id=tenant)
            return [row for row in rows if row.message_id == message.message_id]

    [row] = wait_until(dead_letter)
    assert (row.actor_name, row.queue_name, row.retries) == (actor, QUEUE, 2)
    assert "RuntimeError: metrics test failure" in row.error
    assert row.options["tenant_id"] == str(tenant) and "traceback" not in row.options
    with session_scope() as session:
        assert count_dead_letters(session, tenant_id=tenant) == 1

    totals = wait_until(lambda: _flushed(redis_client, namespace, actor, "dead_lettered", 1))
    assert totals["failed"] == 3  # the first attempt and its two retries
    assert totals["retried"] == 2
    assert (totals["enqueued"], totals["processed"], totals["failure_rate"]) == (1, 0, 1.0)
    tenant_totals = _totals(redis_client, namespace, actor, tenant_id=tenant)
    assert (tenant_totals["failed"], tenant_totals["dead_lettered"]) == (3, 1)

    depths = {QUEUE: {"ready": 0, "delayed": 0, "dead": 1}}
    samples = _samples(wm.render_prometheus(redis_client, namespace, depths, 7))
    labels = {("actor", actor), ("queue", QUEUE)}
    for outcome, value in {"failed": 3, "retried": 2, "dead_lettered": 1, "processed": 0}.items():
        key = ("omnistream_worker_messages_total", frozenset({*labels, ("outcome", outcome)}))
        assert samples[key] == value, outcome
    assert samples[("omnistream_worker_processing_seconds_count", frozenset(labels))] == 3
    dead = frozenset({("queue", QUEUE), ("state", "dead")})
    assert samples[("omnistream_queue_messages", dead)] == 1
    assert samples[("omnistream_broker_up", frozenset())] == 1
    assert samples[("omnistream_dead_letters", frozenset())] == 7


def _message(actor: str = "job", **options) -> Message:
    return Message(queue_name="q", actor_name=actor, args=(), kwargs={}, options=options)


def _attempt(metrics: Metrics, broker, message: Message, *, exception=None, fail=False):
    """Play one attempt through the hooks the worker calls, in the worker's order."""
    proxy = MessageProxy(message)
    metrics.before_process_message(broker, proxy)
    metrics.after_process_message(broker, proxy, exception=exception)
    if fail:
        proxy.fail()
        metrics.after_nack(broker, proxy)
    else:
        metrics.after_ack(broker, proxy)


def test_two_processes_add_up_in_redis(broker, redis_client, scratch_namespace, tenant):
    settings = get_settings().model_copy(update={"redis_namespace": scratch_namespace})
    first, second = Metrics(settings), Metrics(settings)
    message = _message(tenant_id=str(tenant))

    first.after_enqueue(broker, message, None)
    second.after_enqueue(broker, _message(), None)
    _attempt(first, broker, message)
    _attempt(second, broker, message, exception=RuntimeError("x"))
    _attempt(second, broker, message, exception=RuntimeError("x"), fail=True)
    assert first.flush() and second.flush()

    totals = _totals(redis_client, scratch_namespace, "job")
    assert {name: totals[name] for name in wm.COUNTERS} == {
        "enqueued": 2,
        "processed": 1,
        "failed": 2,
        "retried": 1,
        "dead_lettered": 1,
        "skipped": 0,
    }
    tenant_totals = _totals(redis_client, scratch_namespace, "job", tenant_id=tenant)
    assert (tenant_totals["enqueued"], tenant_totals["processed"], tenant_totals["failed"]) == (
        1,
        1,
        2,
    )
    counts = wm.read_totals(redis_client, scratch_namespace)[("q", "job")]
    assert counts[wm.TIME_COUNT_FIELD] == 3 == sum(counts[name] for name in wm.BUCKET_FIELDS)
    assert redis_client.ttl(wm.minute_key(scratch_namespace, wm.minute_of(time.time()))) > 0
    assert redis_client.ttl(wm.totals_key(scratch_namespace)) == -1  # never expires


def test_retries_and_delay_hand_overs_are_not_new_messages(broker, redis_client, scratch_namespace):
    settings = get_settings().model_copy(update={"redis_namespace": scratch_namespace})
    metrics = Metrics(settings)
    message = _message()

    metrics.after_enqueue(broker, message, 50)  # a delayed send is new
    metrics.before_delay_message(broker, MessageProxy(message))
    metrics.after_enqueue(broker, message.copy(), None)  # its hand-over is not
    metrics.after_enqueue(broker, _message(retries=1), 20)  # nor is a retry
    metrics.after_ack(broker, MessageProxy(message))  # nor the ack of the delayed copy
    metrics.flush()

    totals = _totals(redis_client, scratch_namespace, "job")
    assert (totals["enqueued"], totals["processed"]) == (1, 0)


def test_skipped_message_counts_skipped(broker, redis_client, scratch_namespace):
    settings = get_settings().model_copy(update={"redis_namespace": scratch_namespace})
    metrics = Metrics(settings)
    proxy = MessageProxy(_message())
    metrics.after_skip_message(broker, proxy)
    proxy.fail()
    metrics.after_nack(broker, proxy)
    metrics.flush()

    totals = _totals(redis_client, scratch_namespace, "job")
    assert (totals["skipped"], totals["dead_lettered"], totals["failed"]) == (1, 1, 0)


def test_counting_never_waits_for_redis(broker, scratch_namespace, monkeypatch):
    """Jobs only add to memory: a Redis that does not answer costs them nothing."""
    monkeypatch.setattr(metrics_module, "REDIS_TIMEOUT_SECONDS", 30)
    settings = get_settings().model_copy(
        update={"redis_url": "redis://10.255.255.1:6379/0", "metrics_flush_seconds": 60}
    )
    metrics = Metrics(settings)  # an unroutable address: every connect would time out
    started = time.monotonic()
    for _ in range(1_000):
        metrics.after_enqueue(broker, _message(), None)
        _attempt(metrics, broker, _message())
    # One connect attempt alone would take the client's whole connect timeout (30 s here);
    # 2,000 calls made in memory take milliseconds, even on a box busy with other work.
    assert time.monotonic() - started < 5


def test_counts_survive_a_redis_outage(broker, redis_client, scratch_namespace, caplog):
    settings = get_settings().model_copy(update={"redis_namespace": scratch_namespace})
    down = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    metrics = Metrics(settings, client=down)
    with caplog.at_level(logging.WARNING, logger="workers.metrics"):
        _attempt(metrics, broker, _message())
        assert metrics.flush() is False
        _attempt(metrics, broker, _message(), exception=RuntimeError("x"))
        assert metrics.flush() is False
        # NOTE: one warning per outage, not one per flush.
        assert [r.getMessage()[:40] for r in caplog.records if r.name == "workers.metrics"] == [
            "worker metrics could not be written to R"
        ]
        assert _totals(redis_client, scratch_namespace, "job") == {}

        metrics.client = redis_client  # Redis is back
        assert metrics.flush() is True
    totals = _totals(redis_client, scratch_namespace, "job")
    assert (totals["processed"], totals["failed"], totals["retried"]) == (1, 1, 1)
    assert "worker metrics written to Redis again" in caplog.text


def test_background_flush_writes_without_being_asked(broker, redis_client, scratch_namespace):
    settings = get_settings().model_copy(
        update={"redis_namespace": scratch_namespace, "metrics_flush_seconds": 0.05}
    )
    metrics = Metrics(settings)
    _attempt(metrics, broker, _message())
    totals = wait_until(lambda: _totals(redis_client, scratch_namespace, "job"))
    assert totals["processed"] == 1


def test_snapshot_window_and_bad_input(redis_client, scratch_namespace):
    now = 1_700_000_000.0
    minute = wm.minute_of(now)
    key = wm.minute_key(scratch_namespace, minute - 1)
    redis_client.hset(
        key,
        mapping={
            wm.field("q", "a|b", "processed"): 4,
            wm.field("q", "a|b", "le:25"): 4,
            wm.field("q", "a|b", wm.TIME_SUM_FIELD): 80_000,
            wm.field("q", "a|b", wm.TIME_COUNT_FIELD): 4,
            "garbage": 1,
        },
    )
    data = wm.snapshot(redis_client, scratch_namespace, minutes=3, now=now)
    assert data["window"] == {
        "minutes": 3,
        "from": "2023-11-14T22:11:00Z",
        "to": "2023-11-14T22:14:00Z",
    }
    series = data["actors"]["a|b"]["series"]
    assert [entry["processed"] for entry in series] == [0, 4, 0]
    assert series[1]["avg_ms"] == 20 and series[1]["p50_ms"] == 17.5
    assert series[0]["failure_rate"] is None and series[0]["p50_ms"] is None
    with pytest.raises(ValueError):
        wm.snapshot(redis_client, scratch_namespace, minutes=0)


def test_percentiles_interpolate_inside_buckets():
    buckets = [0] * len(wm.BUCKET_FIELDS)
    assert wm.percentile_ms(buckets, 0.5) is None
    buckets[wm.BUCKET_FIELDS.index("le:25")] = 10
    assert wm.percentile_ms(buckets, 0.5) == 17.5
    assert wm.percentile_ms(buckets, 0.95) == 24.25
    buckets[-1] = 90  # most observations above the last bound
    assert wm.percentile_ms(buckets, 0.95) == wm.BUCKETS_MS[-1]
    assert wm.bucket_field(5) == "le:5" and wm.bucket_field(5.01) == "le:10"
    assert wm.bucket_field(0) == "le:1" and wm.bucket_field(2) == "le:2.5"
    assert wm.bucket_field(60_000) == "le:+Inf"


def test_tenant_option_is_parsed_not_trusted():
    assert wm.tenant_id_from_options({}) is None
    assert wm.tenant_id_from_options({"tenant_id": "x:y*"}) is None
    tenant = uuid.uuid4()
    assert wm.tenant_id_from_options({"tenant_id": str(tenant)}) == tenant
