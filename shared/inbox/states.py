"""The conversation state machine: the one place a conversation's status changes.

Every path (the status endpoint, bulk actions, expiry, the snooze wake-up) calls
:func:`transition`, so the rules, the activity row and the
``conversation.status_changed`` event cannot differ between them.

=========  =========================================  ==========================
From       To (legal)                                 Why
=========  =========================================  ==========================
open       pending, snoozed, resolved                 normal work
pending    open, snoozed, resolved                    waiting on the customer
snoozed    open, pending, resolved, snoozed (*)       wake early, or re-snooze
resolved   open                                       reopening; nothing else
=========  =========================================  ==========================

(*) snoozed -> snoozed moves ``snoozed_until``; with the same time it is no change.
Any other X -> X is no change: nothing is written and no event is emitted.
A resolved conversation must be reopened before it can be snoozed or parked as
pending, so "resolved" always means someone decided to close it.

Side effects: ``snoozed`` needs ``snoozed_until`` in the future (database clock);
leaving ``snoozed`` clears it. ``resolved`` sets ``resolved_at`` and
``resolution_reason`` (``resolved``, or ``expired`` from expiry); reopening clears both.
Resolving (not expiry) sends the tenant's CSAT survey when its channel is surveyed
(:func:`shared.csat.surveys.on_resolved`), in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from typing import Any

from sqlalchemy import Update, bindparam, case, exists, func, or_, select, update
from sqlalchemy.orm import Session

from shared import activity
from shared.context import Ctx
from shared.db import fetch_rows
from shared.errors import Conflict, ValidationFailed
from shared.inbox.access import visibility, visible_bound
from shared.models import Conversation, ConversationSla
from shared.schemas.inbox import ConversationView

STATUSES = ("open", "pending", "snoozed", "resolved")

#: from-status -> the statuses it may move to (same-status moves are handled apart).
TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"pending", "snoozed", "resolved"}),
    "pending": frozenset({"open", "snoozed", "resolved"}),
    "snoozed": frozenset({"open", "pending", "resolved"}),
    "resolved": frozenset({"open"}),
}

#: Values of ``conversations.resolution_reason``.
RESOLUTION_REASONS = ("resolved", "expired")


class IllegalTransition(Conflict):
    """A move the table above does not allow (409, naming from and to)."""

    def __init__(self, from_status: str, to_status: str):
        super().__init__(
            f"A {from_status} conversation cannot become {to_status}",
            details=[
                {"field": "status", "message": f"illegal transition {from_status} -> {to_status}"}
            ],
        )
        self.from_status = from_status
        self.to_status = to_status


def db_now(session: Session) -> dt.datetime:
    """The database clock (the transaction's start), so tests move time by editing rows."""
    return session.scalar(select(func.now()))


def check(
    conversation: Conversation,
    to_status: str,
    *,
    snoozed_until: dt.datetime | None,
    now: dt.datetime,
) -> bool:
    """Raise unless ``conversation`` may become ``to_status``; return whether anything changes."""
    if to_status not in STATUSES:
        raise ValidationFailed.field("status", f"unknown status '{to_status}'")
    if to_status == "snoozed":
        if snoozed_until is None:
            raise ValidationFailed.field("snoozed_until", "required to snooze")
        if snoozed_until <= now:
            raise ValidationFailed.field("snoozed_until", "must be in the future")
    elif snoozed_until is not None:
        raise ValidationFailed.field("snoozed_until", "only allowed with status 'snoozed'")
    current = conversation.status
    if current == to_status:
        return to_status == "snoozed" and conversation.snoozed_until != snoozed_until
    if to_status not in TRANSITIONS[current]:
        raise IllegalTransition(current, to_status)
    return True


#: Statuses a conversation rests in; leaving one for a working status reopens it.
_RESTING, _WORKING = ("snoozed", "resolved"), ("open", "pending")


def transition(
    session: Session,
    ctx: Ctx,
    conversation: Conversation,
    to_status: str,
    *,
    snoozed_until: dt.datetime | None = None,
    reason: str = "resolved",
    now: dt.datetime | None = None,
    extra: dict[str, Any] | None = None,
) -> bool:
    """Move a locked ``conversation`` to ``to_status``; log it and emit the event.

    Returns False (and writes nothing) when nothing changes. ``reason`` is the
    ``resolution_reason`` when resolving. ``extra`` is merged into the event data.
    """
    now = now or db_now(session)
    if not check(conversation, to_status, snoozed_until=snoozed_until, now=now):
        return False
    previous = conversation.status
    before = {"status": previous, "snoozed_until": _iso(conversation.snoozed_until)}
    conversation.status = to_status
    conversation.snoozed_until = snoozed_until if to_status == "snoozed" else None
    if to_status == "resolved":
        conversation.resolved_at = now
        conversation.resolution_reason = reason
    elif previous == "resolved":
        conversation.resolved_at = None
        conversation.resolution_reason = None
    if previous in _RESTING and to_status in _WORKING:
        # NOTE: a reopened conversation is active from now: with its last message's time
        # kept, chat expiration closed it again at its next run (a chat snoozed past the
        # channel's rule, a resolved one an agent reopened).
        conversation.last_activity_at = now
    conversation.updated_at = now
    session.flush()
    # NOTE: imported here: timekeeping reads the automation attributes, which read STATUSES.
    from shared.timekeeping import sla

    sla.status_changed(session, conversation, previous, to_status, now=now)
    after = {"status": to_status, "snoozed_until": _iso(conversation.snoozed_until)}
    if to_status == "resolved":
        after["resolution_reason"] = reason
    data = ConversationView.data(conversation) | {"previous_status": previous} | (extra or {})
    activity.record_change(
        session,
        ctx,
        "conversation.status_changed",
        "conversation",
        conversation.id,
        data,
        before=before,
        after=after,
    )
    if to_status == "resolved":
        # NOTE: imported here: the survey is sent through shared.inbox.messages.
        from shared.csat import surveys as csat_surveys

        # The survey, its message and its events join this transaction: nothing is lost.
        csat_surveys.on_resolved(session, ctx, conversation, reason=reason, now=now)
    return True


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


#: Moves :func:`transition_by_id` makes in one statement: between the working statuses.
#: Snoozing (a time to check), resolving (CSAT) and reopening (a fresh SLA clock) take
#: the general path.
QUICK_TARGETS = ("open", "pending")


@functools.cache
def _quick_statement(shape: str, to_status: str) -> Update:
    """Lock the visible conversation, move it to ``to_status`` from a status the table
    allows (never from resolved), and return its previous state and its view's columns."""
    table = Conversation.__table__
    old = (
        select(table.c.id, table.c.status, table.c.snoozed_until)
        .where(visible_bound(shape), table.c.id == bindparam("conversation_id"))
        # NOTE: FOR NO KEY UPDATE, as get_conversation: the clock is locked next, and
        # check_sla holding it inserts a breach referencing the conversation.
        .with_for_update(key_share=True)
        .subquery("old")
    )
    allowed = [s for s, targets in TRANSITIONS.items() if to_status in targets and s != "resolved"]
    has_clock = exists().where(ConversationSla.conversation_id == table.c.id)
    return (
        update(table)
        .where(
            # NOTE: the tenant again at the top, for the write tracker and a second guard.
            table.c.tenant_id == bindparam("v_tenant_id", type_=table.c.tenant_id.type),
            table.c.id == old.c.id,
            # NOTE: not IN (a list): that is expanded per execution, not on the driver.
            or_(*(old.c.status == status for status in allowed)),
        )
        .values(
            status=to_status,
            snoozed_until=None,
            updated_at=func.now(),
            # NOTE: woken from snoozed: active from now (see transition).
            last_activity_at=case(
                (old.c.status == "snoozed", func.now()), else_=table.c.last_activity_at
            ),
        )
        .returning(
            old.c.status,
            old.c.snoozed_until,
            has_clock,
            *(table.c[name] for name in ConversationView.model_fields),
        )
    )


def transition_by_id(
    session: Session, ctx: Ctx, conversation_id: uuid.UUID, to_status: str
) -> dict[str, Any] | None:
    """:func:`transition` of a visible conversation by id to a :data:`QUICK_TARGETS` status,
    in one ``UPDATE ... RETURNING``; its view as a dict.

    None when that statement changed nothing (not visible, no change, a move the table
    refuses, or one from resolved): the caller then takes the general path, which
    answers each of those as :func:`transition` does.
    PERF: the status endpoint loaded the conversation as an ORM object, read the clock,
    then flushed its UPDATE: four round trips and the unit of work, for one row.
    """
    if to_status not in QUICK_TARGETS:
        return None
    shape, params = visibility(ctx)
    params["conversation_id"] = conversation_id
    # PERF: on the driver's cursor (db.fetch_rows), not through SQLAlchemy's execution.
    rows = fetch_rows(session.connection(), _quick_statement(shape, to_status), params)
    if not rows:
        return None
    row = rows[0]
    previous, previous_snoozed_until, has_clock = row[:3]
    view = dict(zip(ConversationView.model_fields, row[3:], strict=True))
    now = view["updated_at"]
    if has_clock:
        from shared.timekeeping import sla

        sla.status_changed(
            session, session.get(Conversation, conversation_id), previous, to_status, now=now
        )
    data = ConversationView.data(view) | {"previous_status": previous}
    activity.record_change(
        session,
        ctx,
        "conversation.status_changed",
        "conversation",
        conversation_id,
        data,
        before={"status": previous, "snoozed_until": _iso(previous_snoozed_until)},
        after={"status": to_status, "snoozed_until": None},
    )
    return view
