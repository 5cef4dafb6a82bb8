"""Delivery statuses of outbound messages: they only move forward.

Providers report statuses out of order and more than once (Meta retries callbacks, and a
``delivered`` can arrive after ``read``). :func:`apply_status` is the one place that
decides whether a report changes a message: ``queued < sent < delivered < read``;
``failed`` is only reachable from ``queued`` or ``sent`` and is terminal, but for a
message the provider accepted after we had failed it (:data:`ACCEPTED_AFTER_FAILURE`,
see :func:`shared.channels.outbound.keep_late_provider_id`): its receipts (``delivered``,
``read``) are proof the customer has it. Both the inbound status callbacks and the
outbound sender's results go through it.

Example::

    if apply_status(session, message, "delivered", at=reported_at):
        ...  # changed, and message.status_updated is in the outbox
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func
from sqlalchemy.orm import Session

from shared.campaigns import tracking as campaign_tracking
from shared.events import Actor, emit
from shared.models import Message
from shared.schemas.messages import MessageView

#: The forward order of the non-terminal statuses.
RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}
#: Statuses ``failed`` may replace: a message the provider already delivered did not fail.
FAILABLE = frozenset({"queued", "sent"})
#: Statuses that replace ``failed`` (of a message accepted after it): proof of delivery.
RECEIPTS = frozenset({"delivered", "read"})
#: Message metadata flag: we failed it, then learnt the provider had accepted it.
ACCEPTED_AFTER_FAILURE = "accepted_after_failure"
STATUSES = (*RANK, "failed")


def can_move(current: str, new: str, *, accepted_after_failure: bool = False) -> bool:
    """Whether ``current`` may become ``new`` (pure; the rule in one place).

    ``accepted_after_failure``: the message was failed by us, not by the provider's report,
    and the provider turned out to have accepted it; a receipt then delivers it. WHY not
    any failure: the provider's own ``failed`` stays (a ``delivered`` after it is a replay).
    """
    if new == "failed":
        return current in FAILABLE
    if current == "failed":
        return accepted_after_failure and new in RECEIPTS
    if current not in RANK or new not in RANK:
        return False  # received (inbound) never changes
    return RANK[new] > RANK[current]


def apply_status(
    session: Session,
    message: Message,
    status: str,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
    at: dt.datetime | None = None,
    actor: Actor | None = None,
) -> bool:
    """Move ``message`` to ``status`` if that is forward; emit message.status_updated.

    ``message`` should be locked by the caller (``SELECT ... FOR UPDATE``) when two
    reports may race. ``at`` is when the provider says it happened; it is kept in the
    message metadata (``status_timestamps``). Returns whether anything changed.
    """
    if status not in STATUSES:
        raise ValueError(f"unknown delivery status {status!r}")
    previous = message.status
    accepted_late = bool((message.metadata_ or {}).get(ACCEPTED_AFTER_FAILURE))
    if not can_move(previous, status, accepted_after_failure=accepted_late):
        return False
    message.status = status
    if status == "failed" or previous == "failed":  # NOTE: a receipt clears the error
        message.error_code = error_code
        message.error_message = error_message
    stamps = dict((message.metadata_ or {}).get("status_timestamps") or {})
    stamps[status] = (at or dt.datetime.now(dt.UTC)).isoformat()
    message.metadata_ = {**(message.metadata_ or {}), "status_timestamps": stamps}
    message.updated_at = func.now()
    session.flush()
    session.refresh(message)
    if message.sender_type == "system":  # PERF: campaign messages are the system's
        campaign_tracking.on_status(session, message, status)
    emit(
        session,
        "message.status_updated",
        MessageView.data(message) | {"previous_status": previous},
        tenant_id=message.tenant_id,
        actor=actor or Actor.system(),
    )
    return True
