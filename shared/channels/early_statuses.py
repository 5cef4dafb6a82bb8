"""Meta statuses that arrive before the send that got the message id has committed.

Meta can call back ``sent`` / ``delivered`` / ``read`` / ``failed`` for a wamid (or a
Messenger/Instagram mid) while ``send_outbound``'s transaction, which learnt that id
from Meta's answer, has not committed yet. Such a status is *parked* in
``early_statuses`` instead of being dropped, and applied when the send records the id.

Both sides take the same transaction-level advisory lock, keyed by tenant and provider
message id, before looking at the other side's rows:

- the status path (:func:`shared.channels.ingest.apply_status`) locks, looks for the
  message again, and parks the status only if it is still unknown;
- the send path (:func:`shared.channels.outbound.record_sent_many`) locks, sets the id,
  and applies whatever is parked (:func:`apply_parked_many`).

Under READ COMMITTED each statement after the lock sees what the other committed, so
either the status finds the message or the send finds the status: none is lost. Parked
statuses are applied in rank order (``sent``, ``delivered``, ``read``, then ``failed``,
which the delivery rule refuses once a message was delivered), through
:func:`shared.channels.statuses.apply_status`, so a repeat changes nothing. The wait is
bounded: :func:`sweep` applies any parked status whose message is known and drops those
older than ``EARLY_STATUS_TTL_SECONDS`` (a status of a message some other system sent).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, exists, func, literal_column, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.channels import statuses
from shared.channels.items import StatusReport
from shared.config import get_settings
from shared.models import Message
from shared.models.receipts import EarlyStatus

log = logging.getLogger(__name__)

#: Channels whose provider reports statuses by message id.
CHANNELS = frozenset({"whatsapp", "messenger", "instagram"})
#: Application order of parked statuses; ``failed`` last (see the module docstring).
ORDER = {**statuses.RANK, "failed": len(statuses.RANK)}

_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


def lock(session: Session, tenant_id: uuid.UUID, provider_message_id: str) -> None:
    """Serialize the status and send paths of one provider message id until commit."""
    session.execute(_LOCK, {"key": f"early_status:{tenant_id}:{provider_message_id}"})


_LOCK_MANY = text(
    """
    SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0)))
      FROM (SELECT k FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k) AS ordered
    """
)


def lock_many(session: Session, pairs: list[tuple[uuid.UUID, str]]) -> None:
    """:func:`lock` for many ``(tenant_id, provider_message_id)``, in one order (one round trip)."""
    if pairs:
        keys = sorted({f"early_status:{tenant_id}:{pid}" for tenant_id, pid in pairs})
        session.execute(_LOCK_MANY, {"keys": keys})


def park(session: Session, tenant_id: uuid.UUID, item: StatusReport) -> bool:
    """Keep a status of a still-unknown message; False when it was kept already (a retry)."""
    ttl = float(get_settings().early_status_ttl_seconds)
    inserted = session.scalar(
        insert(EarlyStatus)
        .values(
            tenant_id=tenant_id,
            provider_message_id=item.provider_message_id[:255],
            status=item.status,
            reported_at=item.at,
            error_code=(item.error_code or None) and item.error_code[:64],
            error_message=item.error_message,
            expires_at=func.now() + literal_column(f"interval '{ttl} seconds'"),
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "provider_message_id", "status"])
        .returning(EarlyStatus.id)
    )
    return inserted is not None


def apply_parked(session: Session, message: Message) -> int:
    """Apply (and forget) the statuses parked for ``message``'s provider id; how many changed it.

    ``message`` must be locked by the caller. The DELETE claims the rows: a concurrent
    sweeper run waits for it and then finds nothing, so each status is applied once.
    """
    if not message.provider_message_id:
        return 0
    parked = session.scalars(
        delete(EarlyStatus)
        .where(
            EarlyStatus.tenant_id == message.tenant_id,
            EarlyStatus.provider_message_id == message.provider_message_id,
        )
        .returning(EarlyStatus)
    ).all()
    return _apply(session, message, parked)


#: What is parked for a batch's ``(tenant_id, provider_message_id)``, claimed (deleted).
#: PERF: arrays, one statement text whatever the batch (see ``outbound._MARK_SENT``).
_CLAIM_PARKED = text(
    """
    DELETE FROM early_statuses e
     USING unnest(CAST(:tenants AS uuid[]), CAST(:ids AS text[])) AS k(tenant_id, pid)
     WHERE e.provider_message_id = ANY(CAST(:ids AS text[]))
       AND e.tenant_id = k.tenant_id AND e.provider_message_id = k.pid
    RETURNING e.tenant_id, e.provider_message_id, e.status, e.reported_at, e.error_code,
              e.error_message
    """
)


def apply_parked_many(session: Session, messages: Sequence[Any]) -> int:
    """:func:`apply_parked` for many locked messages (rows or ORM objects): one DELETE
    finds what is parked; only the messages that have some are loaded to apply it."""
    pairs = [(m.tenant_id, m.provider_message_id) for m in messages if m.provider_message_id]
    if not pairs:
        return 0
    parked = session.execute(
        _CLAIM_PARKED,
        {"tenants": [t for t, _ in pairs], "ids": [pid for _, pid in pairs]},
    ).all()
    if not parked:
        return 0
    by_id: dict[tuple[uuid.UUID, str], list[Any]] = {}
    for row in parked:
        by_id.setdefault((row.tenant_id, row.provider_message_id), []).append(row)
    loaded = session.scalars(
        select(Message).where(
            tuple_(Message.tenant_id, Message.id).in_(
                [
                    (m.tenant_id, m.id)
                    for m in messages
                    if (m.tenant_id, m.provider_message_id) in by_id
                ]
            )
        )
    ).all()
    return sum(
        _apply(session, m, by_id[(m.tenant_id, m.provider_message_id)])
        for m in loaded
        if (m.tenant_id, m.provider_message_id) in by_id
    )


def _apply(session: Session, message: Message, parked) -> int:
    changed = 0
    for row in sorted(parked, key=lambda r: ORDER.get(r.status, len(ORDER))):
        if row.status not in statuses.STATUSES:
            continue
        changed += statuses.apply_status(
            session,
            message,
            row.status,
            error_code=row.error_code,
            error_message=row.error_message,
            at=row.reported_at,
        )
    if parked:
        log.info(
            "applied %d early status(es) to message %s (%d changed it)",
            len(parked),
            message.id,
            changed,
        )
    return changed


@dataclass(frozen=True)
class SweepResult:
    applied: int
    expired: int

    def as_dict(self) -> dict[str, int]:
        return {"applied": self.applied, "expired": self.expired}


def _known_message():
    return exists().where(
        Message.tenant_id == EarlyStatus.tenant_id,
        Message.provider_message_id == EarlyStatus.provider_message_id,
        Message.direction == "outbound",
    )


def sweep(session: Session, *, now: dt.datetime | None = None, batch: int = 500) -> SweepResult:
    """Apply parked statuses whose message is known by now; drop those past ``expires_at``.

    ``now`` is the clock the expiry compares with (the database's when None).
    """
    pending = session.execute(
        select(EarlyStatus.tenant_id, EarlyStatus.provider_message_id)
        .where(_known_message())
        .group_by(EarlyStatus.tenant_id, EarlyStatus.provider_message_id)
        .limit(batch)
    ).all()
    applied = 0
    for tenant_id, provider_message_id in pending:
        # NOTE: one transaction per message and no waiting on its row: the sweeper never
        # holds one message's locks while it waits for another's, so it cannot deadlock
        # with a process_inbound transaction applying several statuses.
        lock(session, tenant_id, provider_message_id)
        message = session.scalars(
            select(Message)
            .where(
                and_(
                    Message.tenant_id == tenant_id,
                    Message.provider_message_id == provider_message_id,
                    Message.direction == "outbound",
                )
            )
            .with_for_update(skip_locked=True)
        ).one_or_none()
        if message is not None:
            applied += apply_parked(session, message)
        session.commit()
    expired = session.execute(
        delete(EarlyStatus).where(
            EarlyStatus.expires_at <= (now if now is not None else func.now())
        )
    ).rowcount
    if expired:
        log.info("dropped %d early status(es) no send claimed in time", expired)
    return SweepResult(applied, expired or 0)
