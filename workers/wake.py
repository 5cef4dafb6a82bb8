"""Redis consumers that are woken when a message arrives, instead of polling every few ms.

Dramatiq's Redis consumers poll: an idle one sleeps up to ``WORKER_TIMEOUT_MS`` between
fetches, so that sleep is the enqueue-to-start latency at low traffic, and every worker
process pays it for each of its ~22 consumers (one per queue and delay queue) whether or
not there is work: at 50 ms, about 11 % of a core per idle process, taken from the work on
a small machine, and more processes on a host meant less CPU for events. Here:

- every enqueue also publishes the queue's name, from within Dramatiq's dispatch script,
  so at no extra round trip, on the channel of one worker process picked at random among
  those listening (a set per broker namespace that each listener joins once subscribed);
  that process's listener thread wakes the queue's consumers, which fetch at once. PERF:
  waking every process made each enqueue cost a fetch in each, and all but one found
  nothing (about 2.5 fetches per message with two processes, ~9 % of the worker's CPU
  beside the benchmarks' loads). A process that cannot take the message (no consumer of
  that queue, or each one's prefetch full) passes the wake on to every process, so no
  message waits for a busy process while another could run it; so does the script when
  nobody is in the set or the one picked no longer listens (it is dropped from the set).
  A requeue of a stopping worker's prefetched messages wakes every process. Consumers
  still poll, at the long ``WORKER_TIMEOUT_MS``, which bounds what a wake lost while a
  listener reconnects can cost;
- a consumer whose prefetch was full is woken when its worker threads have freed half of
  it (Dramatiq's consumer would find out at its next poll);
- a consumer whose last fetch emptied its queue waits for the next wake (or its poll)
  instead of asking again as soon as it has handed its messages out, which found nothing
  almost every time;
- a delay-queue consumer waits no longer than the earliest eta of the messages it holds,
  so a retry's backoff is not stretched by the long poll;
- queue maintenance (moving a dead worker's unacked messages back to their queue) runs on
  a queue's fetch every :data:`MAINTENANCE_SECONDS` per process, instead of on a random
  0.1 % of broker commands, which with fewer polls would have come seldom and at random.
"""

from __future__ import annotations

import contextlib
import heapq
import random
import threading
import time
import uuid
import weakref

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import (
    MAINTENANCE_COMMAND_BLACKLIST,
    RedisBroker,
    _RedisConsumer,
    _scripts,
)
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

from shared import pubsub
from workers.prefetch import shared_prefetch

#: Seconds between two maintenance runs of one queue in one process. A dead worker's
#: messages come back at most this long after its heartbeat timeout has passed.
MAINTENANCE_SECONDS = 5.0
#: The wake channel's name after the broker's namespace (every process listens to it; a
#: process's own channel is this, ``:`` and its id).
WAKE_CHANNEL_SUFFIX = ":__wake__"
#: The set of the listening processes' ids, after the broker's namespace.
WAKERS_SUFFIX = ":__wakers__"
#: Put before Dramatiq's dispatch script (whose KEYS[1] is the namespace, ARGV[1] the
#: command, ARGV[3] the queue): an enqueue publishes the queue's name to one listening
#: process (every one if none is known or the one picked is gone: it leaves the set), a
#: requeue of a stopping worker's prefetched messages to every one, in the same round trip.
_WAKE_LUA = (
    f"""
if ARGV[1] == "enqueue" then
    local wakers = KEYS[1] .. "{WAKERS_SUFFIX}"
    local picked = redis.call("srandmember", wakers)
    if picked then
        if redis.call("publish", KEYS[1] .. "{WAKE_CHANNEL_SUFFIX}:" .. picked, ARGV[3]) == 0 then
            redis.call("srem", wakers, picked)
            picked = false
        end
    end
    if not picked then
        redis.call("publish", KEYS[1] .. "{WAKE_CHANNEL_SUFFIX}", ARGV[3])
    end
elseif ARGV[1] == "requeue" then
    redis.call("publish", KEYS[1] .. "{WAKE_CHANNEL_SUFFIX}", ARGV[3])
end
"""
).encode()
#: Seconds one read of the wake channel may block (the listener's only idle wake-up).
LISTEN_SECONDS = 30.0


class WakingRedisBroker(RedisBroker):
    """Dramatiq's Redis broker whose enqueues wake the consumers of one process at once."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.wake_channel = f"{self.namespace}{WAKE_CHANNEL_SUFFIX}"
        #: This process's id in the set of listeners, and the channel of its own wakes.
        self.waker_id = uuid.uuid4().hex
        self.wakers_key = f"{self.namespace}{WAKERS_SUFFIX}"
        self.own_wake_channel = f"{self.wake_channel}:{self.waker_id}"
        self.scripts["dispatch"] = self.client.register_script(_WAKE_LUA + _scripts["dispatch"])
        #: Queue -> its consumers in this process (a consumer a pause replaced without
        #: closing it goes with its last reference).
        self._consumers: dict[str, weakref.WeakSet[WakingConsumer]] = {}
        self._consumers_lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._closed = threading.Event()
        self._maintained_at: dict[str, float] = {}

    @property
    def consumer_class(self):
        return WakingConsumer

    def consume(self, queue_name, prefetch=1, timeout=5000):
        return super().consume(queue_name, shared_prefetch(queue_name, prefetch), timeout)

    def close(self) -> None:
        """Let this process's listener go (at its next read, within :data:`LISTEN_SECONDS`)."""
        self._closed.set()
        if self._listener is not None:
            # NOTE: a process that dies without this is dropped by the first wake sent to it.
            with contextlib.suppress(redis.RedisError):
                self.client.srem(self.wakers_key, self.waker_id)
        super().close()

    # --- waking ------------------------------------------------------------------------

    def add_consumer(self, consumer: WakingConsumer) -> None:
        """Wake ``consumer`` on each enqueue to its queue (starts this process's listener)."""
        with self._consumers_lock:
            self._consumers.setdefault(consumer.queue_name, weakref.WeakSet()).add(consumer)
            if self._listener is None:
                self._listener = threading.Thread(
                    target=self._listen, name="dramatiq-wake", daemon=True
                )
                self._listener.start()

    def remove_consumer(self, consumer: WakingConsumer) -> None:
        with self._consumers_lock:
            self._consumers.get(consumer.queue_name, weakref.WeakSet()).discard(consumer)

    def _consumers_of(self, queue_name: str | None) -> list[WakingConsumer]:
        """This process's consumers of ``queue_name`` (of every queue with None)."""
        with self._consumers_lock:
            if queue_name is None:
                return [c for consumers in self._consumers.values() for c in consumers]
            return list(self._consumers.get(queue_name, ()))

    def wake(self, queue_name: str | None = None) -> None:
        """Wake the consumers of ``queue_name`` in this process (of every queue with None)."""
        for consumer in self._consumers_of(queue_name):
            consumer.woken.set()

    def woken_alone(self, queue_name: str) -> None:
        """A wake sent to this process only: taken here if a consumer of the queue has
        room, else passed on to every process (one of them may be idle)."""
        consumers = self._consumers_of(queue_name)
        if consumers and not all(consumer.full for consumer in consumers):
            for consumer in consumers:
                consumer.woken.set()
            return
        try:
            self.client.publish(self.wake_channel, queue_name)
        except redis.RedisError:
            self.wake(queue_name)  # NOTE: then a freed thread or the poll finds it

    def _subscribed(self) -> None:
        self.client.sadd(self.wakers_key, self.waker_id)
        # NOTE: what was enqueued while nobody listened is found by one fetch each.
        self.wake()

    def _listen(self) -> None:
        pubsub.listen(
            lambda: self.client,
            self.wake_channel,
            self.wake,
            self._closed,
            outage_warning="worker wake channel unavailable; consumers poll meanwhile",
            on_subscribed=self._subscribed,
            read_seconds=LISTEN_SECONDS,
            also={self.own_wake_channel: self.woken_alone},
        )

    # --- maintenance -------------------------------------------------------------------

    def _maintenance_due(self, command: str, queue_name: str) -> int:
        if command in MAINTENANCE_COMMAND_BLACKLIST:
            return 0
        now = time.monotonic()
        if now - self._maintained_at.get(queue_name, 0.0) < MAINTENANCE_SECONDS:
            return 0
        self._maintained_at[queue_name] = now
        return 1

    def _dispatch(self, command):
        # NOTE: Dramatiq's own (redis.py, 2.x) but for the maintenance flag, which it draws
        # at random per command; the script's arguments are in its order.
        dispatch = self.scripts["dispatch"]
        keys = [self.namespace]

        def do_dispatch(queue_name, *args):
            return dispatch(
                args=[
                    command,
                    current_millis(),
                    queue_name,
                    self.broker_id,
                    self.heartbeat_timeout,
                    self.dead_message_ttl,
                    self._maintenance_due(command, queue_name),
                    self._max_unpack_size(),
                    *args,
                ],
                keys=keys,
            )

        return do_dispatch


class WakingConsumer(_RedisConsumer):
    """A consumer that waits on an event (enqueue, freed prefetch, due eta) between fetches."""

    def __init__(self, broker: WakingRedisBroker, queue_name, prefetch, timeout) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self.woken = threading.Event()
        #: Etas (ms) of the delayed messages this consumer handed out and may still hold.
        self._etas: list[int] = []
        #: The last fetch was skipped because the prefetch was full.
        self._full = False
        #: The last fetch found fewer messages than it had room for: the queue was empty.
        self._drained = False
        broker.add_consumer(self)

    def ack(self, message):
        try:
            super().ack(message)
        finally:
            self._freed()

    def nack(self, message):
        try:
            super().nack(message)
        finally:
            self._freed()

    def _freed(self) -> None:
        if self._full and self.outstanding_message_count <= self.prefetch // 2:
            self._full = False
            self.woken.set()

    @property
    def full(self) -> bool:
        """Whether its prefetch was full at its last look (it fetches nothing until freed)."""
        return self._full

    def close(self):
        self.broker.remove_consumer(self)
        super().close()

    def __next__(self):
        try:
            while True:
                if self.message_cache:
                    data = self.message_cache.pop(0)
                    if data is None:
                        continue
                    message = Message.decode(data)
                    self.queued_message_ids.add(message.message_id)
                    eta = message.options.get("eta")
                    if isinstance(eta, int | float):
                        heapq.heappush(self._etas, eta)
                    return MessageProxy(message)
                if self._drained:
                    # PERF: the last fetch emptied the queue; whatever was enqueued since
                    # woke a process (this one's event, set after the fetch cleared it, or
                    # another's). Asking again now found nothing almost every time: about
                    # one wasted fetch per message.
                    self._drained = False
                    if not self.woken.is_set():
                        self.woken.wait(self._idle_seconds())
                        return None
                # NOTE: cleared before the fetch, so an enqueue during it wakes the next wait.
                self.woken.clear()
                room = self.prefetch - self.outstanding_message_count
                self._full = room <= 0
                if room > 0:
                    self.message_cache = self.broker.do_fetch(self.queue_name, room)
                    if self.message_cache:
                        self._drained = len(self.message_cache) < room
                        continue
                self.woken.wait(self._idle_seconds())
                # The consumer thread enqueues due delayed messages, then asks again.
                return None
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None

    def _idle_seconds(self) -> float:
        """The poll (with Dramatiq's jitter), cut short by the earliest held eta."""
        wait = self.timeout / 1000 * random.uniform(0.5, 1.0)
        if self._etas:
            now = current_millis()
            due = False
            while self._etas and self._etas[0] <= now:
                heapq.heappop(self._etas)
                due = True
            if due:
                # NOTE: one may have come due after the consumer thread last looked.
                return 0.0
            if self._etas:
                wait = min(wait, (self._etas[0] - now) / 1000)
        return wait
