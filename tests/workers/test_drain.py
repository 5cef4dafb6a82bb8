"""Draining a worker host: SIGTERM finishes the job in flight, starts no other, and exits.

A real ``python -m workers`` (Dramatiq's CLI with our middleware) runs one thread
on a queue of its own; the job it holds waits until the test releases it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from dramatiq.message import Message

from shared.config import get_settings
from shared.ops.processes import live_processes
from shared.queue_stats import queue_depths
from tests.waiting import wait_until
from workers.broker import build_broker

REPO_ROOT = Path(__file__).resolve().parents[2]
#: NOTE: not imported from tests.workers.drain_actors: declaring its actor here would
#: let this process's own worker (the session fixture) consume the queue too.
QUEUE = "test_drain"


def key(marker: str, what: str) -> str:
    """The Redis key drain_actors.hold writes (the same format)."""
    return f"{get_settings().redis_namespace}:drain:{marker}:{what}"


@pytest.fixture
def sender():
    """A broker object of its own: sends to QUEUE without declaring it on the global broker."""
    other = build_broker(get_settings())
    other.declare_queue(QUEUE)

    def send(marker: str) -> None:
        other.enqueue(
            Message(queue_name=QUEUE, actor_name="hold", args=(marker,), kwargs={}, options={})
        )

    yield send
    other.flush(QUEUE)
    other.close()


@pytest.fixture
def worker_host(database):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workers",
            "tests.workers.drain_actors",
            "--processes",
            "1",
            "--threads",
            "1",
            "--queues",
            QUEUE,
        ],
        cwd=REPO_ROOT,
        env=os.environ | {"dramatiq_queue_prefetch": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.wait(10)


def hosts_running_the_drain_queue(redis_client) -> list[dict]:
    return [
        process
        for process in live_processes(redis_client, get_settings().redis_namespace)
        if process["queues"] == [QUEUE]
    ]


@pytest.mark.broker
def test_sigterm_finishes_the_job_in_flight_and_takes_no_more(worker_host, sender, redis_client):
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    sender(first)
    sender(second)
    wait_until(lambda: redis_client.get(key(first, "started")), timeout=30)

    worker_host.send_signal(signal.SIGTERM)
    # The worker notices within a second and then waits for its thread's job.
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        assert worker_host.poll() is None, "the worker exited with a job in flight"
        time.sleep(0.1)
    assert redis_client.get(key(first, "finished")) is None
    # The console lists the host as draining, with the job it still finishes.
    (draining,) = hosts_running_the_drain_queue(redis_client)
    assert draining["draining"] is True
    assert [job["actor"] for job in draining["busy"]] == ["hold"]

    redis_client.rpush(key(first, "release"), 1)
    assert worker_host.wait(30) == 0, worker_host.stderr.read()[-2000:]
    assert hosts_running_the_drain_queue(redis_client) == []  # gone once its job is done
    assert redis_client.get(key(first, "finished")) == b"1"
    # The second message was never started: it is back in the queue for another host.
    assert redis_client.get(key(second, "started")) is None
    depths = wait_until(
        lambda: (d := queue_depths([QUEUE], get_settings())[QUEUE]) and d["ready"] == 1 and d
    )
    assert depths["ready"] == 1
