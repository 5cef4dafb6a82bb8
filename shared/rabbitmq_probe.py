"""RabbitMQ queue depths over one kept connection, remembered for about a second.

Why: ``GET /api/health`` is polled by every load balancer. Opening an AMQP
connection per call cost a TCP + AMQP handshake (tens of milliseconds) and a
handful of pika INFO lines each time. Here each process keeps one connection per
broker URL, and a lock makes a burst of concurrent probes cost one check: the
first caller reads the broker, the others wait for it and reuse its answer (or
its failure) for :data:`FRESH_SECONDS`.

The connection has AMQP heartbeats off (nothing services it between probes, and
RabbitMQ would close it for missed heartbeats); a connection the broker dropped
anyway is noticed on its next use and replaced once before the check fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable

import pika
import pika.exceptions
from dramatiq.common import dq_name, xq_name


class _NoMissingQueueWarnings(logging.Filter):
    """Drop pika's warning for the 404 of a passive declare: a queue no one declared yet."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Channel.Close (404)" not in record.getMessage()


# NOTE: without it, every probe of a broker whose queues a worker has not declared yet
# logged a WARNING per queue (three per Dramatiq queue).
logging.getLogger("pika.channel").addFilter(_NoMissingQueueWarnings())

#: How long an answer (or a failure) is reused: a probe costs nothing within it.
FRESH_SECONDS = 1.0

Depths = dict[str, dict[str, int]]


class ProbeFailed(Exception):
    """The broker could not be reached or answered in time."""


class RabbitmqProbe:
    """Queue depths from one RabbitMQ URL; safe to share between threads."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        fresh_seconds: float = FRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.fresh_seconds = fresh_seconds
        self.clock = clock
        self.checks = 0  # broker round trips made (the tests and the bench read it)
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._answers: dict[tuple[str, ...], tuple[float, Depths | ProbeFailed]] = {}

    def depths(self, names: tuple[str, ...]) -> Depths:
        """``{queue: {"ready", "delayed", "dead"}}``; raises :class:`ProbeFailed`."""
        with self._lock:
            answer = self._answers.get(names)
            if answer is None or self.clock() - answer[0] >= self.fresh_seconds:
                answer = (self.clock(), self._check(names))
                self._answers[names] = answer
        result = answer[1]
        if isinstance(result, ProbeFailed):
            # NOTE: a new exception per caller: raising the remembered one again would
            # grow its traceback with every probe that reuses it.
            raise ProbeFailed(str(result))
        return {name: dict(counts) for name, counts in result.items()}

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _check(self, names: tuple[str, ...]) -> Depths | ProbeFailed:
        self.checks += 1
        reused = self._connection is not None
        try:
            return self._read(names)
        except pika.exceptions.AMQPError as exc:
            self._drop()
            if not reused:
                return ProbeFailed(f"RabbitMQ broker unreachable: {exc!r}")
        # NOTE: a kept connection may have been closed by the broker (restart, idle
        # policy) since the last probe: one fresh connection decides.
        try:
            return self._read(names)
        except pika.exceptions.AMQPError as exc:
            self._drop()
            return ProbeFailed(f"RabbitMQ broker unreachable: {exc!r}")

    def _connect(self) -> pika.BlockingConnection:
        parameters = pika.URLParameters(self.url.split(";")[0])
        parameters.connection_attempts = 1
        parameters.heartbeat = 0
        parameters.socket_timeout = self.timeout
        parameters.stack_timeout = self.timeout
        parameters.blocked_connection_timeout = self.timeout
        parameters.client_properties = {"connection_name": "omnistream-queue-depths"}
        return pika.BlockingConnection(parameters)

    def _read(self, names: tuple[str, ...]) -> Depths:
        if self._connection is None or not self._connection.is_open:
            self._connection = self._connect()
        connection = self._connection
        channel = connection.channel()
        try:
            depths = {}
            for name in names:
                counts = {}
                for state, queue in (
                    ("ready", name),
                    ("delayed", dq_name(name)),
                    ("dead", xq_name(name)),
                ):
                    try:
                        declared = channel.queue_declare(queue=queue, passive=True)
                        counts[state] = declared.method.message_count
                    except pika.exceptions.ChannelClosedByBroker as exc:
                        if exc.reply_code != 404:
                            raise
                        # NOTE: a 404 closes the channel; the queue is simply not declared yet.
                        counts[state] = 0
                        channel = connection.channel()
                depths[name] = counts
            return depths
        finally:
            if channel.is_open:
                with contextlib.suppress(pika.exceptions.AMQPError):
                    channel.close()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(Exception):
                connection.close()


_probes: dict[tuple[int, str], RabbitmqProbe] = {}
_probes_lock = threading.Lock()


def probe_for(url: str, *, timeout: float) -> RabbitmqProbe:
    """This process's probe of ``url`` (a forked child makes its own: sockets are not shared)."""
    key = (os.getpid(), url)
    with _probes_lock:
        probe = _probes.get(key)
        if probe is None:
            probe = _probes[key] = RabbitmqProbe(url, timeout=timeout)
        return probe
