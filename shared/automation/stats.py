"""Automation stats rollups: the evaluator queues each event's figures, a worker adds them up.

Writing: :func:`shared.automation.runs.insert_runs` inserts one
``automation_stats_pending`` row per tenant and instant of an evaluation batch, in the
statement that inserts its runs (no extra round trip, no lock: an insert); the row holds
the batch's runs already added up per rule (:func:`fold`). After commit the tenant's
``roll_up_automation_stats`` message is sent, at most once a second per process and
tenant, delayed by :data:`ROLLUP_DELAY_MS` so one message takes a whole burst.

Counting: :func:`drain` takes the tenant's transaction-level advisory lock (one
drainer per tenant, so no two fight over the hot bucket rows), deletes a batch of
pending rows and adds their sums in the same transaction (a row counts once), one
multi-row upsert per batch in key order. The scheduler's ``sweep_automation_stats``
re-sends the message for tenants whose rows wait too long (a lost message).

Buckets are UTC minutes, hours and days, per rule and for all rules
(:data:`ALL_RULES`); latencies go into the fixed histogram of
:data:`LATENCY_BOUNDS_MS` so any range's p50/p95 comes from summed buckets.
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
import time
import uuid
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import pydantic_core
from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.after_commit_queue import AfterCommitQueue
from shared.db import session_scope
from shared.models.automation_stats import ALL_RULES, LATENCY_BOUNDS_MS, LATENCY_COLUMNS

#: How long a roll-up message waits, so that it takes the events of a whole burst.
ROLLUP_DELAY_MS = 1000
#: Pending rows one transaction of :func:`drain` adds up.
BATCH = 2000
#: First half of the two-key advisory lock of a tenant's stats ('as': automation stats).
LOCK_SPACE = 0x6173
COUNTERS = ("runs", "matches", "skipped", "failures", "actions", "duration_ms_sum")
_SIZES = {"minute": dt.timedelta(minutes=1), "hour": dt.timedelta(hours=1)}

#: ``[tenant_id, ...]`` -> ``roll_up_automation_stats`` messages, after commit.
QUEUE: AfterCommitQueue[uuid.UUID] = AfterCommitQueue(
    "omnistream.automation_stats", "automation stats rollups"
)
set_enqueuer = QUEUE.set_enqueuer


# --- writing: the evaluator's side ---------------------------------------------------------


def item(rule_id: uuid.UUID | str, status: str, results: list[dict[str, Any]], ms: float) -> list:
    """One run's figures as queued: rule, status, actions executed, evaluation time.

    An action a retry carried on (``already_done``) was counted with the run it ran in.
    """
    executed = sum(1 for r in results if _executed(r)) if results else 0
    return [str(rule_id), status, executed, ms]


def _executed(result: dict[str, Any]) -> bool:
    return result.get("result") not in ("failed", None) and not result.get("already_done")


_last_sent: dict[uuid.UUID, float] = {}
_sent_lock = threading.Lock()


def throttled(tenant_ids: Sequence[uuid.UUID], *, now: float | None = None) -> list[uuid.UUID]:
    """The tenants whose roll-up this process has not sent in the last delay (then marked).

    PERF: an evaluated event is one message otherwise; a delayed message per second
    and tenant takes every event committed before it runs.
    """
    now = time.monotonic() if now is None else now
    due = []
    with _sent_lock:
        for tenant_id in dict.fromkeys(tenant_ids):
            if now - _last_sent.get(tenant_id, -1e9) >= ROLLUP_DELAY_MS / 1000:
                _last_sent[tenant_id] = now
                due.append(tenant_id)
    return due


def queued(session: Session, tenant_id: uuid.UUID) -> None:
    """The evaluator queued figures for ``tenant_id``: send its roll-up after commit."""
    QUEUE.enqueue_after_commit(session, [tenant_id])


def withdraw(session: Session, replaced: Iterable[Any]) -> None:
    """Take replaced runs back out of the rollups, in the caller's transaction.

    A retry deletes a rule's failed run and inserts its new one: without this the rule
    counted twice (a run and a failure, then a run again). Each ``(tenant_id, rule_id,
    created_at, status, duration_ms)`` queues its figures negated at its own instant,
    so the retried run counts once, as its final outcome. Its actions stay counted:
    they ran then, and the new run carries them on as ``already_done`` (not counted).
    """
    by_instant: dict[tuple[uuid.UUID, dt.datetime], dict[str, list]] = {}
    for tenant_id, rule_id, at, status, ms in replaced:
        partial = by_instant.setdefault((tenant_id, at), {})
        counters = partial.setdefault(str(rule_id), [0] * _WIDTH)
        taken = [0] * _WIDTH
        _count(taken, status, 0, ms)
        for index, amount in enumerate(taken):
            counters[index] -= amount
    if not by_instant:
        return
    rows = [
        {"tenant_id": tenant_id, "at": at, "items": [[r, c] for r, c in partial.items()]}
        for (tenant_id, at), partial in by_instant.items()
    ]
    session.execute(_QUEUE_FIGURES, {"rows": pydantic_core.to_json(rows).decode()})
    for tenant_id in dict.fromkeys(tenant_id for tenant_id, _ in by_instant):
        queued(session, tenant_id)


_QUEUE_FIGURES = text(
    """
    INSERT INTO automation_stats_pending (tenant_id, at, items)
    SELECT s.tenant_id, s.at, s.items
      FROM jsonb_to_recordset(CAST(:rows AS jsonb))
           AS s(tenant_id uuid, at timestamptz, items jsonb)
    """
)


# --- counting: the worker's side -------------------------------------------------------------


def _floor(at: dt.datetime, granularity: str) -> dt.datetime:
    at = at.astimezone(dt.UTC)
    if granularity == "minute":
        return at.replace(second=0, microsecond=0)
    if granularity == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def bucket_of(ms: float) -> int:
    """Index of the latency bucket of ``ms`` (bounds are inclusive upper bounds)."""
    return bisect.bisect_left(LATENCY_BOUNDS_MS, ms)


_WIDTH = len(COUNTERS) + len(LATENCY_COLUMNS)


def _count(counters: list, status: str, actions: int, ms: float) -> None:
    """Add one run's figures to a rule's flat counters (COUNTERS, then LATENCY_COLUMNS)."""
    counters[0] += 1
    if status in ("matched", "failed"):
        counters[1] += 1
        if status == "failed":
            counters[3] += 1
    elif status == "skipped":
        counters[2] += 1
    counters[4] += actions
    counters[5] += ms
    counters[len(COUNTERS) + bucket_of(ms)] += 1


def fold(items: Iterable[list[Any]]) -> list[list[Any]]:
    """Runs' :func:`item` figures added up per rule: ``[rule_id, [counters...]]`` each.

    PERF: what a pending row holds. One row of 50 rules' sums per evaluation batch
    replaced a row of 50 runs' items per event: the JSON encoded, parsed, compressed,
    deleted and read back by :func:`drain` shrank about 25 times.
    """
    partial: dict[str, list] = {}
    for rule_id, status, actions, ms in items:
        counters = partial.get(rule_id)
        if counters is None:
            counters = partial[rule_id] = [0] * _WIDTH
        _count(counters, status, actions, ms)
    return [[rule_id, counters] for rule_id, counters in partial.items()]


def sums(rows: Sequence[tuple[dt.datetime, list[list[Any]]]]) -> dict[tuple, dict[str, float]]:
    """(granularity, rule_id, bucket_start) -> counter -> amount, for the pending rows.

    PERF: the items are first added up per (instant, rule) in flat lists, then each
    total is spread over its three buckets and the all-rules row: an event's 50 runs
    were 50 x 6 dict updates of 7 counters each. An item is a rule's :func:`fold` sums,
    or one run's :func:`item` (rows queued before the sums).
    """
    partial: dict[tuple[dt.datetime, str], list] = {}
    for at, items in rows:
        for item in items:
            key = (at, item[0])
            counters = partial.get(key)
            if counters is None:
                counters = partial[key] = [0] * _WIDTH
            if len(item) == 2:
                for index, amount in enumerate(item[1]):
                    counters[index] += amount
            else:
                _count(counters, item[1], item[2], item[3])
    names = (*COUNTERS, *LATENCY_COLUMNS)
    out: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    floors: dict[dt.datetime, list[tuple[str, dt.datetime]]] = {}
    for (at, rule_id), counters in partial.items():
        starts = floors.get(at)
        if starts is None:
            starts = floors[at] = [(g, _floor(at, g)) for g in ("minute", "hour", "day")]
        figures = [(name, amount) for name, amount in zip(names, counters, strict=True) if amount]
        for rule in (uuid.UUID(rule_id), ALL_RULES):
            for granularity, start in starts:
                bucket = out[(granularity, rule, start)]
                for name, amount in figures:
                    bucket[name] += amount
    return out


_ALL = (*COUNTERS, *LATENCY_COLUMNS)


def _upsert_statement() -> Any:
    """Add a JSON array of bucket rows to ``automation_stats`` (built once)."""
    types = ", ".join(
        f"{c} {'double precision' if c == 'duration_ms_sum' else 'bigint'}" for c in _ALL
    )
    adds = ", ".join(f"{c} = automation_stats.{c} + EXCLUDED.{c}" for c in _ALL)
    return text(
        f"INSERT INTO automation_stats (tenant_id, granularity, rule_id, bucket_start, "  # noqa: S608 (this module's constants)
        f"{', '.join(_ALL)}) SELECT CAST(:tenant_id AS uuid), r.*"
        f" FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(granularity text, rule_id uuid,"
        f" bucket_start timestamptz, {types})"
        f" ON CONFLICT (tenant_id, granularity, rule_id, bucket_start) DO UPDATE SET {adds}"
    )


_UPSERT = _upsert_statement()
_TAKE = text(
    """
    DELETE FROM automation_stats_pending WHERE id IN (
        SELECT id FROM automation_stats_pending WHERE tenant_id = :tenant_id
         ORDER BY id LIMIT :limit)
    RETURNING at, items
    """
)
_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:space, :key)")


def _number(column: str, value: float) -> float | int:
    return value if column == "duration_ms_sum" else int(value)


def add(session: Session, tenant_id: uuid.UUID, totals: dict[tuple, dict[str, float]]) -> None:
    """Add ``totals`` to the bucket rows: one statement, rows in key order (no deadlock)."""
    rows = [
        {"granularity": g, "rule_id": rule, "bucket_start": start.isoformat()}
        | {
            c: counters.get(c, 0) if c == "duration_ms_sum" else int(counters.get(c, 0))
            for c in _ALL
        }
        for (g, rule, start), counters in sorted(totals.items(), key=lambda kv: str(kv[0]))
    ]
    if rows:
        session.execute(
            _UPSERT, {"tenant_id": tenant_id, "rows": pydantic_core.to_json(rows).decode()}
        )


def drain_batch(session: Session, tenant_id: uuid.UUID, limit: int = BATCH) -> int | None:
    """Add up to ``limit`` pending rows of the tenant; None when another drainer holds it."""
    key = zlib.crc32(tenant_id.bytes) - 2**31
    if not session.scalar(_TRY_LOCK, {"space": LOCK_SPACE, "key": key}):
        return None
    rows = session.execute(_TAKE, {"tenant_id": tenant_id, "limit": limit}).all()
    add(session, tenant_id, sums(rows))
    return len(rows)


def drain(tenant_id: uuid.UUID, *, budget_seconds: float = 20.0) -> tuple[int, bool]:
    """Add every pending row of the tenant; (rows counted, whether to run again).

    Runs again when another drainer held the tenant (its rows may be newer than its
    take) or the time budget ran out with rows left.
    """
    deadline = time.monotonic() + budget_seconds
    counted = 0
    while True:
        with session_scope() as session:
            taken = drain_batch(session, tenant_id)
        if taken is None:
            return counted, True
        counted += taken
        if taken < BATCH:
            return counted, False
        if time.monotonic() > deadline:
            return counted, True


#: Minute buckets are kept this long; older ranges are read to the hour
#: (:func:`shared.automation.stats_query.period`).
KEEP_MINUTES = dt.timedelta(days=7)
PURGE_BATCH = 10_000
_PURGE_MINUTES = text(
    """
    DELETE FROM automation_stats WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM automation_stats
         WHERE granularity = 'minute' AND bucket_start < now() - :keep
         LIMIT :limit))
    """
)


def purge_minutes(session: Session, *, batches: int = 50) -> int:
    """Delete minute buckets older than :data:`KEEP_MINUTES`, a committed batch at a time
    (short locks); how many."""
    deleted = 0
    for _ in range(batches):
        taken = session.execute(
            _PURGE_MINUTES, {"keep": KEEP_MINUTES, "limit": PURGE_BATCH}
        ).rowcount
        session.commit()
        deleted += taken
        if taken < PURGE_BATCH:
            break
    return deleted


#: NOTE: active tenants only, as every sweeper: a suspended tenant's roll-up is dropped by
#: the tenant gate, so its rows wait until reactivation; picked every run, such tenants
#: were sent a roll-up each 15 s for the gate to drop, and filled the bounded batch, so an
#: active tenant's lost roll-up was never re-sent.
_STALE = text(
    """
    SELECT DISTINCT p.tenant_id FROM automation_stats_pending p
      JOIN tenants t ON t.id = p.tenant_id AND t.status = 'active'
     WHERE p.queued_at < now() - make_interval(secs => :after) LIMIT :limit
    """
)


def sweep(session: Session, *, after_seconds: float = 10.0, limit: int = 1000) -> int:
    """Send the roll-up again for tenants whose rows wait too long (a lost message)."""
    tenants = list(session.scalars(_STALE, {"after": after_seconds, "limit": limit}))
    if tenants:
        QUEUE.enqueue_after_commit(session, tenants)
    return len(tenants)
