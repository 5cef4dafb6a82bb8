"""Tell the console what this worker process does, and obey its pauses and cancels.

Every :data:`~shared.ops.keys.BEAT_SECONDS` a thread of the worker process publishes
its state (:mod:`shared.ops.processes`): which worker thread runs which message since
when, the delayed messages it holds, the queues it consumes. The same round trip
reads the paused queues and the cancelled message ids, so an operator's pause takes
effect within a beat and costs no Redis call per message.

The state lives under a TTL: a process killed with ``-9`` leaves the console by
itself within :data:`~shared.ops.keys.PROCESS_TTL_SECONDS`, as Sidekiq's processes do.
A process told to stop (SIGTERM) stays listed as ``draining`` with the jobs it still
finishes, and leaves the console only when they are done.
Redis being down never fails a job: the beat logs once per outage and tries again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import dramatiq
import redis
from dramatiq.common import q_name
from dramatiq.middleware import SkipMessage
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.config import Settings
from shared.ops import keys, processes
from shared.worker_metrics import tenant_id_from_options

log = logging.getLogger(__name__)

#: Seconds to wait for Redis before a beat gives up.
REDIS_TIMEOUT_SECONDS = 1.0


class Presence(dramatiq.Middleware):
    """Publish busy threads and held delayed messages; apply pauses and cancels.

    Place it before ``Metrics`` so a cancelled message is counted as skipped.
    """

    def __init__(self, settings: Settings, *, client: redis.Redis | None = None):
        self.namespace = settings.redis_namespace
        self.client = client or redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 1),
        )
        self._lock = threading.Lock()
        #: Worker thread ident -> the message it runs (a dict ready to publish).
        self._busy: dict[int, dict[str, Any]] = {}
        #: Id of each delayed message held in memory -> ``queue|actor``.
        self._held: dict[str, str] = {}
        self._cancelled: frozenset[str] = frozenset()
        self._worker: dramatiq.Worker | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._identity = ""
        self._started_at = 0.0
        self._failing = False
        self._draining = False

    # --- what runs -----------------------------------------------------------------------

    def before_process_message(self, broker, message):
        if message.message_id in self._cancelled:
            log.info(
                "message %s (%s) skipped: an operator deleted it or ran it early",
                message.message_id,
                message.actor_name,
            )
            raise SkipMessage()
        thread = threading.current_thread()
        tenant = tenant_id_from_options(message.options)
        self._busy[thread.ident or 0] = {
            "thread": thread.name,
            "thread_id": thread.ident,
            "message_id": message.message_id,
            "queue": q_name(message.queue_name),
            "actor": message.actor_name,
            "tenant_id": str(tenant) if tenant else None,
            "retries": message.options.get("retries", 0),
            "args": repr(tuple(message.args))[: processes.MAX_ARGS_CHARS],
            "started_at": time.time(),
        }

    def after_process_message(self, broker, message, *, result=None, exception=None):
        self._busy.pop(threading.get_ident(), None)

    def after_skip_message(self, broker, message):
        self._busy.pop(threading.get_ident(), None)

    def before_delay_message(self, broker, message):
        with self._lock:
            self._held[message.message_id] = f"{q_name(message.queue_name)}|{message.actor_name}"

    def after_enqueue(self, broker, message, delay):
        # NOTE: a held delayed message is handed over to its queue by an enqueue.
        if self._held:
            with self._lock:
                self._held.pop(message.message_id, None)

    def after_consumer_thread_boot(self, broker, thread):
        """Start the consumer of a paused queue paused, before its first fetch.

        NOTE: Dramatiq starts consumers before ``after_worker_boot``: without this, a host
        started while a queue is paused (a deploy, autoscaling) would fetch and run a
        prefetch's worth of the paused queue's messages before its first beat.
        """
        name = thread.queue_name
        if name != q_name(name):
            return  # delay queues only hand due messages over (see _apply_pauses)
        try:
            paused = self.client.sismember(keys.paused_key(self.namespace), name)
        except redis.RedisError:
            log.warning("could not read the paused queues at boot; the beat applies them")
            return
        if paused:
            log.warning("queue %s paused by an operator: no new messages are fetched", name)
            thread.pause()

    # --- the beat ------------------------------------------------------------------------

    def after_worker_boot(self, broker, worker):
        self._worker = worker
        self._identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._started_at = time.time()
        self._draining = False
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat_forever, name="ops-presence", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker, worker):
        # NOTE: Dramatiq emits this before its threads finish their jobs: the beat goes
        # on, so an operator draining a host sees what it still runs, and when it is done.
        self._draining = True
        self.beat()

    def after_worker_shutdown(self, broker, worker):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * keys.BEAT_SECONDS)
        try:
            processes.withdraw(self.client, self.namespace, self._identity)
        except redis.RedisError:
            log.debug("could not withdraw this process from the console", exc_info=True)

    def _beat_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception:  # the beat thread must outlive any surprise
                log.exception("worker presence beat failed")
            self._stop.wait(keys.BEAT_SECONDS)

    def state(self) -> dict[str, Any]:
        worker = self._worker
        consumers = dict(worker.consumers) if worker is not None else {}
        with self._lock:
            held: dict[str, int] = {}
            for name in self._held.values():
                held[name] = held.get(name, 0) + 1
        return {
            "identity": self._identity,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self._started_at,
            "beat_at": time.time(),
            "threads": worker.worker_threads if worker is not None else 0,
            "draining": self._draining,
            "queues": sorted({q_name(name) for name in consumers}),
            "paused": sorted(name for name, c in consumers.items() if c.paused),
            # NOTE: copy() is one C call under the GIL: worker threads may add or remove
            # entries meanwhile, and iterating the live dict could see it change size.
            "busy": list(self._busy.copy().values()),
            "delayed": held,
        }

    def beat(self) -> bool:
        """Publish this process's state, read pauses and cancels; False if Redis failed."""
        now = time.time()
        try:
            pipe = self.client.pipeline(transaction=False)
            processes.publish(pipe, self.namespace, self.state(), now=now)
            pipe.smembers(keys.paused_key(self.namespace))
            pipe.zrangebyscore(keys.cancelled_key(self.namespace), now, "+inf")
            *_, paused, cancelled = pipe.execute()
        except redis.RedisError:
            if not self._failing:
                self._failing = True
                log.warning("worker presence could not reach Redis; retrying", exc_info=True)
            return False
        if self._failing:
            self._failing = False
            log.warning("worker presence reaches Redis again")
        self._cancelled = frozenset(member.decode() for member in cancelled)
        self._apply_pauses({member.decode() for member in paused})
        return True

    def _apply_pauses(self, paused: set[str]) -> None:
        """Pause the consumers of paused queues (never their delay queues, which only hand
        due messages over), resume the others."""
        if self._worker is None:
            return
        for name, consumer in list(self._worker.consumers.items()):
            if name != q_name(name):
                continue
            if name in paused and not consumer.paused:
                log.warning("queue %s paused by an operator: no new messages are fetched", name)
                consumer.pause()
            elif name not in paused and consumer.paused:
                log.warning("queue %s resumed by an operator", name)
                consumer.resume()
