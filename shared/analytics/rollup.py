"""Count queued events into the rollups, once each, one tenant at a time.

``drain`` is the ``roll_up`` actor's work. Each batch's transaction holds the
tenant's advisory lock while it takes waiting ``analytics_events`` rows (``UPDATE ...
SET counted_at ... RETURNING``: a row is counted by the transaction that marks it, and
the marked row keeps the event id, so an event queued or applied twice counts
once) and adds their deltas. One drainer per tenant means no two batches
fight over a tenant's hot rows; a message that finds the lock taken leaves its
rows to the holder, which looks again after unlocking (:func:`drain`).

Conversations are counted by state, not by event: each conversation event makes
the rollup re-read the conversation's row and move its count from what the fact
row says to what the row says now (:func:`refresh_conversations`). Events arriving
late, twice or out of order cannot skew a gauge, and the reconcile uses the very
same diff.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
import zlib
from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from shared.analytics.counters import Deltas
from shared.analytics.intake import CONVERSATION_EVENTS
from shared.analytics.local_time import local_day_hour, parse_instant, tenant_zone
from shared.db import fetch_rows, session_scope
from shared.models.analytics import NOBODY

#: First half of the two-key advisory lock of a tenant's rollups ('an' for analytics).
LOCK_SPACE = 0x616E


def lock_key(tenant_id: uuid.UUID) -> dict[str, int]:
    """The advisory lock keys of one tenant's rollups (a collision only serializes two)."""
    key = zlib.crc32(tenant_id.bytes) - 2**31
    return {"space": LOCK_SPACE, "key": key}


_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:space, :key)")
XACT_LOCK = text("SELECT pg_advisory_xact_lock(:space, :key)")

_TAKE = text(
    """
    UPDATE analytics_events SET counted_at = clock_timestamp()
     WHERE event_id IN (SELECT event_id FROM analytics_events
                         WHERE tenant_id = :tenant_id AND counted_at IS NULL LIMIT :limit)
    RETURNING type, data, occurred_at
    """
)
_HAS_PENDING = text(
    "SELECT EXISTS (SELECT 1 FROM analytics_events"
    " WHERE tenant_id = :tenant_id AND counted_at IS NULL)"
)


class Fact(NamedTuple):
    channel: str
    status: str
    assignee_id: uuid.UUID | None
    created_day: dt.date
    created_hour: int


class DrainResult(NamedTuple):
    counted: int
    #: True when the time budget ran out with rows left: send the job again.
    unfinished: bool
    #: True when another drainer held the tenant's lock: it looks again once done.
    locked_out: bool = False


def drain(
    tenant_id: uuid.UUID,
    *,
    batch_size: int = 1000,
    budget_seconds: float = 20.0,
    recheck: bool = True,
):
    """Count every queued event of the tenant; see the module docstring for the locking.

    ``recheck=False`` stops after the first short batch without looking again: the
    caller does (:func:`has_pending`, after unlocking, as the ``roll_up`` actor does once
    it has cleared its waiting flag).

    NOTE: each batch takes the tenant's lock in its own transaction (a transaction-level
    lock, released by its commit). A session-level lock held across batches broke
    through PgBouncer in transaction mode: its unlock could land on another server
    session, and the lock stayed held on the first one for good.
    """
    deadline = time.monotonic() + budget_seconds
    counted = 0
    keys = lock_key(tenant_id)
    while True:
        with session_scope() as session:
            if not fetch_rows(session.connection(), _TRY_LOCK, keys)[0][0]:
                # the holder re-checks after unlocking
                return DrainResult(counted, False, locked_out=True)
            taken = apply_batch(session, tenant_id, batch_size)
        counted += taken
        if taken == batch_size:
            if time.monotonic() > deadline:
                return DrainResult(counted, True)
            continue
        # NOTE: rows committed while we held the lock had their message refused; look again.
        if not recheck or not has_pending(tenant_id):
            return DrainResult(counted, False)


def has_pending(tenant_id: uuid.UUID) -> bool:
    """Whether any queued event of the tenant waits to be counted (its own transaction)."""
    with session_scope() as session:
        return bool(fetch_rows(session.connection(), _HAS_PENDING, {"tenant_id": tenant_id})[0][0])


def apply_batch(session: Session, tenant_id: uuid.UUID, limit: int) -> int:
    """Take up to ``limit`` queued events of the tenant and add what they count."""
    rows = session.execute(_TAKE, {"tenant_id": tenant_id, "limit": limit}).all()
    if not rows:
        return 0
    tz = tenant_zone(session, tenant_id)
    deltas = Deltas()
    conversations: set[uuid.UUID] = set()
    for event_type, data, occurred_at in rows:
        if event_type in CONVERSATION_EVENTS:
            if data.get("conversation_id"):
                conversations.add(uuid.UUID(data["conversation_id"]))
        else:
            count_event(deltas, event_type, data, occurred_at, tz)
    if conversations:
        refresh_conversations(session, tenant_id, tz, conversations, deltas)
    deltas.write(session, tenant_id)
    return len(rows)


def count_event(
    deltas: Deltas, event_type: str, data: dict[str, Any], occurred_at: dt.datetime, tz
) -> None:
    """The deltas of one message, contact or CSAT event."""
    at = parse_instant(data.get("created_at"), occurred_at)
    day, hour = local_day_hour(at, tz)
    if event_type == "message.created":
        column = "inbound_messages" if data.get("direction") == "inbound" else "outbound_messages"
        deltas.add("daily", (day, data.get("channel") or "unknown"), column)
        deltas.add("hourly", (day, hour), column)
    elif event_type == "contact.created":
        deltas.add("daily", (day, data.get("channel") or "unknown"), "contacts")
    elif event_type in ("csat.survey_sent", "csat.submitted"):
        agent = _uuid(data.get("agent_id")) or NOBODY
        if event_type == "csat.survey_sent":
            deltas.add("csat", (day, agent), "surveys")
            return
        rating = data.get("rating")
        if isinstance(rating, int) and 1 <= rating <= 5:
            deltas.add("csat", (day, agent), "rated")
            deltas.add("csat", (day, agent), "rating_sum", rating)
            deltas.add("csat", (day, agent), f"rating_{rating}")


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


_FACTS = text(
    """
    SELECT conversation_id, channel, status, assignee_id, created_day, created_hour
      FROM analytics_conversation_facts
     WHERE tenant_id = :tenant_id AND conversation_id = ANY(:ids)
    """
)
_SOURCE = text(
    """
    SELECT id, channel, status, assignee_id, created_at
      FROM conversations
     WHERE tenant_id = :tenant_id AND id = ANY(:ids)
    """
)
_SAVE_FACTS = text(
    """
    INSERT INTO analytics_conversation_facts
        (conversation_id, tenant_id, channel, status, assignee_id, created_day, created_hour)
    VALUES (:id, :tenant_id, :channel, :status, :assignee_id, :created_day, :created_hour)
    ON CONFLICT (conversation_id) DO UPDATE
       SET channel = EXCLUDED.channel, status = EXCLUDED.status,
           assignee_id = EXCLUDED.assignee_id
    """
)
_DROP_FACTS = text(
    "DELETE FROM analytics_conversation_facts WHERE tenant_id = :tenant_id AND "
    "conversation_id IN :ids"
).bindparams(bindparam("ids", expanding=True))


def refresh_conversations(
    session: Session,
    tenant_id: uuid.UUID,
    tz,
    ids: Iterable[uuid.UUID],
    deltas: Deltas,
) -> int:
    """Move each conversation's counts from its fact row to its current row; how many moved."""
    ids = sorted(set(ids))
    params = {"tenant_id": tenant_id, "ids": ids}
    # PERF: both reads on the driver's cursor (db.fetch_rows), once per drained batch.
    connection = session.connection()
    facts = {row[0]: Fact(*row[1:]) for row in fetch_rows(connection, _FACTS, params)}
    source = {}
    for cid, channel, status, assignee_id, created_at in fetch_rows(connection, _SOURCE, params):
        old = facts.get(cid)
        day, hour = (old.created_day, old.created_hour) if old else local_day_hour(created_at, tz)
        source[cid] = Fact(channel, status, assignee_id, day, hour)
    return apply_fact_changes(session, tenant_id, facts, source, deltas)


def apply_fact_changes(
    session: Session,
    tenant_id: uuid.UUID,
    facts: dict[uuid.UUID, Fact],
    source: dict[uuid.UUID, Fact],
    deltas: Deltas,
) -> int:
    """Deltas and fact rows for every conversation whose counted state differs from its row."""
    saves: list[dict[str, Any]] = []
    drops: list[uuid.UUID] = []
    for cid in sorted(facts.keys() | source.keys()):
        old, new = facts.get(cid), source.get(cid)
        if old == new:
            continue
        if old is not None:
            deltas.add("counts", (old.channel, old.assignee_id or NOBODY, old.status), "count", -1)
        if new is not None:
            deltas.add("counts", (new.channel, new.assignee_id or NOBODY, new.status), "count")
            saves.append({"id": cid, "tenant_id": tenant_id, **new._asdict()})
        if old is None and new is not None:
            deltas.add("daily", (new.created_day, new.channel), "conversations")
            deltas.add("hourly", (new.created_day, new.created_hour), "conversations")
        elif old is not None and new is None:
            deltas.add("daily", (old.created_day, old.channel), "conversations", -1)
            deltas.add("hourly", (old.created_day, old.created_hour), "conversations", -1)
            drops.append(cid)
    if saves:
        session.execute(_SAVE_FACTS, saves)
    if drops:
        session.execute(_DROP_FACTS, {"tenant_id": tenant_id, "ids": drops})
    return len(saves) + len(drops)
