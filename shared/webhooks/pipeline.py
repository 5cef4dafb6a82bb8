"""Deliver in the worker that fanned the event out: no message per delivery, batches by load.

When ``dispatch_event`` commits an event's deliveries, the worker hands them to
this process's :class:`Pipeline` instead of queueing a ``deliver_webhooks``
message for them: that message cost as much CPU as the delivery. The pipeline
runs on the webhook event loop (:mod:`.sender`) and keeps three stages busy:

- admit and claim: waiting ids are taken in batches; each endpoint gets at most
  its ``max_concurrency`` attempts in flight from this process (the rest wait
  here, a bounded number per endpoint), then the batch is claimed and leased
  (:func:`.engine.begin`), on a small thread pool for the database;
- send: each claimed attempt is sent as soon as it is claimed;
- release: answered attempts give their endpoint slots back together
  (:func:`.engine.release`), before they are recorded: the limit bounds the
  requests a receiver has in flight, and a slot held through our own
  bookkeeping would cap each endpoint's throughput at limit / bookkeeping time;
- record: released attempts are recorded together (:func:`.engine.record`),
  whatever batch they were claimed in, so a slow receiver delays only its own.

Under load the queues grow and so do the batches; when idle a delivery goes
through alone. ``submit`` blocks while ``MAX_OUTSTANDING`` deliveries are in
the pipeline (waiting for their endpoint included), so a worker takes no more
events than it delivers and a burst waits in the broker, not in memory. One
endpoint may hold at most half of that room waiting,
so a slow receiver's backlog cannot stall the others: past it a delivery is left
in Postgres and counted as parked (:mod:`.limiter`), for a release of its
endpoint to pull or the sweeper to re-drive.

Nothing is lost if the process dies: the rows are committed before they are
handed over, a claimed row's claim expires, and the sweeper re-drives both.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.webhooks import engine, sender
from shared.webhooks.delivery import Result
from shared.webhooks.engine import MAX_BATCH, Attempt
from shared.webhooks.limiter import Limiter

log = logging.getLogger(__name__)

#: Deliveries handed over and not yet recorded, at most (submit blocks beyond).
MAX_OUTSTANDING = 1024
#: Admit-and-claim batches running at once.
MAX_CLAIMING = 2
#: Threads for the database and Redis work of claiming, releasing and recording:
#: one per stage that can run at once (``MAX_CLAIMING`` claims, a release, a record).
DB_THREADS = MAX_CLAIMING + 2


class Pipeline:
    """This process's in-process delivery: admit, claim, send and record, each stage batched."""

    def __init__(
        self, *, limiter: Limiter | None, default_timeout: float, room: int = MAX_OUTSTANDING
    ) -> None:
        self.limiter = limiter
        self.default_timeout = default_timeout
        #: Deliveries kept here per endpoint waiting for a free slot; more are parked. Half
        #: the room, so one slow endpoint's backlog leaves the other half to the others.
        self.max_waiting_per_endpoint = max(1, room // 2)
        self._runner = sender.loop_thread()
        self._loop = self._runner.loop
        self._room = threading.Semaphore(room)
        self._lock = threading.Lock()
        # All below under _lock.
        self._holding: set[uuid.UUID] = set()  # ids holding room
        self._incoming: deque[uuid.UUID] = deque()
        self._busy: Counter[uuid.UUID] = Counter()  # endpoint -> attempts in flight from here
        self._waiting: dict[uuid.UUID, deque[uuid.UUID]] = defaultdict(deque)
        self._limits: dict[uuid.UUID, int] = {}
        # On the loop only.
        self._sent: list[tuple[Attempt, Result]] = []
        self._done: list[tuple[Attempt, Result, bool]] = []
        self._claiming = 0
        self._releasing = False
        self._recording = False
        self._tasks: set[asyncio.Task] = set()
        self._db = ThreadPoolExecutor(DB_THREADS, thread_name_prefix="webhook-db")

    # --- any thread ---------------------------------------------------------------------

    def submit(self, ids: Sequence[uuid.UUID]) -> None:
        """Deliver these committed deliveries here; blocks while the pipeline is full.

        NOTE: what room a caller holds is handed over before it waits for more.
        Threads each holding part of the room while waiting for the rest would
        deadlock once their parts add up to all of it.
        """
        ready: list[uuid.UUID] = []
        for delivery_id in ids:
            if not self._room.acquire(blocking=False):
                self._hand_over(ready)
                ready = []
                self._room.acquire()
            ready.append(delivery_id)
        self._hand_over(ready)

    def _hand_over(self, ids: list[uuid.UUID]) -> None:
        """Queue ids whose room is held for claiming."""
        if not ids:
            return
        with self._lock:
            self._holding.update(ids)
            self._incoming.extend(ids)
        self._loop.call_soon_threadsafe(self._pump)

    def outstanding(self) -> int:
        """Deliveries handed over and not yet recorded (or left to Postgres)."""
        with self._lock:
            waiting = sum(len(w) for w in self._waiting.values())
            in_flight = sum(n for n in self._busy.values() if n > 0)
            return len(self._holding | set(self._incoming)) + waiting + in_flight

    def drain(self, timeout: float) -> bool:
        """Wait until everything handed over is recorded (shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.outstanding():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _let_go(self, ids: Iterable[uuid.UUID]) -> None:
        """Give back the room these ids hold (a call with lock held must not block: it does not)."""
        freed = 0
        for i in ids:
            if i in self._holding:
                self._holding.discard(i)
                freed += 1
        for _ in range(freed):
            self._room.release()

    def _ended(self, endpoint_ids: Iterable[uuid.UUID]) -> None:
        """Attempts of these endpoints ended: free their slots, let waiting ones in (lock held)."""
        for endpoint_id in endpoint_ids:
            self._busy[endpoint_id] -= 1
        for endpoint_id in set(endpoint_ids):
            waiting = self._waiting.get(endpoint_id)
            free = self._limits.get(endpoint_id, 1) - self._busy[endpoint_id]
            while waiting and free > 0:
                self._incoming.append(waiting.popleft())
                free -= 1
            if waiting is not None and not waiting:
                del self._waiting[endpoint_id]
            if self._busy[endpoint_id] <= 0:
                del self._busy[endpoint_id]

    def _admit_and_begin(self, batch: list[uuid.UUID]) -> list[Attempt]:
        """In a database thread: keep each endpoint within its limit, claim and lease the rest."""
        due = engine.due(batch)
        admitted: list[uuid.UUID] = []
        endpoint_of: dict[uuid.UUID, uuid.UUID] = {}
        overflow: Counter[uuid.UUID] = Counter()
        parked: list[uuid.UUID] = []
        with self._lock:
            for delivery_id, endpoint_id, limit in due:
                self._limits[endpoint_id] = limit
                if self._busy[endpoint_id] < limit:
                    self._busy[endpoint_id] += 1
                    admitted.append(delivery_id)
                    endpoint_of[delivery_id] = endpoint_id
                elif len(self._waiting[endpoint_id]) < self.max_waiting_per_endpoint:
                    self._waiting[endpoint_id].append(delivery_id)
                else:
                    overflow[endpoint_id] += 1
                    parked.append(delivery_id)
            # Not due (claimed elsewhere, done) or left in Postgres: their room is free.
            due_ids = {row[0] for row in due}
            not_due = [i for i in batch if i not in due_ids]
            self._let_go(not_due)
            self._let_go(parked)
        if overflow and self.limiter is not None:
            engine.pull_parked(self.limiter.park(overflow, {e: self._limits[e] for e in overflow}))
        attempts: list[Attempt] = []
        try:
            started = engine.begin(
                admitted, limiter=self.limiter, default_timeout=self.default_timeout
            )
            attempts = started.attempts
        finally:
            sent = {a.claimed.id for a in attempts}
            unsent = [i for i in admitted if i not in sent]
            with self._lock:
                self._let_go(unsent)
                self._ended([endpoint_of[i] for i in unsent])
        # A suspended tenant's rows are not due: recorded once each, left pending.
        try:
            engine.hold_suspended(not_due)
        except Exception:
            # NOTE: only the record is lost (the rows stay pending): never the attempts.
            log.exception("webhooks: could not record deliveries held by a suspension")
        return attempts

    def _release(self, sent: list[tuple[Attempt, Result]]) -> list[tuple[Attempt, Result, bool]]:
        """In a database thread: give answered attempts' leases back, then their slots here."""
        waiting = [False] * len(sent)
        try:
            waiting = engine.release([a for a, _ in sent], self.limiter)
        except Exception:
            # NOTE: the leases expire on their own; the attempts are recorded all the same.
            log.exception("releasing %d webhook leases failed", len(sent))
        finally:
            with self._lock:
                self._ended([a.claimed.endpoint_id for a, _ in sent])
        return [(a, r, w) for (a, r), w in zip(sent, waiting, strict=True)]

    def _record(self, done: list[tuple[Attempt, Result, bool]]) -> None:
        """In a database thread: record released attempts, then free the room they held."""
        try:
            engine.record(done)
        finally:
            with self._lock:
                self._let_go(a.claimed.id for a, _, _ in done)

    # --- on the loop --------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _pump(self) -> None:
        """Start whatever stage has work and room: claim batches, a release, a record."""
        while self._claiming < MAX_CLAIMING:
            with self._lock:
                take = min(MAX_BATCH, len(self._incoming))
                batch = [self._incoming.popleft() for _ in range(take)]
            if not batch:
                break
            self._claiming += 1
            self._spawn(self._claim_and_send(batch))
        if self._sent and not self._releasing:
            self._releasing = True
            sent, self._sent = self._sent, []
            self._spawn(self._release_batch(sent))
        if self._done and not self._recording:
            self._recording = True
            done, self._done = self._done, []
            self._spawn(self._record_batch(done))

    async def _in_db_thread(self, func, *args):
        return await self._loop.run_in_executor(self._db, functools.partial(func, *args))

    async def _claim_and_send(self, batch: list[uuid.UUID]) -> None:
        attempts: list[Attempt] = []
        try:
            attempts = await self._in_db_thread(self._admit_and_begin, batch)
        except Exception:
            log.exception("claiming %d webhook deliveries failed; the sweeper retries", len(batch))
        finally:
            self._claiming -= 1
        for attempt in attempts:
            self._spawn(self._send(attempt))
        self._pump()

    async def _send(self, attempt: Attempt) -> None:
        result = await sender.send_one(self._runner.session, self._runner.policy, attempt.claimed)
        self._sent.append((attempt, result))
        self._pump()

    async def _release_batch(self, sent: list[tuple[Attempt, Result]]) -> None:
        try:
            released = await self._in_db_thread(self._release, sent)
            # NOTE: not `self._done += await ...`: that reads the list before the await,
            # and _pump may hand that very list to a record meanwhile (recorded twice).
            self._done.extend(released)
        finally:
            self._releasing = False
            self._pump()

    async def _record_batch(self, done: list[tuple[Attempt, Result, bool]]) -> None:
        try:
            await self._in_db_thread(self._record, done)
        except Exception:
            # NOTE: the claims expire and the sweeper takes them back (counted as lost).
            log.exception("recording %d webhook attempts failed", len(done))
        finally:
            self._recording = False
            self._pump()


_lock = threading.Lock()
_pipeline: Pipeline | None = None


def pipeline(*, limiter: Limiter | None, default_timeout: float) -> Pipeline:
    """This process's pipeline, started on first use (drained, briefly, at exit)."""
    global _pipeline
    with _lock:
        if _pipeline is None or _pipeline._runner is not sender.loop_thread():
            _pipeline = Pipeline(limiter=limiter, default_timeout=default_timeout)
            atexit.register(_pipeline.drain, 10.0)
        return _pipeline
