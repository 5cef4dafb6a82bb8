"""An operator's requeue of a send's dead letter: its failed message is queued again.

A send that ran out of retries fails its message and its ``outbound_sends`` row, and
writes a dead letter naming ``send_outbound`` (:func:`.outbound.record_failed`).
Re-running that job alone did nothing: the claim takes only pending rows, and a failed
message is done. :func:`revive` therefore puts both back (message ``failed`` ->
``queued``, with its ``message.status_updated`` and its campaign recipient; the send
pending, due now, with a fresh retry budget) in the requeue's transaction, so the job
that follows goes through the normal claim. It refuses (409 ``send_not_requeueable``,
saying why) when the message is no longer failed, or its conversation or account can no
longer send it.

A send the customer may already have is refused too unless the operator accepts a
possible duplicate: Meta and SMTP take no idempotency key, so a requeue would message
them twice without a word. The reason names which case (:data:`MAY_HAVE_IT`): in doubt
(``delivery_unknown``: its worker died during the provider call, see
:mod:`.send_markers`), taken but answered unreadably (``bad_response`` of the message's
own call, :func:`.transports.accepted_unread`), or accepted after it had failed
(``accepted_after_failure``, :data:`.statuses.ACCEPTED_AFTER_FAILURE`). The api
channel's receivers deduplicate by id, so its sends need no such consent.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from shared.campaigns import tracking as campaign_tracking
from shared.channels import outbound, outbound_engine, outbound_queue, send_markers, transports
from shared.channels.send_errors import SendFailed
from shared.channels.statuses import ACCEPTED_AFTER_FAILURE
from shared.config import get_settings
from shared.errors import Conflict
from shared.events import Actor, emit
from shared.inbox.messages import whatsapp_window_open
from shared.models import Contact, Conversation, Message
from shared.schemas.messages import MessageView


class NotRequeueable(Conflict):
    """The send's message cannot go out again; the message says why."""

    code = "send_not_requeueable"

    def __init__(self, reason: str, message: str):
        super().__init__(message, details=[{"field": "message", "reason": reason}])
        self.reason = reason


class DuplicatePossible(NotRequeueable):
    """The customer may already have the message: it goes out again only with the
    operator's consent (``accept_duplicate``). ``why`` says so in plain words, without the
    API's hint, for the console to offer its own button."""

    def __init__(self, reason: str, channel: str):
        self.why = (
            f"{MAY_HAVE_IT[reason]}, and the provider takes no idempotency key, so sending it"
            f" again over {channel} may deliver it twice"
        )
        super().__init__(
            reason, f'{self.why}. Requeue it with {{"accept_duplicate": true}} to send it anyway'
        )


#: The error code of a send whose provider call may have reached the customer.
DELIVERY_UNKNOWN = outbound_engine.DELIVERY_UNKNOWN.code
#: The reason of a refusal for a message Meta took but whose answer could not be read.
BAD_RESPONSE = "bad_response"

#: The reasons a requeue needs ``accept_duplicate`` (the customer may have the message
#: already), each with why, in plain words.
MAY_HAVE_IT = {
    ACCEPTED_AFTER_FAILURE: "The customer almost surely has it already: the provider"
    " accepted an earlier attempt after the send had been failed",
    DELIVERY_UNKNOWN: "The customer may already have it: its worker stopped during the"
    " provider call",
    BAD_RESPONSE: "The customer may already have it: the provider accepted it but its"
    " answer could not be read",
}


def revive(
    session: Session,
    tenant_id: uuid.UUID | None,
    args: Sequence[Any],
    *,
    accept_duplicate: bool = False,
) -> None:
    """Queue the failed message of a ``send_outbound`` dead letter (``args``) again, or 409.

    ``accept_duplicate``: the operator knows a send the customer may already have
    (:data:`MAY_HAVE_IT`) may reach them twice.
    """
    message = _locked_message(session, tenant_id, args)
    if message.status != "failed":
        raise NotRequeueable(
            "not_failed",
            f"The message is {message.status} now, not failed: there is nothing to send again",
        )
    # NOTE: whether it can go out at all first: asked for a consent to a duplicate, the
    # operator gave it and only then learned that the account could not send it anyway.
    _check_can_send(session, message)
    if not accept_duplicate:
        _check_not_in_doubt(message)
    _queue_again(session, message)
    _reset_send(session, message)


def _locked_message(session: Session, tenant_id: uuid.UUID | None, args: Sequence[Any]):
    try:
        message_id = uuid.UUID(str(args[0]))
    except (IndexError, ValueError) as exc:
        raise NotRequeueable("bad_arguments", "This dead letter names no message") from exc
    message = outbound.locked_message(session, tenant_id, message_id)
    if message is None:
        raise NotRequeueable("message_gone", "The message was deleted: there is nothing to send")
    return message


def _check_not_in_doubt(message: Message) -> None:
    """A send the customer may have goes out again only with the operator's consent to a
    duplicate.

    WHY: the dead letter of a send can outlive the failure it was written for (a
    ``send_outbound`` job dead in Dramatiq, a requeued letter shown again when its job died
    again): requeueing it sent a message failed ``delivery_unknown``, taken by Meta but
    answered unreadably, or accepted after its failure, a second time, and the customer
    got it twice with nobody told.
    """
    reason = _why_they_may_have_it(message)
    if reason is None or message.channel in send_markers.EXEMPT_CHANNELS:
        return
    raise DuplicatePossible(reason, message.channel)


def _why_they_may_have_it(message: Message) -> str | None:
    """Which of :data:`MAY_HAVE_IT` applies to the failed ``message``, if any."""
    if (message.metadata_ or {}).get(ACCEPTED_AFTER_FAILURE):
        return ACCEPTED_AFTER_FAILURE
    if message.error_code == DELIVERY_UNKNOWN:
        return DELIVERY_UNKNOWN
    if transports.accepted_unread(message.error_code, message.error_message):
        return BAD_RESPONSE
    return None


def _check_can_send(session: Session, message: Message) -> None:
    """What the claim would refuse, refused now instead (the operator learns why at once)."""
    conversation = session.scalars(
        select(Conversation).where(
            Conversation.tenant_id == message.tenant_id,
            Conversation.id == message.conversation_id,
        )
    ).one_or_none()
    contact = (
        conversation
        and session.scalars(
            select(Contact).where(
                Contact.tenant_id == message.tenant_id, Contact.id == conversation.contact_id
            )
        ).one_or_none()
    )
    if contact is None:
        raise NotRequeueable(
            "recipient_gone", "The conversation or contact was deleted: nobody to send it to"
        )
    try:
        outbound.account_of(session, message, conversation)
    except SendFailed as exc:
        raise NotRequeueable(exc.code, f"It cannot be sent: {exc.message}") from exc
    free_form = message.channel == "whatsapp" and message.template is None
    if free_form and not whatsapp_window_open(session, conversation):
        raise NotRequeueable(
            "window_closed",
            "The WhatsApp 24-hour window is closed: send a template instead",
        )


def _queue_again(session: Session, message: Message) -> None:
    """``failed`` -> ``queued`` (outside the delivery rule, which keeps failed terminal), its
    campaign recipient with it.

    The :data:`~shared.channels.statuses.ACCEPTED_AFTER_FAILURE` flag goes: it spoke of the
    failed send (a receipt of ours to undo), not of the new one; left, a replayed receipt
    undid a failure Meta reported for the new send.
    """
    message.status = "queued"
    message.error_code = None
    message.error_message = None
    message.metadata_ = {
        k: v for k, v in (message.metadata_ or {}).items() if k != ACCEPTED_AFTER_FAILURE
    }
    message.updated_at = func.now()
    session.flush()
    session.refresh(message)
    campaign_tracking.on_requeued(session, message)
    emit(
        session,
        "message.status_updated",
        MessageView.data(message) | {"previous_status": "failed"},
        tenant_id=message.tenant_id,
        actor=Actor.system(),
    )


_RESET_SEND = text(
    """
    INSERT INTO outbound_sends (message_id, tenant_id, sweep_at)
    VALUES (:id, :tenant, now() + make_interval(secs => :sweep))
    ON CONFLICT (message_id) DO UPDATE
       SET status = 'pending', attempts = 0, next_attempt_at = now(),
           sweep_at = excluded.sweep_at, finished_at = NULL
    """
)


def _reset_send(session: Session, message: Message) -> None:
    """The send pending and due now, with a fresh retry budget, and a job for it after
    commit; the sweeper re-drives it should that job be lost.

    WHY after commit: the requeued dead letter's job is sent from inside this transaction,
    so a quick worker claimed before the commit, found the send locked or failed, and did
    nothing: the revived message waited for the sweeper (a minute).
    """
    session.execute(
        _RESET_SEND,
        {
            "id": message.id,
            "tenant": message.tenant_id,
            "sweep": get_settings().outbound_sweep_after_seconds,
        },
    )
    outbound_queue.QUEUE.enqueue_after_commit(session, [message.id])
