"""A paused queue stays paused for a worker host started while it is paused.

Real ``python -m workers`` processes (Dramatiq's CLI with our middleware): autoscaling
or a deploy starts new hosts at any time, and none may take a paused queue's messages.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from dramatiq.message import Message

from shared.config import get_settings
from shared.ops.processes import live_processes
from tests.waiting import wait_until
from workers.broker import build_broker

REPO_ROOT = Path(__file__).resolve().parents[2]
#: NOTE: not imported from tests.ops.boot_actors: declaring its actor here would let this
#: process's own worker (the session fixture) consume the queue too.
QUEUE = "test_ops_boot"


def _key(marker: str) -> str:
    return f"{get_settings().redis_namespace}:ops-boot:{marker}"


def _start_host() -> subprocess.Popen:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "workers", "tests.ops.boot_actors"),
            *("--processes", "1", "--threads", "1", "--queues", QUEUE),
        ],
        cwd=REPO_ROOT,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # Its own process group: the worker processes it forks go with it (see hosts).
        start_new_session=True,
    )


def _hosts(client) -> list[dict]:
    return [
        p for p in live_processes(client, get_settings().redis_namespace) if p["queues"] == [QUEUE]
    ]


@pytest.fixture
def hosts(database):
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        started.append(_start_host())
        return started[-1]

    yield start
    # NOTE: the whole group: killing only the parent left its worker process running after
    # the test, consuming and polling Redis, one more with every run of the suite.
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@pytest.mark.broker
def test_a_host_started_while_its_queue_is_paused_takes_none_of_its_messages(hosts, operator):
    client = redis.Redis.from_url(get_settings().redis_url)
    sender = build_broker(get_settings())
    sender.declare_queue(QUEUE)
    first = hosts()
    try:
        wait_until(lambda: _hosts(client), timeout=30)
        assert operator("POST", f"/api/ops/queues/{QUEUE}/pause").status_code == 200
        wait_until(lambda: all(QUEUE in p["paused"] for p in _hosts(client)), timeout=10)
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0, first.stderr.read()[-2000:]

        marker = uuid.uuid4().hex
        sender.enqueue(
            Message(queue_name=QUEUE, actor_name="mark", args=(marker,), kwargs={}, options={})
        )
        hosts()
        wait_until(lambda: [p for p in _hosts(client) if QUEUE in p["paused"]], timeout=30)
        time.sleep(1.5)
        assert client.get(_key(marker)) is None, "a new host ran a paused queue's message"
        assert operator("POST", f"/api/ops/queues/{QUEUE}/resume").status_code == 200
        wait_until(lambda: client.get(_key(marker)), timeout=15)
    finally:
        assert operator("POST", f"/api/ops/queues/{QUEUE}/resume").status_code == 200
        sender.flush(QUEUE)
        sender.close()
        client.close()
