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

A suspended tenant's rows are never picked (API.md: its data is kept and scheduler
jobs skip it); they age out after it is reactivated. Rows of no tenant (platform
dead letters) are.

The age is the moment a row became final where the table records it
(``finished_at``), else when it arrived, and the cutoff is taken from the
database clock: ``now() - :days days``.
"""

from __future__ import annotations

from collections.abc import Sequence
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


#: Rows of a tenant that is not active (suspended) stay; rows of no tenant do not.
_TENANT_NOT_SUSPENDED = (
    "NOT EXISTS (SELECT 1 FROM tenants x WHERE x.id = t.tenant_id AND x.status <> 'active')"
)


def kind(table: str, *, final: str, age: str, children: Sequence[tuple[str, str]] = ()) -> Kind:
    """Build the :class:`Kind` of ``table``: rows matching ``final`` (SQL over alias ``t``)
    whose ``age`` column is past the cutoff, oldest first, with the rows of each
    ``(child table, foreign key column)`` that reference them.

    NOTE: the arguments are this module's constants, never input: the SQL is built once.
    """
    ids = "((SELECT ids FROM batch)::uuid[])"
    deletes = [
        f"child_{n} AS (DELETE FROM {child} WHERE {column} = ANY {ids} RETURNING 1)"  # noqa: S608
        for n, (child, column) in enumerate(children)
    ]
    deletes.append(f"deleted AS (DELETE FROM {table} WHERE id = ANY {ids} RETURNING 1)")  # noqa: S608
    counts = ["(SELECT count(*) FROM deleted)"]
    counts += [f"(SELECT count(*) FROM child_{n})" for n in range(len(children))]  # noqa: S608
    statement = f"""
        WITH doomed AS MATERIALIZED (
            SELECT t.id FROM {table} t
             WHERE ({final}) AND {_TENANT_NOT_SUSPENDED}
               AND t.{age} < now() - make_interval(days => :days)
             ORDER BY t.{age}
             LIMIT :limit
               FOR UPDATE SKIP LOCKED
        ), batch AS (
            SELECT array_agg(id) AS ids FROM doomed
        ), {", ".join(deletes)}
        SELECT {", ".join(counts)}
    """  # noqa: S608 (this module's constants)
    return Kind(table, (table, *(child for child, _column in children)), text(statement))


#: NOTE: a delivery that a resend still points to (``resend_of``) waits until the
#: resend itself is purged: the foreign key's SET NULL would turn two resends of
#: one event into two "originals" and break the fan-out's unique index.
WEBHOOK_DELIVERIES = kind(
    "webhook_deliveries",
    final="t.status IN ('succeeded', 'failed', 'disabled') AND NOT EXISTS"
    " (SELECT 1 FROM webhook_deliveries r WHERE r.resend_of = t.id)",
    age="finished_at",
    children=[("webhook_attempts", "delivery_id")],
)

#: NOTE: the runs' shared contexts (migration 0026) too: named here, not left to the
#: foreign key's cascade, so the purge's counts include them.
AUTOMATION_EVENTS = kind(
    "automation_events",
    final="t.status IN ('done', 'failed')",
    age="finished_at",
    children=[
        ("automation_runs", "automation_event_id"),
        ("automation_run_contexts", "automation_event_id"),
    ],
)

#: NOTE: ``dropped`` rows never had a ``processed_at``; the arrival is every row's age.
#: An email's files are read from its stored payload until their bytes are stored
#: (``media_files.provider_media_id`` ``email:<event id>:<n>``, see shared.channels.media),
#: so an email with a file not fetched yet (prefetch off, or failed) waits for it: purged,
#: the file was lost while its message still listed it. Equality on the id, not a LIKE,
#: so the owed files (a partial index) are hashed once per batch.
INBOUND_EVENTS = kind(
    "inbound_events",
    final="t.status IN ('processed', 'failed', 'dropped') AND NOT EXISTS"
    " (SELECT 1 FROM media_files m WHERE m.source = 'inbound' AND m.storage_key IS NULL"
    " AND m.channel = 'email' AND m.tenant_id = t.tenant_id"
    " AND split_part(m.provider_media_id, ':', 2) = t.id::text)",
    age="received_at",
)

#: NOTE: an automation event still kept reads its outbox event (dry runs replay it, the
#: evaluator reads its causation), so the outbox row waits for it. Deliveries carry
#: their own payload and need nothing from here.
OUTBOX_EVENTS = kind(
    "outbox_events",
    final="t.status IN ('processed', 'failed') AND NOT EXISTS"
    " (SELECT 1 FROM automation_events a WHERE a.outbox_event_id = t.id)",
    age="occurred_at",
)

#: Dead letters, requeued or not: past the retention nobody will act on them.
DEAD_LETTERS = kind("dead_letters", final="true", age="failed_at")

#: Every kind, in the order a purge run goes through them.
#: Automation events go before the outbox events they would otherwise keep.
KINDS: tuple[Kind, ...] = (
    WEBHOOK_DELIVERIES,
    AUTOMATION_EVENTS,
    OUTBOX_EVENTS,
    INBOUND_EVENTS,
    DEAD_LETTERS,
)
