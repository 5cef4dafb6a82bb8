"""Deliver in the worker that fanned the event out: no message per delivery, batches by load.

When ``dispatch_event`` commits an event's deliveries, the worker hands them to
this process's :class:`Pipeline` instead of queueing a ``deliver_webhooks``
message for them: that message cost as much CPU as the delivery. The pipeline
runs on the webhook event loop (:mod:`.sender`) and keeps three stages busy:

- admit, lease and claim: waiting ids are taken in batches; each endpoint gets at
  most its ``max_concurrency`` attempts in flight from this process (the rest wait
  here, a bounded number per endpoint), their leases are asked (:mod:`.limiter`)
  and the leased ones claimed (:func:`.engine.begin_leased`), on a small thread
  pool for the database. A delivery refused a lease (other worker processes hold
  the endpoint's slots) waits here too, and asks again as soon as a slot of its
  endpoint frees in any process (:mod:`.freed_slots`);
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
from shared.webhooks.engine import MAX_BATCH, Attempt, Due
from shared.webhooks.freed_slots import FreedSlots
from shared.webhooks.limiter import Limiter

log = logging.getLogger(__name__)

#: Deliveries handed over and not yet recorded, at most (submit blocks beyond).
MAX_OUTSTANDING = 1024
#: Admit-and-claim batches running at once.
MAX_CLAIMING = 2
#: Seconds between the lease requests of a delivery refused one, should the message that
#: a slot freed get lost (it normally comes at once, :mod:`.freed_slots`).
RETRY_SECONDS = 0.25
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
        self._busy: Counter[uuid.UUID] = Counter()  # endpoint -> leases held from here
        self._waiting: dict[uuid.UUID, deque[Due]] = defaultdict(deque)
        self._retry: deque[Due] = deque()  # waiting ones to ask a lease for again
        #: Endpoints whose leases other processes hold: their waiting deliveries ask
        #: again when one is freed (:mod:`.freed_slots`), or after RETRY_SECONDS.
        self._blocked: set[uuid.UUID] = set()
        # On the loop only.
        self._retry_armed = False
        self._sent: list[tuple[Attempt, Result]] = []
        self._done: list[tuple[Attempt, Result, bool]] = []
        self._claiming = 0
        self._releasing = False
        self._recording = False
        self._tasks: set[asyncio.Task] = set()
        self._db = ThreadPoolExecutor(DB_THREADS, thread_name_prefix="webhook-db")
        self._freed = FreedSlots(self._on_freed) if limiter is not None else None

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
            queued = len(self._holding | set(self._incoming)) + len(self._retry)
            return queued + waiting + in_flight

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
        """Leases of these endpoints given back: let waiting ones ask again (lock held)."""
        for endpoint_id in endpoint_ids:
            self._busy[endpoint_id] -= 1
        for endpoint_id in set(endpoint_ids):
            self._requeue(endpoint_id)
            if self._busy[endpoint_id] <= 0:
                del self._busy[endpoint_id]

    def _requeue(self, endpoint_id: uuid.UUID) -> None:
        """Move as many of the endpoint's waiting deliveries as it has room here to retry."""
        waiting = self._waiting.get(endpoint_id)
        if not waiting:
            return
        free = waiting[0].limit - self._busy[endpoint_id]
        while waiting and free > 0:
            self._retry.append(waiting.popleft())
            free -= 1
        if not waiting:
            del self._waiting[endpoint_id]

    def _on_freed(self, endpoint_id: uuid.UUID) -> None:
        """(The listener's thread) another process freed a slot: wake the endpoint's waiting."""
        with self._lock:
            if endpoint_id not in self._blocked:
                return
        self._loop.call_soon_threadsafe(self._wake, [endpoint_id])

    def _wake(self, endpoint_ids: Iterable[uuid.UUID]) -> None:
        with self._lock:
            for endpoint_id in endpoint_ids:
                if endpoint_id in self._blocked:
                    self._blocked.discard(endpoint_id)
                    self._requeue(endpoint_id)
        self._pump()

    def _retry_blocked(self) -> None:
        """The fallback for a freed-slot message lost: the blocked endpoints ask again."""
        self._retry_armed = False
        with self._lock:
            blocked = list(self._blocked)
        self._wake(blocked)

    def _admit(self, due: list[Due], retries: list[Due]) -> tuple[list[Due], Counter[uuid.UUID]]:
        """Take a slot here for what may ask a lease now; queue the rest (lock held).

        Returns those to ask a lease for, and the count per endpoint of those left
        in Postgres (their room is given back; the caller parks them).
        """
        asking: list[Due] = []
        overflow: Counter[uuid.UUID] = Counter()
        back: dict[uuid.UUID, list[Due]] = defaultdict(list)
        for item in retries:
            if self._busy[item.endpoint_id] < item.limit:
                self._busy[item.endpoint_id] += 1
                asking.append(item)
            else:
                back[item.endpoint_id].append(item)
        for endpoint_id, items in back.items():
            self._waiting[endpoint_id].extendleft(reversed(items))
        for item in due:
            endpoint_id = item.endpoint_id
            free = self._busy[endpoint_id] < item.limit and endpoint_id not in self._blocked
            if free and not self._waiting.get(endpoint_id):
                self._busy[endpoint_id] += 1
                asking.append(item)
                continue
            if len(self._waiting[endpoint_id]) < self.max_waiting_per_endpoint:
                self._waiting[endpoint_id].append(item)
            else:
                overflow[endpoint_id] += 1
                self._let_go([item.id])
        return asking, overflow

    def _lease(self, asking: list[Due]) -> list[tuple[Due, str | None]]:
        """Ask the leases; a refused one waits here, its endpoint blocked until a slot frees."""
        if self.limiter is None:
            return [(item, None) for item in asking]
        leases = self.limiter.acquire_many(
            [(i.endpoint_id, i.limit, i.lease_seconds) for i in asking]
        )
        refused = [item for item, lease in zip(asking, leases, strict=True) if lease is None]
        with self._lock:
            for item in reversed(refused):
                self._busy[item.endpoint_id] -= 1
                self._waiting[item.endpoint_id].appendleft(item)
                self._blocked.add(item.endpoint_id)
        return [(item, lease) for item, lease in zip(asking, leases, strict=True) if lease]

    def _admit_and_begin(self, batch: list[uuid.UUID], retries: list[Due]) -> list[Attempt]:
        """In a database thread: a lease per delivery (one here per endpoint's slot), then claim.

        A delivery refused a lease (other processes hold the endpoint's slots) waits here,
        holding its room, and asks again as soon as a slot frees anywhere: parking it in
        Postgres would leave it to whichever process pulls a parked row, or to the sweeper.
        """
        try:
            due = engine.due(batch, self.default_timeout) if batch else []
        except BaseException:
            # NOTE: the rows stay pending: the sweeper re-drives them.
            with self._lock:
                self._let_go([*batch, *(item.id for item in retries)])
            raise
        with self._lock:
            # Not due (claimed elsewhere, done): their room is free.
            due_ids = {item.id for item in due}
            not_due = [i for i in batch if i not in due_ids]
            self._let_go(not_due)
            asking, overflow = self._admit(due, retries)
        if overflow and self.limiter is not None:
            limits = {item.endpoint_id: item.limit for item in due}
            engine.pull_parked(self.limiter.park(overflow, limits))
        attempts: list[Attempt] = []
        leased: list[tuple[Due, str | None]] = []
        try:
            leased = self._lease(asking)
            if leased:
                attempts = engine.begin_leased(
                    leased, limiter=self.limiter, default_timeout=self.default_timeout
                ).attempts
        except BaseException:
            held = [(item.endpoint_id, lease) for item, lease in leased if lease]
            if held and self.limiter is not None:
                self.limiter.release_many(held)
            raise
        finally:
            sent = {a.claimed.id for a in attempts}
            unsent = [item for item, _ in leased if item.id not in sent]
            with self._lock:
                self._let_go(item.id for item in unsent)
                self._ended([item.endpoint_id for item in unsent])
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
                retries = [self._retry.popleft() for _ in range(min(MAX_BATCH, len(self._retry)))]
                take = min(MAX_BATCH - len(retries), len(self._incoming))
                batch = [self._incoming.popleft() for _ in range(take)]
            if not batch and not retries:
                break
            self._claiming += 1
            self._spawn(self._claim_and_send(batch, retries))
        if self._blocked and not self._retry_armed:
            # NOTE: read without the lock: a blocked endpoint added meanwhile pumps again.
            self._retry_armed = True
            self._loop.call_later(RETRY_SECONDS, self._retry_blocked)
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

    async def _claim_and_send(self, batch: list[uuid.UUID], retries: list[Due]) -> None:
        attempts: list[Attempt] = []
        try:
            attempts = await self._in_db_thread(self._admit_and_begin, batch, retries)
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
