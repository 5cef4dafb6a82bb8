"""RabbitMQ queue depths over one kept connection, refreshed behind the probes.

Why: ``GET /api/health`` is polled by every load balancer. Opening an AMQP
connection per call cost a TCP + AMQP handshake (tens of milliseconds) and a
handful of pika INFO lines each time, and even over a kept connection one read is
a passive declare per queue (about 30 round trips, ~3 ms of pika CPU). So:

- each process keeps one connection per broker URL;
- an answer (or a failure) younger than :data:`FRESH_SECONDS` is served as it is;
- an older one, up to :data:`STALE_SECONDS`, is served too while one background
  thread reads the broker again: a probe never waits for RabbitMQ, and the next
  probe gets the new answer (a broker that went down answers 503 from the probe
  after the one that noticed);
- with no answer, or one older than :data:`STALE_SECONDS` (nobody asked for a while),
  the caller reads the broker itself; concurrent callers wait for that one read.

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

#: How long an answer (or a failure) is served without reading the broker again.
FRESH_SECONDS = 1.0
#: How old an answer may be served while a background read replaces it.
STALE_SECONDS = 10.0

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
        stale_seconds: float = STALE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.fresh_seconds = fresh_seconds
        self.stale_seconds = stale_seconds
        self.clock = clock
        self.checks = 0  # broker reads made (the tests and the bench read it)
        self._lock = threading.Lock()  # the answers and the refreshing set
        self._io_lock = threading.Lock()  # the connection (pika's is not thread-safe)
        self._connection: pika.BlockingConnection | None = None
        self._answers: dict[tuple[str, ...], tuple[float, Depths | ProbeFailed]] = {}
        self._refreshing: set[tuple[str, ...]] = set()

    def depths(self, names: tuple[str, ...]) -> Depths:
        """``{queue: {"ready", "delayed", "dead"}}``; raises :class:`ProbeFailed`."""
        with self._lock:
            answer = self._answers.get(names)
            age = None if answer is None else self.clock() - answer[0]
            stale = age is not None and self.fresh_seconds <= age < self.stale_seconds
            if stale and names not in self._refreshing:
                self._refreshing.add(names)
                threading.Thread(
                    target=self._refresh, args=(names,), name="rabbitmq-probe", daemon=True
                ).start()
        if age is None or age >= self.stale_seconds:
            answer = self._read_now(names, answer)
        result = answer[1]
        if isinstance(result, ProbeFailed):
            # NOTE: a new exception per caller: raising the remembered one again would
            # grow its traceback with every probe that reuses it.
            raise ProbeFailed(str(result))
        return {name: dict(counts) for name, counts in result.items()}

    def _read_now(self, names, seen) -> tuple[float, Depths | ProbeFailed]:
        with self._io_lock:
            with self._lock:
                answer = self._answers.get(names)
            if answer is not seen and answer is not None:
                return answer  # another caller read it while this one waited
            answer = (self.clock(), self._check(names))
        with self._lock:
            self._answers[names] = answer
        return answer

    def _refresh(self, names: tuple[str, ...]) -> None:
        try:
            with self._io_lock:
                answer = (self.clock(), self._check(names))
            with self._lock:
                self._answers[names] = answer
        finally:
            with self._lock:
                self._refreshing.discard(names)

    def close(self) -> None:
        with self._io_lock:
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
