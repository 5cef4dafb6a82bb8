"""Redis consumers woken by enqueues (workers/wake.py): a long poll costs no latency.

Each test runs a real Dramatiq worker on a broker namespace of its own with a poll
(``worker_timeout``) far longer than the test's deadline: a message that is run in
time was woken, not found by a poll.
"""

from __future__ import annotations

import threading
import time

import dramatiq
import pytest
from dramatiq.middleware import Retries

from shared.config import get_settings
from tests.waiting import wait_until
from tests.workers.test_prefetch_share import assert_a_burst_is_shared
from workers.wake import MAINTENANCE_SECONDS, WakingRedisBroker

#: The consumers' poll in these tests: any figure well under it proves a wake-up.
LONG_POLL_MS = 30_000
#: Deadline for work that a wake-up starts at once (generous: the machine is shared).
DEADLINE_S = 10.0


@pytest.fixture
def make_broker(scratch_namespace):
    """Build brokers on this test's namespace; stop their workers and flush at the end."""
    made: list[tuple[WakingRedisBroker, list[dramatiq.Worker]]] = []

    def make(**kwargs) -> tuple[WakingRedisBroker, list[dramatiq.Worker]]:
        broker = WakingRedisBroker(
            url=get_settings().redis_url,
            namespace=f"{scratch_namespace}:dramatiq",
            middleware=[Retries(min_backoff=200, max_backoff=200, max_retries=3)],
            **kwargs,
        )
        made.append((broker, []))
        return made[-1]

    yield make
    for broker, workers in made:
        for worker in workers:
            # NOTE: idle threads notice the stop at their next poll; they are daemons
            # with nothing in hand, so the test does not wait for them.
            worker.stop(timeout=500)
        broker.flush_all()
        broker.close()


def _start(broker, workers, **kwargs) -> dramatiq.Worker:
    worker = dramatiq.Worker(broker, worker_timeout=LONG_POLL_MS, **kwargs)
    worker.start()
    workers.append(worker)
    # NOTE: each consumer has fetched once and waits on its long poll by now.
    time.sleep(0.5)
    return worker


def test_an_idle_consumer_runs_a_new_message_at_once(make_broker):
    broker, workers = make_broker()
    ran: list[float] = []

    @dramatiq.actor(broker=broker, queue_name="wake_idle")
    def record(sent_at: float) -> None:
        ran.append(time.monotonic() - sent_at)

    _start(broker, workers, worker_threads=1)
    record.send(time.monotonic())
    wait_until(lambda: ran, timeout=DEADLINE_S)
    # A second one, after the consumer found its queue empty again.
    time.sleep(0.3)
    record.send(time.monotonic())
    wait_until(lambda: len(ran) == 2, timeout=DEADLINE_S)


def test_a_consumer_that_emptied_its_queue_fetches_again_only_when_woken(make_broker):
    """A fetch that found fewer messages than it had room for is not followed by another
    (it found nothing almost every time); the next enqueue's wake makes the next one."""
    broker, _ = make_broker()
    broker.declare_queue("wake_drained")
    fetches: list[int] = []
    fetch = broker.do_fetch

    def counted_fetch(queue_name, room):
        found = fetch(queue_name, room)
        fetches.append(len(found))
        return found

    broker.do_fetch = counted_fetch

    def send(n: int) -> None:
        broker.enqueue(
            dramatiq.Message(
                queue_name="wake_drained", actor_name="x", args=(n,), kwargs={}, options={}
            )
        )

    consumer = broker.consume("wake_drained", prefetch=4, timeout=LONG_POLL_MS)
    try:
        wait_until(consumer.woken.is_set)  # its listener subscribed and woke it once
        consumer.woken.clear()
        send(0)
        wait_until(consumer.woken.is_set)  # as an idle consumer is: woken, then it fetches
        assert next(consumer).args == (0,)
        assert fetches == [1]  # one of the four it had room for: the queue is empty
        taken: list = []
        waiting = threading.Thread(target=lambda: taken.extend([next(consumer), next(consumer)]))
        waiting.start()
        time.sleep(0.5)
        assert fetches == [1]  # waiting for a wake, not asking again
        send(1)
        waiting.join(DEADLINE_S)
        assert taken[0] is None  # woken: back to the consumer thread, then the fetch
        assert taken[1].args == (1,)
        assert fetches == [1, 1]
    finally:
        consumer.close()


def test_a_retry_runs_when_its_backoff_is_over(make_broker):
    broker, workers = make_broker()
    attempts: list[float] = []

    @dramatiq.actor(broker=broker, queue_name="wake_retry")
    def flaky() -> None:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")

    _start(broker, workers, worker_threads=1)
    flaky.send()
    wait_until(lambda: len(attempts) == 2, timeout=DEADLINE_S)
    # Not before its backoff (100-200 ms with Dramatiq's jitter), held until then.
    assert attempts[1] - attempts[0] >= 0.09


def test_a_delayed_message_runs_at_its_eta_not_at_the_next_poll(make_broker):
    broker, workers = make_broker()
    ran: list[float] = []

    @dramatiq.actor(broker=broker, queue_name="wake_delay")
    def later() -> None:
        ran.append(time.monotonic())

    _start(broker, workers, worker_threads=1)
    sent = time.monotonic()
    later.send_with_options(delay=700)
    wait_until(lambda: ran, timeout=DEADLINE_S)
    assert ran[0] - sent >= 0.69


def test_a_full_prefetch_is_refilled_as_its_threads_free_it(make_broker):
    broker, workers = make_broker()
    done: list[int] = []
    lock = threading.Lock()

    @dramatiq.actor(broker=broker, queue_name="wake_prefetch")
    def step(n: int) -> None:
        time.sleep(0.02)
        with lock:
            done.append(n)

    # One thread: the consumer holds 2 messages at most and must fetch again 5 times.
    _start(broker, workers, worker_threads=1)
    for n in range(10):
        step.send(n)
    wait_until(lambda: len(done) == 10, timeout=DEADLINE_S)
    assert sorted(done) == list(range(10))


def test_a_dead_workers_message_comes_back_within_the_maintenance_interval(make_broker):
    heartbeat_ms = 1_000
    dead_broker, _ = make_broker(heartbeat_timeout=heartbeat_ms)
    broker, workers = make_broker(heartbeat_timeout=heartbeat_ms)
    ran: list[str] = []

    @dramatiq.actor(broker=broker, queue_name="wake_orphan")
    def orphan(marker: str) -> None:
        ran.append(marker)

    # A worker that fetched the message, then died before acking (it never beats again).
    dead_broker.declare_queue("wake_orphan")
    orphan.send("held by the dead one")
    held = next(dead_broker.consume("wake_orphan", prefetch=1, timeout=100))
    assert held.args == ("held by the dead one",)

    # NOTE: a short poll here: maintenance rides on a queue's fetches.
    worker = dramatiq.Worker(broker, worker_timeout=200, worker_threads=1)
    worker.start()
    workers.append(worker)
    wait_until(
        lambda: ran == ["held by the dead one"],
        timeout=heartbeat_ms / 1000 + MAINTENANCE_SECONDS + DEADLINE_S,
    )


def test_enqueues_on_another_namespace_wake_nobody_here(make_broker, scratch_namespace):
    broker, _ = make_broker()
    broker.declare_queue("wake_other")
    consumer = broker.consume("wake_other", prefetch=1, timeout=LONG_POLL_MS)
    woken = consumer.woken
    other = WakingRedisBroker(
        url=get_settings().redis_url, namespace=f"{scratch_namespace}-other:dramatiq"
    )
    try:
        wait_until(lambda: broker._listener is not None and woken.is_set(), timeout=DEADLINE_S)
        woken.clear()
        other.declare_queue("wake_other")
        other.enqueue(
            dramatiq.Message(
                queue_name="wake_other", actor_name="x", args=(), kwargs={}, options={}
            )
        )
        assert not woken.wait(0.5)
    finally:
        consumer.close()
        other.flush_all()
        other.close()


def test_a_stopping_workers_prefetched_message_is_taken_at_once_by_another(make_broker):
    stopping, stopping_workers = make_broker()
    staying, staying_workers = make_broker()
    release = threading.Event()
    ran: list[int] = []

    def hold(n: int) -> None:
        ran.append(n)
        release.wait(DEADLINE_S)

    first = dramatiq.actor(hold, broker=stopping, actor_name="hold", queue_name="wake_requeue")
    dramatiq.actor(hold, broker=staying, actor_name="hold", queue_name="wake_requeue")

    # One thread, prefetch 2: message 0 runs, message 1 waits in the worker's memory.
    leaving = _start(stopping, stopping_workers, worker_threads=1)
    first.send(0)
    first.send(1)
    wait_until(lambda: len(ran) == 1, timeout=DEADLINE_S)
    _start(staying, staying_workers, worker_threads=1)
    stopper = threading.Thread(target=leaving.stop, kwargs={"timeout": 1_000})
    stopper.start()
    time.sleep(0.2)
    release.set()
    stopper.join(DEADLINE_S)
    stopping_workers.clear()
    # Requeued on stop, which wakes the other worker's consumer (its poll is 30 s).
    wait_until(lambda: ran == [0, 1], timeout=DEADLINE_S)


def test_a_burst_of_send_jobs_is_shared_by_the_processes(make_broker):
    """A campaign batch's send jobs, enqueued at once, are not all taken by the first
    process to fetch: each holds a quarter of its prefetch of the outbound queue."""
    made = dict(make_broker() for _ in range(2))  # two processes' brokers, one namespace
    assert_a_burst_is_shared(
        list(made), lambda broker: _start(broker, made[broker], worker_threads=8)
    )


def test_an_enqueue_wakes_one_process_not_all(make_broker):
    """Each enqueue makes one process fetch: waking all made the others fetch nothing."""
    brokers = [make_broker()[0] for _ in range(2)]  # two processes' brokers, one namespace
    for broker in brokers:
        broker.declare_queue("wake_one")
    consumers = [broker.consume("wake_one", prefetch=1, timeout=LONG_POLL_MS) for broker in brokers]
    try:
        wait_until(lambda: brokers[0].client.scard(brokers[0].wakers_key) == 2, timeout=DEADLINE_S)
        for n in range(4):
            for consumer in consumers:
                consumer.woken.clear()
            brokers[n % 2].enqueue(
                dramatiq.Message(
                    queue_name="wake_one", actor_name="x", args=(), kwargs={}, options={}
                )
            )
            wait_until(lambda: any(c.woken.is_set() for c in consumers), timeout=DEADLINE_S)
            time.sleep(0.3)
            assert sum(c.woken.is_set() for c in consumers) == 1
    finally:
        for consumer in consumers:
            consumer.close()


def test_a_process_with_a_full_prefetch_passes_the_wake_to_an_idle_one(make_broker):
    """Whichever process an enqueue picks, an idle one runs the message at once."""
    busy, busy_workers = make_broker()
    idle, idle_workers = make_broker()
    release = threading.Event()
    ran: list[tuple[str, int]] = []

    def make(name: str, broker):
        def job(n: int) -> None:
            ran.append((name, n))
            if name == "busy":
                release.wait(DEADLINE_S * 3)

        return dramatiq.actor(job, broker=broker, actor_name="job", queue_name="wake_full")

    send = make("busy", busy)
    make("idle", idle)
    try:
        # One thread, prefetch 2: one message runs, one waits in its memory: full.
        _start(busy, busy_workers, worker_threads=1)
        send.send(0)
        send.send(1)
        wait_until(lambda: len(ran) == 1, timeout=DEADLINE_S)
        _start(idle, idle_workers, worker_threads=1)
        for n in range(2, 8):
            send.send(n)
            wait_until(lambda n=n: ("idle", n) in ran, timeout=DEADLINE_S)
    finally:
        release.set()
