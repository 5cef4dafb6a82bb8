"""What a send's outcome does to its message and its ``outbound_sends`` row.

The outbound engine (:mod:`shared.channels.outbound_engine`) claims, sends and then
records through these, in one transaction per batch, after :func:`hold_live` kept only
the claims that are still the latest of their sends (a claim that ran out and was taken
by another worker records nothing: its send is the live claim's to settle):

- :func:`record_sent_many`: the sent messages in a few statements: ``sent`` with the
  provider's message id through the delivery rule (only a ``queued`` message moves),
  one ``message.status_updated`` each, then the statuses Meta reported for those ids
  before this commit (:mod:`shared.channels.early_statuses`), under the advisory locks
  their callbacks take too, taken before the message rows as the status path does.
  A message that is no longer ``queued`` goes through :func:`record_sent_one`, the
  per-message path (:func:`shared.channels.statuses.apply_status` decides).
- :func:`reschedule`: back to pending for a retry time (a transient failure, or a
  message of a throttled account that was not sent and so was no attempt).
- :func:`record_failed`: ``failed`` with the provider's code and message (an account
  whose token Meta rejected is marked, :mod:`.token_rejections`); when retries ran
  out, a dead letter (``send_outbound`` with the message id) makes it visible to
  operators, in the same transaction.

:func:`send` is one message through the engine (``send_outbound``, re-drives).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from shared.campaigns import tracking as campaign_tracking
from shared.channels import early_statuses, token_rejections
from shared.channels.account_lookup import acting_account
from shared.channels.accounts import decrypt_credentials
from shared.channels.send_errors import Outcome, Result, SendFailed
from shared.channels.statuses import ACCEPTED_AFTER_FAILURE, apply_status
from shared.config import get_settings
from shared.context import Ctx
from shared.dead_letters import SEND_ACTOR, record_dead_letter
from shared.events import Actor, emit_many
from shared.models import Conversation, IntegrationAccount, Message
from shared.models.outbound import OutboundSend
from shared.schemas.messages import MessageView

log = logging.getLogger(__name__)

#: The dead letter of a send that ran out of retries names this actor and queue, so an
#: operator's requeue goes through the same path (and first queues the message again).
DEAD_LETTER_ACTOR = SEND_ACTOR
DEAD_LETTER_QUEUE = "outbound"


def send(message_id: uuid.UUID) -> Result:
    """One attempt at sending ``message_id`` (if it is due), recorded; see the engine."""
    from shared.channels import outbound_engine  # NOTE: the engine records through here

    results = outbound_engine.send_batch([message_id])
    return results.get(message_id) or Result(Outcome.BUSY)


def account_of(
    session: Session, message: Message, conversation: Conversation
) -> tuple[IntegrationAccount, dict[str, str]]:
    """The sending account (the conversation's; the channel default for a conversation that
    never had one), decrypted. A deleted one fails the send for good, never the default."""
    account = acting_account(
        session, message.tenant_id, conversation.integration_account_id, message.channel
    )
    return account, decrypt_credentials(account)


#: The sends among ``(id, attempt)`` whose latest claim is that attempt, still pending,
#: locked to the end of the transaction (in the claim's order, message id).
_HOLD_LIVE = text(
    """
    SELECT s.message_id
      FROM outbound_sends s
      JOIN unnest(CAST(:ids AS uuid[]), CAST(:attempts AS integer[])) AS c(message_id, attempt)
        ON c.message_id = s.message_id AND c.attempt = s.attempts
     WHERE s.message_id = ANY(CAST(:ids AS uuid[])) AND s.status = 'pending'
     ORDER BY s.message_id
       FOR UPDATE OF s
    """
)


def hold_live(session: Session, attempts: Mapping[uuid.UUID, int]) -> set[uuid.UUID]:
    """Of ``{message_id: the claim's attempt}``, the sends this claim still holds; their
    rows stay locked until commit, so no other worker claims them meanwhile.

    Call before recording any outcome (sent, failed, back to pending) and record only
    these. WHY: a record late enough that its claim had run out and another worker had
    claimed the send again overwrote the live claim's state: a late ``failed`` failed a
    message the live claim had just sent, a late ``sent`` finished a send still in
    flight elsewhere (what the live claim then learned was dropped).
    """
    if not attempts:
        return set()
    rows = session.execute(
        _HOLD_LIVE, {"ids": list(attempts), "attempts": list(attempts.values())}
    ).scalars()
    return set(rows)


_FINISH = text(
    """
    UPDATE outbound_sends SET status = :status, finished_at = now()
     WHERE message_id = ANY(CAST(:ids AS uuid[]))
    """
)


def finish(session: Session, message_ids: Sequence[uuid.UUID], status: str) -> None:
    """The sends of these messages are over (``sent`` or ``failed``)."""
    session.execute(_FINISH, {"ids": list(message_ids), "status": status})


#: The batch's ``queued`` messages moved to ``sent`` with their provider ids, one statement.
#: PERF: arrays (``unnest``), not a tuple ``IN`` and a ``CASE`` of one parameter per
#: message: the text is the same whatever the batch, so neither SQLAlchemy nor psycopg
#: builds it again (that was most of the record's CPU). ``m.id = ANY`` bounds the rows
#: read to the batch's whatever plan the statistics (or their absence) lead to.
_MARK_SENT = text(
    """
    UPDATE messages m
       SET status = 'sent',
           provider_message_id = v.provider_id,
           metadata = coalesce(m.metadata, '{}'::jsonb) || jsonb_build_object(
               'status_timestamps',
               coalesce(m.metadata -> 'status_timestamps', '{}'::jsonb)
                 || jsonb_build_object('sent', CAST(:stamp AS text))),
           updated_at = now()
      FROM unnest(CAST(:tenants AS uuid[]), CAST(:ids AS uuid[]), CAST(:provider_ids AS text[]))
           AS v(tenant_id, id, provider_id)
     WHERE m.id = ANY(CAST(:ids AS uuid[])) AND m.id = v.id AND m.tenant_id = v.tenant_id
       AND m.status = 'queued'
    RETURNING m.id, m.tenant_id, m.conversation_id, m.channel, m.direction, m.sender_type,
              m.sender_id, m.content_type, m.body, m.attachments, m.template, m.status,
              m.provider_message_id, m.error_code, m.error_message, m.created_at, m.updated_at
    """
)


def record_sent_many(
    session: Session, sent: Sequence[tuple[uuid.UUID, uuid.UUID, str, str]]
) -> None:
    """Record ``(tenant_id, message_id, provider_message_id, channel)`` sends as ``sent``
    (claims the caller holds: :func:`hold_live`).

    Provider ids are unique per tenant, but a receiver may answer one id for several sends
    of a batch (the api channel's callback answering a constant, none of them recorded yet
    when each send looked): the first keeps it, the others are recorded without one. Their
    unique index refused the whole batch, and then each of them: delivered, yet queued, so
    sent again once its claim ran out.
    """
    seen: set[tuple[uuid.UUID, str]] = set()
    kept = []
    for tenant_id, message_id, provider_id, channel in sent:
        if (tenant_id, provider_id) in seen:
            provider_id = None
        else:
            seen.add((tenant_id, provider_id))
        kept.append((tenant_id, message_id, provider_id, channel))
    sent = kept
    early_statuses.lock_many(
        session,
        [
            (t, pid)
            for t, _, pid, channel in sent
            if channel in early_statuses.CHANNELS and pid is not None
        ],
    )
    moved = session.execute(
        _MARK_SENT,
        {
            "tenants": [t for t, _, _, _ in sent],
            "ids": [m for _, m, _, _ in sent],
            "provider_ids": [pid for _, _, pid, _ in sent],
            "stamp": dt.datetime.now(dt.UTC).isoformat(),
        },
    ).all()
    emit_many(
        session,
        "message.status_updated",
        [(m.tenant_id, MessageView.data(m) | {"previous_status": "queued"}) for m in moved],
        actor=Actor.system(),
    )
    campaign_tracking.on_sent_many(session, moved)
    early_statuses.apply_parked_many(
        session, [m for m in moved if m.channel in early_statuses.CHANNELS]
    )
    done = {m.id for m in moved}
    for tenant_id, message_id, provider_id, _ in sent:
        if message_id not in done:
            record_sent_one(session, tenant_id, message_id, provider_id)
    finish(session, [m for _, m, _, _ in sent], "sent")


def record_sent_one(
    session: Session, tenant_id: uuid.UUID, message_id: uuid.UUID, provider_id: str | None
) -> None:
    """A sent message that was not ``queued`` any more: the delivery rule decides."""
    message = session.scalars(
        select(Message).where(Message.tenant_id == tenant_id, Message.id == message_id)
    ).one_or_none()
    if message is None:  # deleted meanwhile (its send row went with it)
        return
    if message.channel in early_statuses.CHANNELS and provider_id is not None:
        early_statuses.lock(session, tenant_id, provider_id)
    session.refresh(message, with_for_update=True)
    message.provider_message_id = provider_id
    apply_status(session, message, "sent")
    if message.channel in early_statuses.CHANNELS:
        early_statuses.apply_parked(session, message)


#: The id the provider gave a send failed meanwhile (settled: no live claim), kept on its
#: message when it has none; flagged, so its receipts may deliver it.
_KEEP_LATE_ID = text(
    """
    UPDATE messages m
       SET provider_message_id = :provider_id,
           metadata = coalesce(m.metadata, '{}'::jsonb)
                      || jsonb_build_object(CAST(:flag AS text), true),
           updated_at = now()
      FROM outbound_sends s
     WHERE m.id = :id AND m.tenant_id = :tenant_id AND s.message_id = m.id
       AND s.status = 'failed' AND m.status = 'failed' AND m.provider_message_id IS NULL
    RETURNING m.id
    """
)


def keep_late_provider_id(
    session: Session, tenant_id: uuid.UUID, message_id: uuid.UUID, provider_id: str, channel: str
) -> bool:
    """A claim that ran out learned the provider took the message, after another claim had
    failed it (in doubt): keep the provider's id, so the receipts for it find the message
    (flagged :data:`~shared.channels.statuses.ACCEPTED_AFTER_FAILURE`: a receipt may replace
    its ``failed``), and apply those that came first. Whether it was kept.

    WHY: the late result was dropped whole (:func:`hold_live`), so the receipts Meta sent
    for a message the customer had were parked under an id nobody knew: it stayed failed.
    Nothing else is recorded: the send is settled, and its status waits for a receipt.
    """
    watched = channel in early_statuses.CHANNELS
    if watched:
        early_statuses.lock(session, tenant_id, provider_id)
    params = {
        "id": message_id,
        "tenant_id": tenant_id,
        "provider_id": provider_id,
        "flag": ACCEPTED_AFTER_FAILURE,
    }
    if session.execute(_KEEP_LATE_ID, params).first() is None:
        return False
    if watched:
        message = session.scalars(
            select(Message)
            .where(Message.tenant_id == tenant_id, Message.id == message_id)
            .with_for_update()
        ).one()
        session.refresh(message)
        early_statuses.apply_parked(session, message)
    return True


@dataclass(frozen=True, slots=True)
class Reschedule:
    """A send going back to pending for ``delay`` seconds, by the claim of ``attempt``."""

    message_id: uuid.UUID
    attempt: int
    delay: float
    error: SendFailed | None = None
    #: Not sent at all (a paused account): the claim's attempt is taken back.
    undo_attempt: bool = False


_RESCHEDULE = text(
    """
    UPDATE outbound_sends
       SET attempts = attempts - :undo,
           next_attempt_at = now() + make_interval(secs => :delay),
           sweep_at = now() + make_interval(secs => :sweep),
           last_error_code = coalesce(CAST(:code AS varchar), last_error_code),
           last_error_message = coalesce(CAST(:message AS text), last_error_message)
     WHERE message_id = :id AND status = 'pending' AND attempts = :attempt
    """
)


def reschedule(session: Session, items: Sequence[Reschedule]) -> None:
    """Put claimed sends back to pending, due after their delay (one pipelined statement).

    Only a claim that is still the latest: one that outlived its expiry, recorded after
    another worker claimed the send, made it due again mid-send, for a third to send too.
    """
    sweep_after = get_settings().outbound_sweep_after_seconds
    session.execute(
        _RESCHEDULE,
        [
            {
                "id": item.message_id,
                "attempt": item.attempt,
                "undo": 1 if item.undo_attempt else 0,
                "delay": item.delay,
                "sweep": item.delay + sweep_after,
                "code": item.error.code[:64] if item.error else None,
                "message": item.error.message if item.error else None,
            }
            for item in items
        ],
    )


def locked_message(
    session: Session, tenant_id: uuid.UUID | None, message_id: uuid.UUID
) -> Message | None:
    """The tenant's message, locked until the caller commits (None: deleted meanwhile)."""
    return session.scalars(
        select(Message)
        .where(Message.tenant_id == tenant_id, Message.id == message_id)
        .with_for_update()
    ).one_or_none()


def record_failed(
    session: Session,
    tenant_id: uuid.UUID,
    message_id: uuid.UUID,
    error: SendFailed,
    *,
    account_id: uuid.UUID | None,
    sent_credentials: str | None = None,
    attempts: int | None = None,
) -> None:
    """Fail the message with the provider's error; ``attempts`` set: retries ran out,
    so a dead letter is written too. The caller holds the claim (:func:`hold_live`).

    ``sent_credentials``: the account's stored (encrypted) credentials the send used. A
    token rejection marks the account ``error`` only while it still has them: an admin
    who reconnected while the send was out has a new token, which Meta did not refuse."""
    message = locked_message(session, tenant_id, message_id)
    if message is None:
        return
    log.warning("send %s failed for good: %s %s", message_id, error.code, error.message)
    if account_id is not None and error.code in token_rejections.TOKEN_INVALID_CODES:
        token_rejections.mark_rejected(
            session,
            Ctx.system(tenant_id),
            account_id,
            error.code,
            rejected_credentials=sent_credentials,
        )
    apply_status(
        session, message, "failed", error_code=error.code[:64], error_message=error.message
    )
    session.execute(
        update(OutboundSend)
        .where(OutboundSend.message_id == message_id)
        .values(
            status="failed",
            finished_at=func.now(),
            last_error_code=error.code[:64],
            last_error_message=error.message,
        )
    )
    if attempts is not None:
        record_dead_letter(
            session,
            message_id=str(uuid.uuid4()),
            queue_name=DEAD_LETTER_QUEUE,
            actor_name=DEAD_LETTER_ACTOR,
            args=[str(message_id)],
            kwargs={},
            options={"tenant_id": str(tenant_id)},
            retries=attempts - 1,
            error=f"gave up after {attempts} attempts: {error.code}: {error.message}",
            tenant_id=tenant_id,
        )
