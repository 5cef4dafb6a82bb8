"""The transactional outbox: :func:`emit` records an event in the caller's transaction.

After the transaction commits, the ids of the events it wrote are handed to the
*publisher* that the running process installed with :func:`set_publisher` (the
API, a worker and the scheduler each install one that enqueues
``dispatch_event``). If the process dies between commit and publish, or the
broker is down, the event stays ``pending`` and the scheduler's sweeper
re-enqueues it: nothing committed is lost, and ``dispatch_event`` is idempotent
so a double enqueue is harmless.

Example::

    with session_scope() as session:
        agent = create_agent(session, ...)
        emit(session, "agent.created", {"agent": ...}, tenant_id=..., actor=Actor.user(uid))
    # committed; dispatch_event(<id>) is now on its way
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Interval, Table, bindparam, func, insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from shared import bulk_insert, db
from shared.config import get_settings
from shared.event_types import is_known
from shared.models import OutboxEvent

log = logging.getLogger(__name__)

#: ``session.info`` key holding the ids emitted in the current transaction.
_PENDING_KEY = "omnistream.outbox_ids"


class PendingEvent(NamedTuple):
    """What a publisher needs to enqueue one committed event."""

    id: uuid.UUID
    tenant_id: uuid.UUID


Publisher = Callable[[Sequence[PendingEvent]], None]
_publisher: Publisher | None = None


@dataclass(frozen=True, slots=True)
class Causation:
    """The automation rules whose actions led to an event, and how deep that chain is.

    An automation action's events carry the chain of the event it acted on plus its
    own rule, so the evaluator can refuse a rule on a chain it started and stop
    chains past a depth bound (loops between rules end).
    """

    rule_ids: tuple[str, ...] = ()
    depth: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"rule_ids": list(self.rule_ids), "depth": self.depth}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Causation:
        if not data:
            return cls()
        return cls(tuple(str(r) for r in data.get("rule_ids", ())), int(data.get("depth", 0)))

    def extended(self, rule_id: uuid.UUID) -> Causation:
        """The chain of an event caused by ``rule_id`` acting on an event of this chain."""
        return Causation((*self.rule_ids, str(rule_id)), self.depth + 1)


@dataclass(frozen=True, slots=True)
class Impersonator:
    """The super admin acting through an impersonation token (its ``imp`` claim)."""

    id: uuid.UUID
    email: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": str(self.id), "email": self.email}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Impersonator | None:
        return cls(uuid.UUID(data["id"]), data["email"]) if data else None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who caused an event: ``user``, ``api_key``, ``contact``, ``system``, ``automation``...

    ``causation`` is set for automation actions: every event they emit inherits it.
    ``impersonated_by`` is set when a super admin acts as this user: every event and
    activity row written with this actor names them (``actor.impersonated_by``).
    """

    type: str
    id: uuid.UUID | None = None
    causation: Causation | None = None
    impersonated_by: Impersonator | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls("system", None)

    def as_dict(self) -> dict[str, Any]:
        """The ``actor`` of envelopes; ``impersonated_by`` only when a super admin acted."""
        found: dict[str, Any] = {"type": self.type, "id": str(self.id) if self.id else None}
        if self.impersonated_by is not None:
            found["impersonated_by"] = self.impersonated_by.as_dict()
        return found

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Actor:
        """The inverse of :meth:`as_dict` (a job that acts later for a request's caller)."""
        return cls(
            data["type"],
            uuid.UUID(data["id"]) if data.get("id") else None,
            impersonated_by=Impersonator.from_dict(data.get("impersonated_by")),
        )


def _impersonated_by(actor: Actor) -> dict[str, Any] | None:
    return actor.impersonated_by.as_dict() if actor.impersonated_by else None


def set_publisher(publisher: Publisher | None) -> None:
    """Install the after-commit publisher of this process (``None`` disables the fast path)."""
    global _publisher
    _publisher = publisher


def emit(
    session: Session,
    event_type: str,
    data: dict[str, Any],
    *,
    tenant_id: uuid.UUID,
    actor: Actor,
    causation_id: uuid.UUID | None = None,
    alongside: tuple[Table, dict[str, Any]] | None = None,
) -> uuid.UUID:
    """Write an outbox row in the session's transaction and return the event id.

    ``alongside`` is one more row ``(table, values)`` inserted by the same statement (the
    change's activity row): values for every column it needs, its id included.
    """
    if not is_known(event_type):
        raise ValueError(f"unknown event type {event_type!r}; add it to shared.event_types")
    event_id = uuid.uuid4()
    sweep_after = dt.timedelta(seconds=get_settings().outbox_sweep_after_seconds)
    # NOTE: prefixed: SQLAlchemy would take a parameter named like a column of either
    # table as a value for that column.
    params = {
        "event_id": event_id,
        "event_tenant_id": tenant_id,
        "event_type": event_type,
        "event_actor_type": actor.type,
        "event_actor_id": actor.id,
        "event_data": data,
        "event_causation_id": causation_id,
        "event_causation": actor.causation.as_dict() if actor.causation else None,
        "event_impersonated_by": _impersonated_by(actor),
        "event_sweep_after": sweep_after,
    }
    table, columns = None, ()
    if alongside is not None:
        table, row = alongside
        columns = tuple(row)
        params.update((f"alongside_{name}", value) for name, value in row.items())
    # NOTE: "due" is computed by the database clock, the same one the sweeper reads.
    # PERF: on the driver's cursor (db.write_rows): SQLAlchemy's execution of the insert
    # cost more CPU than the round trip, on every write path. A write to a table a cache
    # watches still goes through SQLAlchemy (write_rows sees it).
    db.write_rows(session.connection(), _insert_event(table, columns), params)
    db.collected_until_commit(session, _PENDING_KEY, publish).append(
        PendingEvent(event_id, tenant_id)
    )
    return event_id


@functools.lru_cache(maxsize=32)
def _insert_event(table: Table | None, columns: tuple[str, ...]) -> Insert:
    """The outbox insert (its columns bound as ``event_<name>``), and with a ``table``, the
    insert of its row (``columns`` bound as ``alongside_<name>``) in a CTE.

    PERF: built once per shape, bound per call: emit() sits on every write path, and
    building the insert construct (and its cache key) per event cost more CPU than
    running it. Every audited change wrote its activity row and its event by two
    statements (two round trips); one is enough.
    """
    outbox = OutboxEvent.__table__
    values = {
        name: bindparam(f"event_{name}", type_=outbox.c[name].type) for name in _EVENT_COLUMNS
    }
    values["next_sweep_at"] = func.now() + bindparam("event_sweep_after", type_=Interval)
    statement = insert(outbox).values(values)
    if table is None:
        return statement
    row = insert(table).values(
        {name: bindparam(f"alongside_{name}", type_=table.c[name].type) for name in columns}
    )
    return statement.add_cte(row.cte(f"alongside_{table.name}"))


#: The outbox columns :func:`emit` writes (the others keep their server defaults).
_EVENT_COLUMNS = (
    "id",
    "tenant_id",
    "type",
    "actor_type",
    "actor_id",
    "data",
    "causation_id",
    "causation",
    "impersonated_by",
)


def emit_many(
    session: Session,
    event_type: str,
    items: Sequence[tuple[uuid.UUID, dict[str, Any]]],
    *,
    actor: Actor,
) -> list[uuid.UUID]:
    """:func:`emit` for many ``(tenant_id, data)`` of one type, in one batched statement.

    PERF: a scheduler job recording hundreds of events (SLA breaches) pays one pipelined
    round trip instead of one per event.
    """
    return emit_each(session, event_type, [(tenant_id, data, actor) for tenant_id, data in items])


def emit_each(
    session: Session,
    event_type: str,
    items: Sequence[tuple[uuid.UUID, dict[str, Any], Actor]],
) -> list[uuid.UUID]:
    """:func:`emit_many` where each ``(tenant_id, data, actor)`` names its own actor (a
    campaign's conversations are each opened by their contact)."""
    if not is_known(event_type):
        raise ValueError(f"unknown event type {event_type!r}; add it to shared.event_types")
    if not items:
        return []
    rows = [
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant_id,
            "type": event_type,
            "actor_type": actor.type,
            "actor_id": actor.id,
            "data": data,
            "causation_id": None,
            "causation": actor.causation.as_dict() if actor.causation else None,
            "impersonated_by": _impersonated_by(actor),
        }
        for tenant_id, data, actor in items
    ]
    # PERF: one unnest statement (shared.bulk_insert), not an executemany of row inserts.
    bulk_insert.insert_many(
        session,
        OutboxEvent.__table__,
        rows,
        computed={"next_sweep_at": "now() + CAST(:sweep_after AS interval)"},
        params={"sweep_after": f"{get_settings().outbox_sweep_after_seconds} seconds"},
    )
    db.collected_until_commit(session, _PENDING_KEY, publish).extend(
        PendingEvent(row["id"], row["tenant_id"]) for row in rows
    )
    return [row["id"] for row in rows]


def publish_after_commit(session: Session, event_id: uuid.UUID, tenant_id: uuid.UUID) -> None:
    """Dispatch an event written earlier once the session commits (one made pending again)."""
    db.collected_until_commit(session, _PENDING_KEY, publish).append(
        PendingEvent(event_id, tenant_id)
    )


def publish(events: Sequence[PendingEvent]) -> None:
    """Hand committed events to the publisher; failures are logged, the sweeper retries."""
    if not events or _publisher is None:
        return
    try:
        _publisher(events)
    except Exception:
        # NOTE: the transaction is committed; failing the caller now would only lie to
        # it. The rows are pending and the sweeper re-enqueues them in a few seconds.
        log.warning(
            "outbox fast path failed for %d event(s); the sweeper will re-drive them",
            len(events),
            exc_info=True,
        )
