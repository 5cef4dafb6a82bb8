"""``mark_read_upstream``'s work: tell the provider one inbound message was read, once.

The receipt's row is claimed with ``FOR UPDATE SKIP LOCKED`` for the whole attempt, so
a second copy of the job does nothing, and a finished row (``sent``, ``failed``) makes
every later copy a no-op. WhatsApp marks the message itself read (``POST
/{phone-number-id}/messages`` with ``status: read``); Messenger and Instagram mark the
thread seen (``POST /me/messages`` with ``sender_action: mark_seen``), all through the
one Graph client. A transient failure is recorded on the row and retried by the actor;
a permanent one (or the last retry) leaves the row ``failed`` with the provider's code
and message.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.channels import graph
from shared.channels.account_lookup import acting_account
from shared.channels.accounts import decrypt_credentials
from shared.channels.read_receipts import sweep_interval
from shared.channels.send_errors import Outcome, Result, SendFailed, as_failure
from shared.db import session_scope
from shared.models import Contact, Conversation, Message
from shared.models.receipts import ReadReceipt

log = logging.getLogger(__name__)


def whatsapp_read(provider_message_id: str) -> dict[str, Any]:
    """Cloud API: mark an inbound message (and the ones before it) read."""
    return {"messaging_product": "whatsapp", "status": "read", "message_id": provider_message_id}


def page_mark_seen(recipient_id: str) -> dict[str, Any]:
    """Messenger / Instagram: show the contact their messages were seen."""
    return {"recipient": {"id": recipient_id}, "sender_action": "mark_seen"}


def send(message_id: uuid.UUID, *, last_attempt: bool) -> Result:
    """One attempt at the receipt of inbound message ``message_id``; see the module docstring."""
    with session_scope() as session:
        claim = session.scalars(
            select(ReadReceipt)
            .where(ReadReceipt.message_id == message_id)
            .with_for_update(skip_locked=True)
        ).one_or_none()
        if claim is None:
            exists = session.scalar(
                select(func.count()).where(ReadReceipt.message_id == message_id)
            )
            return Result(Outcome.BUSY if exists else Outcome.UNKNOWN)
        if claim.status != "pending":
            return Result(Outcome.DONE)
        claim.attempts += 1
        claim.last_attempt_at = func.now()
        claim.sweep_at = func.now() + sweep_interval()
        try:
            _call_provider(session, claim)
        except Exception as exc:
            error = as_failure(exc, f"read receipt {message_id}")
            claim.last_error_code = error.code[:64]
            claim.last_error_message = error.message
            if error.transient and not last_attempt:
                log.info("read receipt %s: transient %s, will retry", message_id, error.code)
                return Result(Outcome.RETRY, error)
            log.warning("read receipt %s failed: %s %s", message_id, error.code, error.message)
            _finish(claim, "failed")
            return Result(Outcome.FAILED, error)
        _finish(claim, "sent")
        return Result(Outcome.SENT)


def _call_provider(session: Session, claim: ReadReceipt) -> None:
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
        .where(Message.id == claim.message_id, Message.tenant_id == claim.tenant_id)
    ).one()
    account = acting_account(
        session, message.tenant_id, conversation.integration_account_id, message.channel
    )
    token = decrypt_credentials(account).get("access_token")
    if not token:
        raise SendFailed(
            "missing_credentials",
            f"the {message.channel} account has no access token",
            transient=False,
        )
    client = graph.graph_client()
    if message.channel == "whatsapp":
        client.post(
            f"{account.external_id}/messages", token, whatsapp_read(message.provider_message_id)
        )
    elif message.channel in ("messenger", "instagram"):
        client.post("me/messages", token, page_mark_seen(contact.external_id))
    else:
        raise SendFailed(
            "unsupported_channel", f"{message.channel} takes no read receipts", transient=False
        )


def _finish(claim: ReadReceipt, status: str) -> None:
    claim.status = status
    claim.finished_at = func.now()
