"""send_email: the platform's own emails (agent invitations), one row id per message.

``send_email(kind, row_id)``: ``kind`` names what the row is (``agent_invitation``),
so password resets and tenant provisioning can add theirs. Importing this module
installs the after-commit enqueuer of :mod:`shared.identity.invitations` (the API and
the scheduler import it for that). Transient SMTP failures raise, so Dramatiq retries
with backoff (the outbound retry settings); on the last attempt the row is failed and
the job still raises, so the dead letter is recorded and visible to operators.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence

import dramatiq
from dramatiq.middleware import CurrentMessage
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.config import get_settings
from shared.identity import invitation_emails, invitations
from shared.models import AgentInvitation
from workers import queues, tenant_gate
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)

log = logging.getLogger(__name__)

_settings = get_settings()

#: ``kind`` -> ``(row_id, *, last_attempt) -> Result`` of each email family.
DELIVERERS: dict[str, Callable[..., invitation_emails.Result]] = {
    invitations.EMAIL_KIND: invitation_emails.deliver,
}


class TransientEmailError(Exception):
    """An SMTP failure worth retrying (the row stays ``pending``)."""


@dramatiq.actor(
    queue_name=queues.CHANNELS,
    max_retries=_settings.outbound_max_retries,
    min_backoff=_settings.outbound_min_backoff_ms,
    max_backoff=_settings.outbound_max_backoff_ms,
    time_limit=5 * 60_000,
)
def send_email(kind: str, row_id: str) -> None:
    """Send the email of row ``row_id`` unless it was sent already; a duplicate is a no-op."""
    deliver = DELIVERERS.get(kind)
    if deliver is None:
        log.error("send_email: unknown kind %r (row %s); dropped", kind, row_id)
        return
    current = CurrentMessage.get_current_message()
    retries = current.options.get("retries", 0) if current is not None else 0
    max_retries = send_email.options.get("max_retries", 0)
    result = deliver(uuid.UUID(row_id), last_attempt=retries >= max_retries)
    log.debug("send_email %s %s: %s", kind, row_id, result.outcome)
    error = result.error
    if result.outcome == invitation_emails.Outcome.RETRY and error is not None:
        raise TransientEmailError(str(error))
    if result.outcome == invitation_emails.Outcome.FAILED and error is not None and error.transient:
        # The last attempt: the row is failed; raising records the dead letter.
        raise TransientEmailError(f"gave up after {retries} retries: {error}")


def enqueue_invitations(invitation_ids: Sequence[uuid.UUID]) -> None:
    """The :mod:`shared.identity.invitations` enqueuer: one message per invitation email."""
    for invitation_id in invitation_ids:
        send_email.send(invitations.EMAIL_KIND, str(invitation_id))


#: ``kind`` -> the tenant of its row (``send_email`` messages carry no ``tenant_id``).
TENANT_OF: dict[str, Callable[[Session, uuid.UUID], uuid.UUID | None]] = {
    invitations.EMAIL_KIND: lambda session, row_id: session.scalar(
        select(AgentInvitation.tenant_id).where(AgentInvitation.id == row_id)
    ),
}


def tenant_of_email(session: Session, args: tuple) -> uuid.UUID | None:
    """The tenant of the email's row: a suspended workspace's emails are dropped, not sent."""
    kind, row_id = args
    find = TENANT_OF.get(kind)
    return find(session, uuid.UUID(row_id)) if find is not None else None


invitations.set_enqueuer(enqueue_invitations)
tenant_gate.resolve_tenant_with(send_email.actor_name, tenant_of_email)
