"""``process_inbound``'s work: parse one stored payload and apply each item in a savepoint.

Contract:

- Only a ``pending`` row is processed; the row is locked (``FOR UPDATE SKIP LOCKED``)
  so two deliveries of the same job never run it at once, and a finished row is a
  no-op: the actor is idempotent.
- Each item runs in its own savepoint: an item that fails is rolled back alone and
  recorded in ``result.errors``; the row ends ``failed`` (with ``error``) when any
  item failed, ``processed`` otherwise. Both are final and visible to operators.
- A failure outside the items (the database itself) raises: the actor retries with
  backoff, and when its retries are exhausted :func:`mark_failed` records it.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shared import dead_letters
from shared.channels import accounts, email, inbound_queue, ingest, meta_messaging, whatsapp
from shared.channels.items import (
    Ignored,
    InboundMessage,
    Item,
    ItemError,
    StatusReport,
    Watermark,
)
from shared.channels.templates import review
from shared.db import failure_reason
from shared.models import InboundEvent, IntegrationAccount

log = logging.getLogger(__name__)

#: Errors kept per row (the rest are counted).
MAX_ERRORS = 20


def parse(row: InboundEvent) -> list[Item | ItemError]:
    if row.channel == "whatsapp":
        return whatsapp.parse(row.payload)
    if row.channel in ("messenger", "instagram"):
        return meta_messaging.parse(row.payload)
    if row.channel == "email":
        return email.parse(row.payload, event_key=row.provider_event_id)
    return [ItemError(f"no parser for channel {row.channel!r}")]


def _apply(session: Session, account: IntegrationAccount, row: InboundEvent, item: Item) -> str:
    if isinstance(item, InboundMessage):
        return "message_" + ingest.apply_message(session, account, item, inbound_event_id=row.id)
    if isinstance(item, StatusReport):
        return "status_" + ingest.apply_status(session, account, item)
    if isinstance(item, Watermark):
        return "watermark_" + ingest.apply_watermark(session, account, item)
    if isinstance(item, Ignored):
        return "ignored"
    if isinstance(item, review.TemplateReview):
        return "template_" + review.apply(session, account, item)
    raise TypeError(f"unknown item {item!r}")


#: PERF: built once (see :mod:`.ingest`): the pending row, locked, with its account.
_CLAIM = (
    select(InboundEvent, IntegrationAccount)
    .outerjoin(
        IntegrationAccount,
        and_(
            IntegrationAccount.id == InboundEvent.account_id,
            IntegrationAccount.tenant_id == InboundEvent.tenant_id,
        ),
    )
    .where(InboundEvent.id == bindparam("id"), InboundEvent.status == "pending")
    .with_for_update(of=InboundEvent, skip_locked=True)
)


def _claim(session: Session, inbound_event_id: uuid.UUID):
    """The pending row, locked, with its (active) account, or None; one round trip."""
    found = session.execute(_CLAIM, {"id": inbound_event_id}).one_or_none()
    return (None, None) if found is None else tuple(found)


def process(session: Session, inbound_event_id: uuid.UUID) -> str:
    """Process the row if it is pending; return its final status (or ``skipped``)."""
    row, account = _claim(session, inbound_event_id)
    if row is None:
        return "skipped"
    row.attempts += 1
    if account is None:
        return _finish(
            session, row, "dropped", {}, [], "the integration account is gone or disabled"
        )
    off = accounts.switched_off(account)
    if off is not None:
        return _finish(session, row, "dropped", {}, [], off.message)
    counts: Counter[str] = Counter()
    errors: list[str] = []
    try:
        items = parse(row)
    except Exception as exc:  # a parser bug: the payload stays stored and visible
        log.exception("inbound event %s could not be parsed", inbound_event_id)
        items = [ItemError(f"parse failed: {type(exc).__name__}: {exc}")]
    applicable = [i for i in items if not isinstance(i, ItemError)]
    # PERF: most rows hold one item; it needs no savepoint (two round trips): when it
    # fails, the whole transaction is rolled back and the row is failed in a fresh one.
    single = len(items) == 1 and len(applicable) == 1
    for index, item in enumerate(items):
        if isinstance(item, ItemError):
            counts["failed"] += 1
            errors.append(f"item {index}: {item}")
            continue
        try:
            if single:
                counts[_apply(session, account, row, item)] += 1
            else:
                with session.begin_nested():
                    counts[_apply(session, account, row, item)] += 1
        except Exception as exc:
            if isinstance(exc, OperationalError) and not refused_for_its_data(exc):
                raise  # the database itself: the actor retries
            # NOTE: the id we were given, not row.id: after a failed flush, reading the row
            # raised PendingRollbackError here, and the job retried to a dead letter.
            log.exception("inbound event %s item %d failed", inbound_event_id, index)
            error = f"item {index}: {failure_reason(exc)}"[:300]
            if single:
                return _fail_alone(session, inbound_event_id, error)
            counts["failed"] += 1
            errors.append(error)
    status = "failed" if errors else "processed"
    error = f"{len(errors)} of {len(items)} item(s) failed; see result.errors" if errors else None
    return _finish(session, row, status, dict(counts), errors, error)


def refused_for_its_data(exc: OperationalError) -> bool:
    """Whether the database refused the item's own data: a program limit (SQLSTATE class
    54: an index row or a search vector too big). It is an OperationalError, as an outage
    is, but a retry meets it again: the item fails once instead."""
    return (getattr(exc.orig, "sqlstate", None) or "").startswith("54")


def _fail_alone(session: Session, inbound_event_id: uuid.UUID, error: str) -> str:
    session.rollback()
    row, _account = _claim(session, inbound_event_id)
    if row is None:
        return "skipped"
    row.attempts += 1
    message = "1 of 1 item(s) failed; see result.errors"
    return _finish(session, row, "failed", {"failed": 1}, [error], message)


def _finish(
    session: Session,
    row: InboundEvent,
    status: str,
    counts: dict[str, int],
    errors: list[str],
    error: str | None,
) -> str:
    result: dict[str, Any] = {"counts": counts}
    if errors:
        result["errors"] = errors[:MAX_ERRORS]
    row.status = status
    row.result = result
    row.error = error
    # NOTE: clock_timestamp, not now(): when processing ended, not when it began.
    row.processed_at = func.clock_timestamp()
    session.flush()
    return status


def mark_failed(session: Session, inbound_event_id: uuid.UUID, error: str) -> None:
    """The job kept failing (database errors...): make the row final and say why."""
    row = session.get(InboundEvent, inbound_event_id, with_for_update=True)
    if row is not None and row.status == "pending":
        row.status = "failed"
        row.error = error[:2000]
        row.processed_at = func.now()


def revive(
    session: Session, tenant_id: uuid.UUID | None, args: Sequence[Any], **_options: Any
) -> None:
    """Make a ``process_inbound`` dead letter's payload pending again, or 409 saying why not.

    WHY: :func:`mark_failed` made it final when the job ran out of retries, so the
    requeued job claimed nothing and the operator's requeue did nothing. Only that
    failure is undone (its ``result`` is empty: the job's work was rolled back each time);
    a payload processed, dropped, or failed for its items' data is final. A job of its
    own goes after commit: the requeued one may run before, and skip the locked row.
    """
    row = _locked(session, tenant_id, dead_letters.row_id(args))
    if row is None:
        raise dead_letters.NotRequeueable(
            "payload_gone", "The inbound payload was deleted: there is nothing to process"
        )
    if row.status == "pending":
        return
    if row.status != "failed" or row.result is not None:
        raise dead_letters.NotRequeueable(
            f"payload_{row.status}",
            f"The inbound payload is {row.status} already, not failed by its job"
            f" ({row.error or 'no error'}): processing it again would change nothing",
        )
    row.status, row.error, row.processed_at, row.sweep_at = "pending", None, None, func.now()
    session.flush()
    inbound_queue.enqueue_after_commit(session, [row.id])


def _locked(
    session: Session, tenant_id: uuid.UUID | None, inbound_event_id: uuid.UUID
) -> InboundEvent | None:
    """The payload (of ``tenant_id`` unless None: the platform operator), locked."""
    statement = select(InboundEvent).where(InboundEvent.id == inbound_event_id)
    if tenant_id is not None:
        statement = statement.where(InboundEvent.tenant_id == tenant_id)
    return session.scalar(statement.with_for_update())
