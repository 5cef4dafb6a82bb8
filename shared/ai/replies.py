"""Scheduling AI replies: the dispatch target, the settle window, the sweeper.

- :func:`target` runs in ``dispatch_event``'s transaction. For an inbound
  ``message.created`` on a conversation an active AI agent owns now
  (:func:`shared.ai.ownership.owner_of`), it claims the conversation for that agent
  if needed and upserts the conversation's one in-flight :class:`AiReply`: a new
  ``pending`` row, or the pending one with its settle window moved to the newest
  message. After commit ``ai_reply(reply_id)`` is enqueued with the window as its
  delay, so a burst from one contact is answered once, reading all of it.
- A reply already ``generating`` is left alone; the message is picked up by a
  follow-up reply when that one settles (:mod:`shared.ai.generation`).
- :func:`sweep` (a scheduler job) re-drives pending replies whose job was lost and
  ``generating`` ones whose worker died (back to ``pending``; the attempts count,
  and past ``AI_REPLY_MAX_ATTEMPTS`` the reply hands the conversation off).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from psycopg.errors import LockNotAvailable
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shared import dispatch_facts
from shared.after_commit_queue import AfterCommitQueue
from shared.ai import ownership
from shared.config import get_settings
from shared.context import Ctx
from shared.events import Actor
from shared.inbox import conversations as convs
from shared.models import Conversation, OutboxEvent
from shared.models.ai import AiReply

log = logging.getLogger(__name__)

TARGET_NAME = "ai"

#: ``[(reply_id, delay_seconds, tenant_id), ...]`` -> ``ai_reply`` messages, after commit.
QUEUE: AfterCommitQueue[tuple[uuid.UUID, float, uuid.UUID]] = AfterCommitQueue(
    "omnistream.ai_replies", "AI replies"
)
set_enqueuer = QUEUE.set_enqueuer
enqueue = QUEUE.enqueue
enqueue_after_commit = QUEUE.enqueue_after_commit

#: One pending reply per conversation: a new one, or the pending one moved forward.
#: A ``generating`` one conflicts too but is not updated (no row returned).
_UPSERT_PENDING = text(
    """
    INSERT INTO ai_replies AS r (id, tenant_id, conversation_id, ai_agent_id,
                                 last_message_id, status, due_at)
    SELECT :id, :tenant_id, :conversation_id, :agent_id, m.id, 'pending',
           now() + make_interval(secs => :settle)
      FROM messages m
     WHERE m.id = :message_id AND m.tenant_id = :tenant_id
    ON CONFLICT (conversation_id) WHERE status IN ('pending', 'generating')
    DO UPDATE SET last_message_id = excluded.last_message_id,
                  ai_agent_id = excluded.ai_agent_id,
                  due_at = greatest(r.due_at, excluded.due_at),
                  updated_at = now()
          WHERE r.status = 'pending'
    RETURNING r.id, greatest(extract(epoch FROM r.due_at - clock_timestamp()), 0) AS delay
    """
)


def target(session: Session, event: OutboxEvent) -> None:
    """The dispatch target: an inbound message on an AI-owned conversation owes a reply."""
    if event.type != "message.created":
        return
    data = event.data or {}
    if data.get("direction") != "inbound" or not _tenant_has_ai(session, event.tenant_id):
        return
    try:
        conversation_id = uuid.UUID(str(data["conversation_id"]))
        message_id = uuid.UUID(str(data["id"]))
    except (KeyError, ValueError):
        # NOTE: an event without the message's ids (a hand-written one) owes no reply;
        # raising here would fail every other target's work on the event too.
        return
    schedule(session, event.tenant_id, conversation_id, message_id, str(data.get("body") or ""))


def _tenant_has_ai(session: Session, tenant_id: uuid.UUID) -> bool:
    """Whether the tenant has an active AI agent (:mod:`shared.dispatch_facts`).

    PERF: finding a conversation's owner costs two queries per inbound message; for a
    tenant without AI agents (most of them) no owner can exist.
    """
    return dispatch_facts.of(session, tenant_id).has_ai_agent


def schedule(
    session: Session,
    tenant_id: uuid.UUID,
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    body: str,
) -> uuid.UUID | None:
    """Owe the conversation a reply if an AI agent owns it now; the reply's id, or None.

    PERF: on dispatch's hot path: a read of the conversation, one query for its
    assignments, the upsert. The conversation is locked only to claim it (its first
    AI message, or one routed to another agent); a takeover racing the read is caught
    when the reply settles.

    NOTE: lock order (:mod:`shared.ai.generation`): a claim locks the conversation's
    in-flight reply before the conversation, as a settle does; the upsert then conflicts
    with a row it holds already.
    """
    conversation = session.scalars(
        select(Conversation).where(
            Conversation.id == conversation_id, Conversation.tenant_id == tenant_id
        )
    ).one_or_none()
    if conversation is None or conversation.status == "resolved":
        return None
    owner = ownership.owner_of(session, conversation, body)
    if owner is None:
        return None
    if not _owned_by(conversation, owner):
        read = _ownership_fields(conversation)
        _lock_for_claim(session, tenant_id, conversation)
        # PERF: the owner is asked again only if the conversation changed before the lock.
        if _ownership_fields(conversation) != read:
            owner = ownership.owner_of(session, conversation, body)
            if owner is None:
                return None
        claim(session, tenant_id, owner, conversation)
    row = session.execute(
        _UPSERT_PENDING,
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant_id,
            "conversation_id": conversation_id,
            "agent_id": owner.agent_id,
            "message_id": message_id,
            "settle": max(float(owner.settle_seconds or 0), 0.0),
        },
    ).one_or_none()
    if row is None:
        return None  # a reply is being generated; it is followed up when it settles
    enqueue_after_commit(session, [(row.id, float(row.delay), tenant_id)])
    return row.id


#: Times a claim takes its locks again because a reply appeared while it waited.
CLAIM_LOCK_ATTEMPTS = 5


class ClaimContended(RuntimeError):
    """A claim found a new reply locked by another transaction every time it took its
    locks; the dispatch fails and is retried, as any failed dispatch is."""


def _lock_for_claim(session: Session, tenant_id: uuid.UUID, conversation: Conversation) -> None:
    """Lock the conversation's in-flight reply, if any, then the conversation (refreshed).

    WHY: the upsert locks that reply too (ON CONFLICT DO UPDATE locks the row it meets,
    even a ``generating`` one it leaves alone). Taken after the conversation, it waited
    for a settle (or another claim) holding the reply while that waited for the
    conversation: a deadlock. A reply can appear while this waits for the conversation
    (another dispatch's, committed meanwhile): the conversation is then given back (a
    savepoint rolled back releases the row locks taken after it) and both are taken again,
    in order, rather than waiting for that reply while holding the conversation.
    """
    for _ in range(CLAIM_LOCK_ATTEMPTS):
        _lock_in_flight_reply(session, tenant_id, conversation.id)
        savepoint = session.begin_nested()
        # NOTE: FOR NO KEY UPDATE: a claim into a division re-times the SLA clock, and
        # check_sla holds a clock while inserting its breach, whose foreign-key check
        # (FOR KEY SHARE on the conversation) FOR UPDATE blocked: a deadlock. No claim
        # changes the conversation's id.
        session.refresh(conversation, with_for_update={"key_share": True})
        try:
            _lock_in_flight_reply(session, tenant_id, conversation.id, nowait=True)
        except OperationalError as exc:
            if not isinstance(exc.orig, LockNotAvailable):
                raise
            savepoint.rollback()
            continue
        savepoint.commit()
        return
    raise ClaimContended(f"conversation {conversation.id}: its AI reply kept changing hands")


def _lock_in_flight_reply(
    session: Session, tenant_id: uuid.UUID, conversation_id: uuid.UUID, *, nowait: bool = False
) -> None:
    """Lock the conversation's pending or generating reply, if any (see _lock_for_claim)."""
    session.execute(
        select(AiReply.id)
        .where(
            AiReply.tenant_id == tenant_id,
            AiReply.conversation_id == conversation_id,
            AiReply.status.in_(("pending", "generating")),
        )
        .with_for_update(nowait=nowait)
    ).all()


def _ownership_fields(conversation: Conversation) -> tuple:
    """What :func:`ownership.owner_of` reads of the conversation."""
    return (
        conversation.ai_agent_id,
        conversation.ai_active,
        conversation.assignee_id,
        conversation.status,
        conversation.channel,
        conversation.integration_account_id,
        conversation.division_id,
    )


def _owned_by(conversation: Conversation, owner: ownership.Owner) -> bool:
    return (
        conversation.ai_agent_id == owner.agent_id
        and conversation.ai_active
        and (owner.division_id is None or conversation.division_id is not None)
    )


def claim(
    session: Session, tenant_id: uuid.UUID, owner: ownership.Owner, conversation: Conversation
) -> None:
    """Make the owner the conversation's AI agent (audited; nothing when it already is)."""
    changes: dict[str, object] = {}
    if conversation.ai_agent_id != owner.agent_id:
        changes["ai_agent_id"] = owner.agent_id
        changes["ai_turns"] = 0
    if not conversation.ai_active:
        changes["ai_active"] = True
    if owner.division_id is not None and conversation.division_id is None:
        changes["division_id"] = owner.division_id
    if changes:
        ctx = Ctx.system(tenant_id, actor=Actor("ai_agent", owner.agent_id))
        convs.apply_fields(session, ctx, conversation, changes)


_SWEEP = text(
    """
    WITH due AS MATERIALIZED (
        SELECT id, tenant_id FROM ai_replies r
         WHERE ((status = 'pending'
                 AND due_at <= now() - make_interval(secs => :pending_after))
             OR (status = 'generating'
                 AND updated_at <= now() - make_interval(secs => :generating_after)))
           AND EXISTS (SELECT 1 FROM tenants t WHERE t.id = r.tenant_id AND t.status = 'active')
         ORDER BY due_at
         LIMIT :batch
         FOR UPDATE SKIP LOCKED
    )
    UPDATE ai_replies r
       SET status = 'pending', due_at = now(), updated_at = now()
      FROM due
     WHERE r.id = due.id
    RETURNING r.id, r.tenant_id
    """
)


def sweep(session: Session, *, batch: int = 500) -> int:
    """Re-enqueue replies stuck pending past due or generating too long; return how many.

    A suspended tenant's replies wait for its reactivation, as the other sweeps' rows do
    (API.md: scheduler jobs skip it). WHY: re-driven, each was sent again every run (5 s)
    for the tenant gate to drop, logged as work lost.
    """
    settings = get_settings()
    rows = list(
        session.execute(
            _SWEEP,
            {
                "pending_after": settings.ai_sweep_after_seconds,
                "generating_after": settings.ai_generating_stale_seconds,
                "batch": batch,
            },
        )
    )
    if rows:
        log.warning("re-driving %d AI repl(ies) whose job or worker was lost", len(rows))
        enqueue_after_commit(session, [(r.id, 0.0, r.tenant_id) for r in rows])
    return len(rows)


def requeue(session: Session, tenant_id: uuid.UUID, reply_ids: Sequence[uuid.UUID]) -> None:
    """Send these pending replies' jobs now-ish, after commit (follow-ups)."""
    enqueue_after_commit(session, [(i, 0.0, tenant_id) for i in reply_ids])
