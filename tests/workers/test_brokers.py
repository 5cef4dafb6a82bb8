"""Brokers and queue depths: Redis as the suite runs it, RabbitMQ when BROKER_URL says amqp://."""

from __future__ import annotations

import os
import uuid

import dramatiq
import pika
import pika.exceptions
import pytest
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message

from shared import worker_metrics as wm
from shared.config import Settings, get_settings
from shared.queue_stats import BrokerUnavailable, queue_depths, redis_broker_namespace
from tests.waiting import wait_until
from workers import queues
from workers.broker import build_broker

#: The run's own vhost on the RabbitMQ pass (tests/conftest.py), else the default one.
AMQP_URL = (
    os.environ["BROKER_URL"]
    if os.environ.get("BROKER_URL", "").startswith("amqp")
    else os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
)


def _message(queue: str) -> Message:
    return Message(queue_name=queue, actor_name="nobody", args=(), kwargs={}, options={})


def test_build_broker_picks_the_broker_from_the_url():
    redis_settings = Settings(broker_url=None)
    redis_broker = build_broker(redis_settings)
    assert isinstance(redis_broker, RedisBroker)
    assert redis_broker.namespace == redis_broker_namespace(redis_settings)
    assert isinstance(build_broker(Settings(broker_url=AMQP_URL)), RabbitmqBroker)


def test_redis_queue_depths(broker, worker):
    # NOTE: a second broker object on the same namespace: the running worker never
    # declared this queue, so nothing consumes it while we look.
    settings = get_settings()
    other = build_broker(settings)
    queue = f"test_depths_{uuid.uuid4().hex[:8]}"
    other.declare_queue(queue)
    try:
        for _ in range(3):
            other.enqueue(_message(queue))
        other.enqueue(_message(queue), delay=60_000)
        consumer = other.consume(queue, prefetch=1, timeout=100)
        consumer.nack(next(consumer))  # dead
        next(consumer)  # fetched, never acked: in progress

        depths = queue_depths([queue, *queues.ALL], settings)
        assert depths[queue] == {"ready": 1, "in_progress": 1, "delayed": 1, "dead": 1}
        assert set(depths) == {queue, *queues.ALL}
    finally:
        other.flush(queue)
    assert queue_depths([queue], settings)[queue] == {
        "ready": 0,
        "in_progress": 0,
        "delayed": 0,
        "dead": 0,
    }


def _script_loads(server: redis.Redis) -> int:
    """How many times the server was asked to SCRIPT LOAD (redis-py does on NOSCRIPT)."""
    return server.info("commandstats").get("cmdstat_script|load", {}).get("calls", 0)


def test_redis_queue_depths_survive_a_script_flush_and_a_restart(private_redis):
    settings = Settings(broker_url=private_redis.url)
    other = build_broker(settings)
    server = redis.Redis.from_url(private_redis.url)
    queue = f"test_flush_{uuid.uuid4().hex[:8]}"
    other.declare_queue(queue)
    other.enqueue(_message(queue))
    assert queue_depths([queue], settings)[queue]["ready"] == 1
    loads = _script_loads(server)
    assert queue_depths([queue], settings)[queue]["ready"] == 1
    assert _script_loads(server) == loads  # loaded once, then only EVALSHA

    server.script_flush()  # the script cache is gone, as after a restart: NOSCRIPT
    assert queue_depths([queue], settings)[queue] == {
        "ready": 1,
        "in_progress": 0,
        "delayed": 0,
        "dead": 0,
    }
    assert _script_loads(server) == loads + 1

    private_redis.restart()  # empty, no scripts, and our pooled connection is dead
    assert queue_depths([queue], settings)[queue]["ready"] == 0
    server.close()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "amqp://guest:guest@127.0.0.1:1/"])
def test_unreachable_broker_raises_broker_unavailable(url):
    with pytest.raises(BrokerUnavailable):
        queue_depths(queues.ALL, Settings(broker_url=url))


@pytest.fixture
def rabbit_settings() -> Settings:
    try:
        pika.BlockingConnection(pika.URLParameters(AMQP_URL)).close()
    except pika.exceptions.AMQPError:
        pytest.skip(f"RabbitMQ is not reachable at {AMQP_URL}")
    return Settings(broker_url=AMQP_URL)


@pytest.mark.broker
def test_rabbitmq_worker_consumes_and_queue_depths_count(
    rabbit_settings, redis_client, namespace, database
):
    rabbit = build_broker(rabbit_settings)
    suffix = uuid.uuid4().hex[:8]
    queue = f"test_rabbit_{suffix}"
    seen: list[int] = []

    def rabbit_job(value: int) -> None:
        seen.append(value)

    job = dramatiq.actor(
        rabbit_job, broker=rabbit, queue_name=queue, actor_name=f"rabbit_job_{suffix}"
    )
    worker = None
    try:
        job.send(1)
        job.send(2)
        depths = wait_until(
            lambda: (
                (d := queue_depths([queue, "never_declared"], rabbit_settings))[queue]["ready"] == 2
                and d
            )
        )
        assert depths[queue] == {"ready": 2, "delayed": 0, "dead": 0}
        assert depths["never_declared"] == {"ready": 0, "delayed": 0, "dead": 0}

        worker = dramatiq.Worker(rabbit, worker_timeout=50, worker_threads=1)
        worker.start()
        wait_until(lambda: sorted(seen) == [1, 2])

        # Metrics go to Redis whatever the broker is.
        def processed():
            actor = wm.snapshot(redis_client, namespace, minutes=5)["actors"].get(job.actor_name)
            return actor and actor["totals"]["processed"] == 2 and actor["totals"]

        assert wait_until(processed)["enqueued"] == 2
    finally:
        if worker is not None:
            worker.stop(timeout=5_000)
        for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
            rabbit.channel.queue_delete(name)
        rabbit.close()
