"""The nightly reconcile: recount the rollups from the source rows and correct any drift.

Per tenant, in transactions each holding the tenant's rollup lock (the actor waits):

1. every conversation's fact row is diffed against its row, with the actor's own
   diff (:func:`shared.analytics.rollup.apply_fact_changes`), so the gauges move
   exactly as if the missing events had arrived: :data:`FACTS_BATCH` conversations
   per transaction (newest first), then the facts of deleted conversations, so
   neither memory nor the time the actor waits grows with the tenant;
2. the gauges themselves are compared with a count of the fact rows (which the
   actor moves together with them, under the same lock);
3. the previous ``days`` local days (never today, still being counted) are
   recounted: conversations, contacts and messages per day, channel and hour, and
   CSAT surveys and ratings per day and agent (from ``csat_surveys``).

A day is only recounted once it is *settled*: no event of the tenant from that day
is still waiting (in the outbox or in ``analytics_events``). Recounting it earlier
and then counting the waiting event would count it twice; such a day is skipped
and the next run takes it. Each run leaves an ``analytics_reconcile_runs`` row with
what it checked and how many rollup rows it corrected, per table.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from shared.analytics import counters
from shared.analytics.counters import Deltas
from shared.analytics.intake import COUNTED, PURGE_BATCH, purge_counted
from shared.analytics.local_time import tenant_zone, today
from shared.analytics.rollup import XACT_LOCK, Fact, apply_fact_changes, lock_key
from shared.db import session_scope
from shared.models import AnalyticsReconcileRun, Tenant
from shared.models.analytics import NOBODY

log = logging.getLogger(__name__)

#: How many previous local days each run recounts.
DEFAULT_DAYS = 3
#: Conversations diffed against their facts per transaction.
FACTS_BATCH = 5_000

#: The run's record names at most this many drifted tenants (an operator's lead, bounded).
MAX_TENANTS_LISTED = 100


class ReconcileFailed(Exception):
    """Some tenants could not be reconciled (the others were): the job retries."""


class TenantResult(NamedTuple):
    days_checked: int
    days_skipped: int
    corrections: Counter


def zone_name(tz: dt.tzinfo) -> str:
    return getattr(tz, "key", None) or "UTC"


def reconcile_all(
    *,
    days: int = DEFAULT_DAYS,
    now: dt.datetime | None = None,
    on_tenant_done: Callable[[Sequence[uuid.UUID]], None] | None = None,
) -> dict[str, Any]:
    """Reconcile every active tenant; record and return the run's figures.

    A tenant whose reconcile fails (a statement timeout on a huge tenant) is logged and
    named in the run's record, and the others and the purge go on: one tenant failing
    every night must not leave every tenant after it uncorrected and the processed keys
    piling up. The run then fails (:class:`ReconcileFailed`), so the job retries.
    """
    with session_scope() as session:
        run = AnalyticsReconcileRun(status="running")
        session.add(run)
        session.flush()
        run_id = run.id
        tenant_ids = list(session.scalars(select(Tenant.id).where(Tenant.status == "active")))
    tally = _Tally()
    try:
        # NOTE: first, batch after batch, each its own transaction: a day may count far
        # more events than one batch, and a run the time limit ends among its tenants
        # (every retry starting over) must not leave the keys piling up for good.
        while True:
            with session_scope() as session:
                purged = purge_counted(session, limit=PURGE_BATCH)
            tally.purged += purged
            if purged < PURGE_BATCH:
                break
        for tenant_id in tenant_ids:
            try:
                with session_scope() as session:
                    result = reconcile_tenant(session, tenant_id, days=days, now=now)
            except Exception as exc:
                log.exception("analytics reconcile of tenant %s failed", tenant_id)
                tally.fail(tenant_id, exc)
            else:
                tally.add(tenant_id, result)
            if on_tenant_done is not None:
                on_tenant_done([tenant_id])  # events the lock held back get counted now
    except BaseException as exc:
        # NOTE: BaseException: dramatiq ends a job past its time limit, or at shutdown,
        # with one (an Interrupt); the run's record must not stay "running" for good.
        _finish(run_id, "failed", len(tenant_ids), tally, repr(exc))
        raise
    if tally.failed:
        error = f"{tally.failed} tenant(s) failed"
        _finish(run_id, "failed", len(tenant_ids), tally, error)
        raise ReconcileFailed(error)
    return _finish(run_id, "succeeded", len(tenant_ids), tally, None)


@dataclass
class _Tally:
    """A run's figures so far, summed over its tenants."""

    checked: int = 0
    skipped: int = 0
    purged: int = 0
    corrections: Counter = field(default_factory=Counter)
    by_tenant: dict[str, dict[str, int]] = field(default_factory=dict)
    failed: int = 0
    failed_tenants: dict[str, str] = field(default_factory=dict)

    def add(self, tenant_id: uuid.UUID, result: TenantResult) -> None:
        self.checked += result.days_checked
        self.skipped += result.days_skipped
        self.corrections.update(result.corrections)
        fixed = {kind: n for kind, n in result.corrections.items() if n}
        if fixed and len(self.by_tenant) < MAX_TENANTS_LISTED:
            self.by_tenant[str(tenant_id)] = fixed

    def fail(self, tenant_id: uuid.UUID, exc: Exception) -> None:
        self.failed += 1
        if len(self.failed_tenants) < MAX_TENANTS_LISTED:
            self.failed_tenants[str(tenant_id)] = repr(exc)[:500]


def _finish(run_id, status: str, tenants: int, tally: _Tally, error: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {
        "corrections": dict(tally.corrections),
        "tenants_corrected": tally.by_tenant,
        "tenants_failed": tally.failed_tenants,
        "purged_event_keys": tally.purged,
    }
    if error:
        details["error"] = error[:2000]
    figures = {
        "status": status,
        "tenants": tenants,
        "days_checked": tally.checked,
        "days_skipped": tally.skipped,
        "corrections": sum(tally.corrections.values()),
    }
    with session_scope() as session:
        session.execute(
            update(AnalyticsReconcileRun)
            .where(AnalyticsReconcileRun.id == run_id)
            .values(**figures, details=details, finished_at=func.clock_timestamp())
        )
    return {"id": str(run_id), **figures, "details": details}


def reconcile_tenant(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    days: int = DEFAULT_DAYS,
    now: dt.datetime | None = None,
    include_today: bool = False,
) -> TenantResult:
    """Reconcile one tenant with ``session`` (see the module docstring): the facts are
    diffed in transactions of their own, committed; the gauges and days in the last one,
    which the caller commits.

    ``include_today`` also recounts today (a backfill: rollups of rows that predate
    them); it is safe for the same reason as the past days, checked the same way.
    """
    fixed: Counter = Counter()
    fixed["conversation_facts"] = _conversation_facts(session, tenant_id)
    session.execute(XACT_LOCK, lock_key(tenant_id))
    tz = tenant_zone(session, tenant_id)
    fixed["conversation_counts"] = _conversation_counts(session, tenant_id)
    last = today(tz, now) - dt.timedelta(days=0 if include_today else 1)
    span = [last - dt.timedelta(days=n) for n in range(days)]
    checked, recounted = _recount_days(session, tenant_id, tz, span)
    fixed.update(recounted)
    return TenantResult(checked, len(span) - checked, +fixed)


_CONVERSATIONS = """
    SELECT id, channel, status, assignee_id,
           (created_at AT TIME ZONE :tz)::date,
           extract(hour FROM created_at AT TIME ZONE :tz)::int, created_at
      FROM conversations WHERE tenant_id = :t {after}
     ORDER BY created_at DESC, id DESC LIMIT :limit
"""
_FIRST_CONVERSATIONS = text(_CONVERSATIONS.format(after=""))
_NEXT_CONVERSATIONS = text(_CONVERSATIONS.format(after="AND (created_at, id) < (:created_at, :id)"))
_FACTS = text(
    "SELECT conversation_id, channel, status, assignee_id, created_day, created_hour"
    " FROM analytics_conversation_facts WHERE tenant_id = :t AND conversation_id = ANY(:ids)"
)
_ORPHAN_FACTS = text(
    """
    SELECT f.conversation_id, f.channel, f.status, f.assignee_id, f.created_day, f.created_hour
      FROM analytics_conversation_facts f
     WHERE f.tenant_id = :t
       AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.id = f.conversation_id)
     LIMIT :limit
    """
)


def _conversation_facts(session: Session, tenant_id: uuid.UUID) -> int:
    """Diff every fact row against its conversation, a batch per transaction; facts moved.

    NOTE: each batch commits ``session``'s transaction (and the lock with it), so the
    actor counts in between; a conversation created meanwhile is left to its event.
    """
    moved = 0
    after: tuple[dt.datetime, uuid.UUID] | None = None
    while True:
        session.execute(XACT_LOCK, lock_key(tenant_id))
        tz = tenant_zone(session, tenant_id)
        params: dict[str, Any] = {"t": tenant_id, "tz": zone_name(tz), "limit": FACTS_BATCH}
        if after is None:
            rows = session.execute(_FIRST_CONVERSATIONS, params).all()
        else:
            rows = session.execute(
                _NEXT_CONVERSATIONS, params | {"created_at": after[0], "id": after[1]}
            ).all()
        ids = [row[0] for row in rows]
        facts = {
            row[0]: Fact(*row[1:]) for row in session.execute(_FACTS, {"t": tenant_id, "ids": ids})
        }
        source = {}
        for cid, *fields, _created_at in rows:
            fact = Fact(*fields)
            if (old := facts.get(cid)) is not None:
                # As the rollup does: a conversation keeps the day and hour it was first
                # counted in (a timezone change since is no drift to correct).
                fact = fact._replace(created_day=old.created_day, created_hour=old.created_hour)
            source[cid] = fact
        moved += _apply(session, tenant_id, facts, source)
        session.commit()
        if len(rows) < FACTS_BATCH:
            break
        after = (rows[-1][-1], rows[-1][0])
    # The facts of conversations deleted since they were counted.
    while True:
        session.execute(XACT_LOCK, lock_key(tenant_id))
        orphans = {
            row[0]: Fact(*row[1:])
            for row in session.execute(_ORPHAN_FACTS, {"t": tenant_id, "limit": FACTS_BATCH})
        }
        moved += _apply(session, tenant_id, orphans, {})
        session.commit()
        if len(orphans) < FACTS_BATCH:
            return moved


def _apply(
    session: Session,
    tenant_id: uuid.UUID,
    facts: dict[uuid.UUID, Fact],
    source: dict[uuid.UUID, Fact],
) -> int:
    if not facts and not source:
        return 0
    deltas = Deltas()
    moved = apply_fact_changes(session, tenant_id, facts, source, deltas)
    deltas.write(session, tenant_id)
    return moved


_ROLLUP_COUNTS = text(
    "SELECT channel, assignee_key, status, count FROM analytics_conversation_counts"
    " WHERE tenant_id = :t"
)
_FACT_COUNTS = text(
    "SELECT channel, coalesce(assignee_id, :nobody), status, count(*)"
    " FROM analytics_conversation_facts WHERE tenant_id = :t GROUP BY 1, 2, 3"
)


def _conversation_counts(session: Session, tenant_id: uuid.UUID) -> int:
    """Set the gauges to the count of the fact rows (rows fixed); the lock is held.

    NOTE: the actor moves a conversation's fact and its gauges in one transaction under
    the same lock, and the facts were just diffed against the conversations, so the
    facts' count is what the gauges must say (counted in the database, not in memory).
    """
    truth = {
        tuple(r[:3]): int(r[3])
        for r in session.execute(_FACT_COUNTS, {"t": tenant_id, "nobody": NOBODY})
    }
    have = {tuple(r[:3]): int(r[3]) for r in session.execute(_ROLLUP_COUNTS, {"t": tenant_id})}
    wrong = {
        key: {"count": truth.get(key, 0)}
        for key in truth.keys() | have.keys()
        if truth.get(key, 0) != have.get(key, 0)
    }
    if wrong:
        counters.upsert(session, "counts", tenant_id, wrong, mode="set")
    return len(wrong)


_UNSETTLED = text(
    """
    SELECT least(
      (SELECT min(occurred_at) FROM analytics_events
        WHERE tenant_id = :t AND counted_at IS NULL),
      (SELECT min(occurred_at) FROM outbox_events
        WHERE tenant_id = :t AND status = 'pending' AND type = ANY(:types))
    )
    """
)


def _settled_until(session: Session, tenant_id: uuid.UUID) -> dt.datetime | None:
    """The oldest moment an event of the tenant still waits for; None when none waits."""
    return session.scalar(_UNSETTLED, {"t": tenant_id, "types": sorted(COUNTED)})


#: A recount counted the source rows of the events a dispatch gave up on (``failed``: not
#: waiting, so their days were settled). Their processed keys are recorded with the
#: recount, so a dead letter revived later adds nothing to a day already recounted.
_RECOUNTED_FAILED = text(
    """
    INSERT INTO analytics_events (event_id, tenant_id, type, data, occurred_at, counted_at)
    SELECT id, tenant_id, type, '{}'::jsonb, occurred_at, clock_timestamp()
      FROM outbox_events
     WHERE tenant_id = :t AND status = 'failed' AND type = ANY(:types)
       AND occurred_at >= :since AND occurred_at < :until
    ON CONFLICT (event_id) DO NOTHING
    """
)


def _day_end(day: dt.date, tz) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=tz)


_LOCAL = "(created_at AT TIME ZONE :tz)"
_IN_RANGE = "tenant_id = :t AND created_at >= :since AND created_at < :until"
_SOURCE_DAYS = {
    # table -> the statement counting it per (day, channel or hour), and its counter columns
    "daily": text(
        f"""
        SELECT d, channel, sum(conversations), sum(contacts), sum(inbound), sum(outbound) FROM (
          SELECT {_LOCAL}::date AS d, channel, count(*) AS conversations, 0 AS contacts,
                 0 AS inbound, 0 AS outbound
            FROM conversations WHERE {_IN_RANGE} GROUP BY 1, 2
          UNION ALL
          SELECT {_LOCAL}::date, channel, 0, count(*), 0, 0
            FROM contacts WHERE {_IN_RANGE} GROUP BY 1, 2
          UNION ALL
          SELECT {_LOCAL}::date, channel, 0, 0, count(*) FILTER (WHERE direction = 'inbound'),
                 count(*) FILTER (WHERE direction <> 'inbound')
            FROM messages WHERE {_IN_RANGE} GROUP BY 1, 2
        ) counted GROUP BY 1, 2
        """  # noqa: S608 (constant fragments)
    ),
    "hourly": text(
        f"""
        SELECT d, h, sum(conversations), sum(inbound), sum(outbound) FROM (
          SELECT {_LOCAL}::date AS d, extract(hour FROM {_LOCAL})::int AS h,
                 count(*) AS conversations, 0 AS inbound, 0 AS outbound
            FROM conversations WHERE {_IN_RANGE} GROUP BY 1, 2
          UNION ALL
          SELECT {_LOCAL}::date, extract(hour FROM {_LOCAL})::int, 0,
                 count(*) FILTER (WHERE direction = 'inbound'),
                 count(*) FILTER (WHERE direction <> 'inbound')
            FROM messages WHERE {_IN_RANGE} GROUP BY 1, 2
        ) counted GROUP BY 1, 2
        """  # noqa: S608 (constant fragments)
    ),
    # CSAT: a survey counts on its sending day, a rating on its rating day (as the events do).
    "csat": text(
        """
        SELECT d, agent_key, sum(surveys), sum(rated), sum(rating_sum), sum(r1), sum(r2),
               sum(r3), sum(r4), sum(r5) FROM (
          SELECT (sent_at AT TIME ZONE :tz)::date AS d, coalesce(agent_id, :nobody) AS agent_key,
                 count(*) AS surveys, 0 AS rated, 0 AS rating_sum, 0 AS r1, 0 AS r2, 0 AS r3,
                 0 AS r4, 0 AS r5
            FROM csat_surveys
           WHERE tenant_id = :t AND sent_at >= :since AND sent_at < :until GROUP BY 1, 2
          UNION ALL
          SELECT (rated_at AT TIME ZONE :tz)::date, coalesce(agent_id, :nobody), 0, count(*),
                 sum(rating), count(*) FILTER (WHERE rating = 1),
                 count(*) FILTER (WHERE rating = 2), count(*) FILTER (WHERE rating = 3),
                 count(*) FILTER (WHERE rating = 4), count(*) FILTER (WHERE rating = 5)
            FROM csat_surveys
           WHERE tenant_id = :t AND rated_at >= :since AND rated_at < :until GROUP BY 1, 2
        ) counted GROUP BY 1, 2
        """
    ),
}
_ROLLUP_DAYS = {
    "daily": text(
        "SELECT day, channel, conversations, contacts, inbound_messages, outbound_messages"
        " FROM analytics_daily WHERE tenant_id = :t AND day BETWEEN :first AND :last"
    ),
    "hourly": text(
        "SELECT day, hour, conversations, inbound_messages, outbound_messages"
        " FROM analytics_hourly WHERE tenant_id = :t AND day BETWEEN :first AND :last"
    ),
    "csat": text(
        "SELECT day, agent_key, surveys, rated, rating_sum, rating_1, rating_2, rating_3,"
        " rating_4, rating_5"
        " FROM analytics_csat_daily WHERE tenant_id = :t AND day BETWEEN :first AND :last"
    ),
}


def _recount_days(
    session: Session, tenant_id: uuid.UUID, tz, span: list[dt.date]
) -> tuple[int, Counter]:
    """Set the daily, hourly and csat rows of the settled days of ``span`` to the source's counts;
    (days recounted, rows fixed per table).

    NOTE: the settled check runs after the counting: an event committed in between is
    either still waiting then (its day is skipped) or was already in the count.
    """
    first, last = min(span), max(span)
    params = {
        "t": tenant_id,
        "tz": zone_name(tz),
        "since": dt.datetime.combine(first, dt.time(), tzinfo=tz),
        "until": _day_end(last, tz),
        "first": first,
        "last": last,
        "nobody": NOBODY,
    }
    counted = {}
    for name in _SOURCE_DAYS:
        truth = {
            tuple(r[:2]): tuple(int(v) for v in r[2:])
            for r in session.execute(_SOURCE_DAYS[name], params)
        }
        have = {
            tuple(r[:2]): tuple(int(v) for v in r[2:])
            for r in session.execute(_ROLLUP_DAYS[name], params)
        }
        counted[name] = (truth, have)
    settled_until = _settled_until(session, tenant_id)
    settled = {d for d in span if settled_until is None or _day_end(d, tz) <= settled_until}
    fixed: Counter = Counter()
    for name, (truth, have) in counted.items():
        columns = counters.SHAPES[name][1]
        zero = (0,) * len(columns)
        wrong = {
            key: dict(zip(columns, truth.get(key, zero), strict=True))
            for key in truth.keys() | have.keys()
            if key[0] in settled and truth.get(key, zero) != have.get(key, zero)
        }
        if wrong:
            counters.upsert(session, name, tenant_id, wrong, mode="set")
        fixed[f"{name}_rows"] = len(wrong)
    if settled:
        # NOTE: the settled days run from the span's first; an event failed on one of them
        # was in the count just set (its rows committed with it, before it failed).
        session.execute(
            _RECOUNTED_FAILED,
            {
                "t": tenant_id,
                "types": sorted(COUNTED),
                "since": params["since"],
                "until": _day_end(max(settled), tz),
            },
        )
    return len(settled), fixed


def backfill(days: int) -> list[dict[str, Any]]:
    """Count every active tenant's last ``days`` days, today included, into the rollups.

    For rows that predate the rollups (the deployment of 0011_analytics, a restored
    dump). Same locking and settled-day rule as the nightly run.
    """
    with session_scope() as session:
        tenant_ids = list(session.scalars(select(Tenant.id).where(Tenant.status == "active")))
    results = []
    for tenant_id in tenant_ids:
        with session_scope() as session:
            result = reconcile_tenant(session, tenant_id, days=days, include_today=True)
        results.append({"tenant_id": str(tenant_id), **result._asdict()})
    return results


def _days(raw: str) -> int:
    """``--days``: a whole number of days, at least one (none to count is a typo, not a run)."""
    import argparse

    try:
        days = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {raw!r}") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"at least 1 day, not {days}")
    return days


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Backfill the analytics rollups.")
    parser.add_argument(
        "--days", type=_days, default=400, help="local days back, today included (at least 1)"
    )
    args = parser.parse_args(argv)
    for result in backfill(args.days):
        print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
