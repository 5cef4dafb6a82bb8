"""Each worker process holds a share of the outbound queue (:mod:`workers.prefetch`).

The Redis broker's case runs in test_wake.py, beside its other consumer tests.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import dramatiq
import pika
import pika.exceptions
import pytest

from tests.peers.rabbitmq_vhost import create_vhost, delete_vhost
from tests.waiting import wait_until
from workers import queues
from workers.broker import SharingRabbitmqBroker

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
DEADLINE_S = 20


@pytest.fixture
def vhost_url():
    """A vhost of this test's own (the outbound queue's name is the real one)."""
    try:
        pika.BlockingConnection(pika.URLParameters(AMQP_URL)).close()
    except pika.exceptions.AMQPError:
        pytest.skip(f"RabbitMQ is not reachable at {AMQP_URL}")
    vhost = f"omnistream-test-share-{uuid.uuid4().hex[:10]}"
    yield create_vhost(AMQP_URL, vhost)
    delete_vhost(vhost)


def assert_a_burst_is_shared(brokers: list[dramatiq.Broker], start) -> None:
    """Two processes' brokers, 8 threads each: 10 send jobs enqueued at once are held 4 + 4
    (a prefetch of 16 would let the first take all 10), the last 2 once a thread frees.

    ``start(broker)`` starts a worker of 8 threads on ``broker``.
    """
    holders: dict[int, set[int]] = {}
    release = threading.Event()
    lock = threading.Lock()
    actors = []
    for n, broker in enumerate(brokers):

        @dramatiq.actor(broker=broker, queue_name=queues.OUTBOUND, actor_name="send_burst")
        def send_burst(job: int, _n: int = n) -> None:
            with lock:
                holders.setdefault(_n, set()).add(job)
            release.wait(DEADLINE_S)

        actors.append(send_burst)
    try:
        for broker in brokers:
            start(broker)
        for job in range(10):
            actors[0].send(job)

        def held() -> int:
            with lock:
                return sum(map(len, holders.values()))

        wait_until(lambda: held() == 8, timeout=DEADLINE_S)
        time.sleep(0.3)
        with lock:
            assert {n: len(jobs) for n, jobs in holders.items()} == {0: 4, 1: 4}
        release.set()
        wait_until(lambda: held() == 10, timeout=DEADLINE_S)
    finally:
        release.set()


def test_a_burst_of_send_jobs_is_shared_by_rabbitmq_consumers(vhost_url):
    brokers = [SharingRabbitmqBroker(url=vhost_url, middleware=[]) for _ in range(2)]
    workers: list[dramatiq.Worker] = []

    def start(broker: dramatiq.Broker) -> None:
        workers.append(dramatiq.Worker(broker, worker_timeout=100, worker_threads=8))
        workers[-1].start()

    try:
        assert_a_burst_is_shared(brokers, start)
    finally:
        for worker in workers:
            worker.stop(timeout=2_000)
        for broker in brokers:
            broker.close()
