"""What the purge deletes: one :class:`Kind` per table family, each one bounded batch.

Every batch is one statement: a ``MATERIALIZED`` CTE picks at most ``:limit``
rows that are final and older than the cutoff, locked ``FOR UPDATE SKIP LOCKED``
(a row another transaction holds is left for a later run, never waited for),
then the rows that reference them are deleted explicitly (so they are counted)
before the rows themselves. Rows still in flight (pending or in-flight
deliveries, pending inbound payloads, pending or processing automation events)
never match: the state filter is re-checked on the locked row.

PERF: the deletes find their rows by ``id = ANY(<the batch's ids as one array>)``,
an index scan per id. Joined to the CTE instead, the planner hashes the batch
and scans the whole table: two sequential scans per batch.

The age is the moment a row became final where the table records it
(``finished_at``), else when it arrived, and the cutoff is taken from the
database clock: ``now() - :days days``.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause


class Kind(NamedTuple):
    """One family of rows: its batch statement and the tables whose counts it returns.

    ``tables[0]`` is the table the batch selects from: fewer than ``limit`` of its
    rows deleted means nothing old is left of this kind.
    """

    name: str
    tables: tuple[str, ...]
    statement: TextClause

    def purge_batch(self, session: Session, *, days: int, limit: int) -> dict[str, int]:
        """Delete one batch in ``session``'s transaction; return the rows deleted per table."""
        row = session.execute(self.statement, {"days": days, "limit": limit}).one()
        return dict(zip(self.tables, row, strict=True))


#: NOTE: a delivery that a resend still points to (``resend_of``) waits until the
#: resend itself is purged: the foreign key's SET NULL would turn two resends of
#: one event into two "originals" and break the fan-out's unique index.
WEBHOOK_DELIVERIES = Kind(
    "webhook_deliveries",
    ("webhook_deliveries", "webhook_attempts"),
    text(
        """
        WITH doomed AS MATERIALIZED (
            SELECT d.id FROM webhook_deliveries d
             WHERE d.status IN ('succeeded', 'failed', 'disabled')
               AND d.finished_at < now() - make_interval(days => :days)
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries r WHERE r.resend_of = d.id)
             ORDER BY d.finished_at
             LIMIT :limit
               FOR UPDATE SKIP LOCKED
        ), batch AS (
            SELECT array_agg(id) AS ids FROM doomed
        ), attempts AS (
            DELETE FROM webhook_attempts a
             WHERE a.delivery_id = ANY ((SELECT ids FROM batch)::uuid[]) RETURNING 1
        ), deliveries AS (
            DELETE FROM webhook_deliveries d
             WHERE d.id = ANY ((SELECT ids FROM batch)::uuid[]) RETURNING 1
        )
        SELECT (SELECT count(*) FROM deliveries), (SELECT count(*) FROM attempts)
        """
    ),
)

AUTOMATION_EVENTS = Kind(
    "automation_events",
    ("automation_events", "automation_runs"),
    text(
        """
        WITH doomed AS MATERIALIZED (
            SELECT e.id FROM automation_events e
             WHERE e.status IN ('done', 'failed')
               AND e.finished_at < now() - make_interval(days => :days)
             ORDER BY e.finished_at
             LIMIT :limit
               FOR UPDATE SKIP LOCKED
        ), batch AS (
            SELECT array_agg(id) AS ids FROM doomed
        ), runs AS (
            DELETE FROM automation_runs r
             WHERE r.automation_event_id = ANY ((SELECT ids FROM batch)::uuid[]) RETURNING 1
        ), events AS (
            DELETE FROM automation_events e
             WHERE e.id = ANY ((SELECT ids FROM batch)::uuid[]) RETURNING 1
        )
        SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM runs)
        """
    ),
)

#: NOTE: ``dropped`` rows never had a ``processed_at``; the arrival is every row's age.
INBOUND_EVENTS = Kind(
    "inbound_events",
    ("inbound_events",),
    text(
        """
        WITH doomed AS MATERIALIZED (
            SELECT i.id FROM inbound_events i
             WHERE i.status IN ('processed', 'failed', 'dropped')
               AND i.received_at < now() - make_interval(days => :days)
             ORDER BY i.received_at
             LIMIT :limit
               FOR UPDATE SKIP LOCKED
        ), deleted AS (
            DELETE FROM inbound_events i
             WHERE i.id = ANY ((SELECT array_agg(id) FROM doomed)::uuid[]) RETURNING 1
        )
        SELECT count(*) FROM deleted
        """
    ),
)

#: Dead letters, requeued or not: past the retention nobody will act on them.
DEAD_LETTERS = Kind(
    "dead_letters",
    ("dead_letters",),
    text(
        """
        WITH doomed AS MATERIALIZED (
            SELECT l.id FROM dead_letters l
             WHERE l.failed_at < now() - make_interval(days => :days)
             ORDER BY l.failed_at
             LIMIT :limit
               FOR UPDATE SKIP LOCKED
        ), deleted AS (
            DELETE FROM dead_letters l
             WHERE l.id = ANY ((SELECT array_agg(id) FROM doomed)::uuid[]) RETURNING 1
        )
        SELECT count(*) FROM deleted
        """
    ),
)

#: Every kind, in the order a purge run goes through them.
KINDS: tuple[Kind, ...] = (WEBHOOK_DELIVERIES, AUTOMATION_EVENTS, INBOUND_EVENTS, DEAD_LETTERS)
