"""send_outbound's work: claim one queued message, send it once, record the provider's answer.

The claim is the message's ``outbound_sends`` row, locked with ``FOR UPDATE SKIP
LOCKED`` for the whole attempt: a second copy of the job (a redelivery, the
sweeper) finds it locked and does nothing, and once the row says ``sent`` or
``failed`` every later copy is a no-op. So a message is sent once per
successful commit.

NOTE: delivery is at-least-once at the edge: if the worker dies (or Postgres
fails) after the provider accepted the message but before the commit, the
attempt rolls back and the sweeper sends it again. Neither Meta nor SMTP offers
an idempotency key that would close that gap.

Results go through :func:`shared.channels.statuses.apply_status`: ``sent`` with
the provider's message id, or ``failed`` with the provider's code and message,
each emitting ``message.status_updated``. Statuses Meta reported for that id
before this commit (kept by :mod:`shared.channels.early_statuses`) are applied
right after ``sent``, under the lock their callbacks take too.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import func, literal_column, select
from sqlalchemy.orm import Session

from shared.channels import early_statuses, token_rejections, transports
from shared.channels.account_lookup import account_for
from shared.channels.accounts import decrypt_credentials
from shared.channels.send_errors import Outcome, Result, SendFailed, as_failure
from shared.channels.statuses import apply_status
from shared.config import get_settings
from shared.context import Ctx
from shared.db import session_scope
from shared.models import Contact, Conversation, Message
from shared.models.outbound import OutboundSend

log = logging.getLogger(__name__)


def send(message_id: uuid.UUID, *, last_attempt: bool) -> Result:
    """One attempt at sending ``message_id``; see the module docstring.

    On a transient failure the attempt is recorded and :data:`Outcome.RETRY`
    returned, unless ``last_attempt``: then the message is failed with that error.
    """
    with session_scope() as session:
        claim = session.scalars(
            select(OutboundSend)
            .where(OutboundSend.message_id == message_id)
            .with_for_update(skip_locked=True)
        ).one_or_none()
        if claim is None:
            exists = session.scalar(
                select(func.count()).where(OutboundSend.message_id == message_id)
            )
            return Result(Outcome.BUSY if exists else Outcome.UNKNOWN)
        if claim.status != "pending":
            return Result(Outcome.DONE)
        # PERF: the message, its conversation and contact in one round trip.
        message, conversation, contact = session.execute(
            select(Message, Conversation, Contact)
            .join(
                Conversation,
                (Conversation.id == Message.conversation_id)
                & (Conversation.tenant_id == Message.tenant_id),
            )
            .join(
                Contact,
                (Contact.id == Conversation.contact_id) & (Contact.tenant_id == Message.tenant_id),
            )
            .where(Message.id == message_id, Message.tenant_id == claim.tenant_id)
        ).one()
        if message.status != "queued":  # failed or moved on by some other path
            _finish(claim, "sent" if message.status != "failed" else "failed")
            return Result(Outcome.DONE)
        claim.attempts += 1
        claim.last_attempt_at = func.now()
        claim.sweep_at = func.now() + _sweep_delay()
        account_id = None
        try:
            outgoing = _outgoing(session, message, conversation, contact)
            account_id = outgoing.account.id
            provider_id = transports.send(session, outgoing)
        except Exception as exc:
            error = as_failure(exc, f"send {message_id}")
            claim.last_error_code = error.code[:64]
            claim.last_error_message = error.message
            if error.transient and not last_attempt:
                log.info("send %s: transient %s, will retry", message_id, error.code)
                return Result(Outcome.RETRY, error)
            if account_id is not None and error.code in token_rejections.TOKEN_INVALID_CODES:
                token_rejections.mark_rejected(
                    session, Ctx.system(message.tenant_id), account_id, error.code
                )
            _fail(session, claim, message, error)
            return Result(Outcome.FAILED, error)
        if message.channel in early_statuses.CHANNELS:
            # Before the message's row lock, in the order the status path takes them.
            early_statuses.lock(session, message.tenant_id, provider_id)
        session.refresh(message, with_for_update=True)
        message.provider_message_id = provider_id
        apply_status(session, message, "sent")
        if message.channel in early_statuses.CHANNELS:
            early_statuses.apply_parked(session, message)
        _finish(claim, "sent")
        return Result(Outcome.SENT, provider_message_id=provider_id)


def _fail(session: Session, claim: OutboundSend, message: Message, error: SendFailed) -> None:
    log.warning("send %s failed for good: %s %s", message.id, error.code, error.message)
    session.refresh(message, with_for_update=True)
    apply_status(
        session, message, "failed", error_code=error.code[:64], error_message=error.message
    )
    _finish(claim, "failed")


def _finish(claim: OutboundSend, status: str) -> None:
    claim.status = status
    claim.finished_at = func.now()


def _sweep_delay():
    """How long a claim waits before the sweeper may re-drive it: past any retry backoff."""
    settings = get_settings()
    seconds = settings.outbound_sweep_after_seconds + settings.outbound_max_backoff_ms / 1000
    return literal_column(f"interval '{float(seconds)} seconds'")


def _outgoing(
    session: Session, message: Message, conversation: Conversation, contact: Contact
) -> transports.Outgoing:
    """The sending account (the conversation's, else the channel default), decrypted."""
    account = account_for(
        session, message.tenant_id, conversation.integration_account_id, message.channel
    )
    if account is None:
        raise SendFailed(
            "no_account", f"no connected {message.channel} account to send from", transient=False
        )
    if account.status == "disabled":
        raise SendFailed(
            "account_disabled", f"the {message.channel} account is disabled", transient=False
        )
    return transports.Outgoing(
        message, conversation, contact, account, decrypt_credentials(account)
    )
