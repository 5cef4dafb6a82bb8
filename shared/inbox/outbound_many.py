"""Many outbound messages in one transaction, by multi-row statements (scheduled sends).

The same rules and writes as :func:`shared.inbox.messages.create_outbound_message`, made
for a batch: each draft passes the same refusals (resolved conversation, a template that
is not ready, WhatsApp's 24-hour window, the plan's message limit) and a refused draft
gets its :class:`~shared.errors.DomainError` back while the others go on. The accepted
ones are written together: one INSERT of the messages, the activity rows and the
``message.created`` events in batched statements (so ``dispatch_events`` and the outbound
engine get them as batches too), and last, one counter UPDATE for all their conversations
(:mod:`.conversation_counts`, shared with the campaigns' writer), in conversation order.

PERF: a conversation's row lock is taken just before the writes (a human's drafts: their
resolved check is made under it) and by the counter UPDATE, the last write before the
caller's commit, so concurrent batches that share a conversation wait for each other only
that long (taken first, as a per-message loop does, a 16-thread worker serialised on it).
Attachments are not supported here (no caller needs them).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from shared import activity
from shared.billing import usage as billing_usage
from shared.channels.templates import sending as template_sending
from shared.context import Ctx
from shared.errors import Conflict, DomainError, ValidationFailed
from shared.events import emit_many
from shared.inbox import conversation_counts
from shared.inbox import conversations as convs
from shared.inbox.access import ConversationHead
from shared.inbox.divisions import ANNOUNCED_ONE_BY_ONE
from shared.inbox.messages import (
    WHATSAPP_WINDOW,
    WindowClosed,
    as_loaded,
    check_template_channel,
    preview,
)
from shared.models import Conversation, Message
from shared.realtime import feed
from shared.schemas.messages import MessageView
from shared.timekeeping import sla


@dataclass(slots=True)
class Draft:
    """One message to create: by ``ctx`` (its author), on a tenant-scoped ``conversation``."""

    ctx: Ctx
    conversation: Conversation | ConversationHead
    body: str | None = None
    template: dict[str, Any] | None = None
    sender_type: str = "user"
    message_id: uuid.UUID = field(default_factory=uuid.uuid4)


#: NOTE: clock_timestamp, per row: the messages of a batch keep their order.
_INSERT = (
    insert(Message.__table__)
    .values(created_at=func.clock_timestamp(), updated_at=func.clock_timestamp())
    .returning(
        Message.__table__.c.id,
        Message.__table__.c.created_at,
        Message.__table__.c.updated_at,
        sort_by_parameter_order=True,
    )
)


def create_outbound_messages(
    session: Session, drafts: Sequence[Draft]
) -> list[Message | DomainError]:
    """Each draft's ``queued`` message, or the refusal it got; in the drafts' order."""
    outcomes: list[Message | DomainError | None] = [None] * len(drafts)
    checked: list[tuple[int, Draft, str]] = []
    for index, draft in enumerate(drafts):
        try:
            checked.append((index, *_checked(session, draft)))
        except DomainError as error:
            outcomes[index] = error
    closed = _closed_windows(session, [d for _, d, _ in checked if _needs_window(d)])
    resolved, answered_by_ai = _lock_human_drafts(
        session, [d for _, d, s in checked if s == "user"]
    )
    accepted: list[tuple[int, Draft, str]] = []
    for index, draft, sender_type in checked:
        if sender_type == "user" and draft.conversation.id in resolved:
            draft.conversation = _as_resolved(draft.conversation)
            outcomes[index] = Conflict("The conversation is resolved; reopen it to reply")
            continue
        if draft.conversation.id in closed and _needs_window(draft):
            outcomes[index] = WindowClosed(
                "The WhatsApp 24-hour window is closed: the contact has not written to this"
                " number in the last 24 hours, send a template instead"
            )
            continue
        try:
            # Last, after every refusal: a reservation is only taken by a send that happens.
            billing_usage.check_message_send(session, draft.ctx.tenant_id)
        except DomainError as error:
            outcomes[index] = error
            continue
        accepted.append((index, draft, sender_type))
    for index, message in zip(
        [index for index, _, _ in accepted], _write(session, accepted), strict=True
    ):
        outcomes[index] = message
    paused = {
        d.conversation.id: d.ctx
        for _, d, s in accepted
        if s == "user" and d.conversation.id in answered_by_ai
    }
    _announce_ai_paused(session, paused)
    return outcomes  # type: ignore[return-value]


def _checked(session: Session, draft: Draft) -> tuple[Draft, str]:
    """``create_outbound_message``'s refusals before the window; the sender type to store."""
    if draft.template is not None and draft.body is not None:
        raise ValidationFailed.field("template", "a template is sent alone")
    if draft.template is None and draft.body is None:
        raise ValidationFailed.field("body", "send a body or a template")
    sender_type = "system" if draft.ctx.actor.type == "system" else draft.sender_type
    conversation = draft.conversation
    check_template_channel(conversation.channel, draft.template)
    if sender_type == "user" and conversation.status == "resolved":
        raise Conflict("The conversation is resolved; reopen it to reply")
    if draft.template is not None and conversation.channel == "whatsapp":
        draft.template = template_sending.prepare_send(
            session, draft.ctx.tenant_id, conversation.id, draft.template
        )
    return draft, sender_type


#: Lock the conversations (of ``:ids``, in id order: batches never deadlock) and name the
#: resolved ones and those their AI agent answers.
_LOCK_RESOLVED = text(
    """
    SELECT id, status = 'resolved' AS resolved, ai_active
      FROM conversations
     WHERE id = ANY(CAST(:ids AS uuid[]))
     ORDER BY id
       FOR NO KEY UPDATE
    """
)


def _lock_human_drafts(
    session: Session, drafts: list[Draft]
) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """The human drafts' conversations resolved by now, and those the AI answers; their
    rows locked until commit.

    WHY: the drafts' conversations were read unlocked; a resolution committed since then
    must win, as it does over a single reply (``shared.inbox.messages._count_update``):
    without the lock the message was stored, counted and sent on the resolved row. The
    AI's, read under the same lock, are those the counter UPDATE takes from the AI (to be
    announced: :func:`_announce_ai_paused`).
    """
    ids = sorted({d.conversation.id for d in drafts})
    if not ids:
        return set(), set()
    rows = session.execute(_LOCK_RESOLVED, {"ids": ids}).all()
    return {row.id for row in rows if row.resolved}, {row.id for row in rows if row.ai_active}


def _announce_ai_paused(session: Session, paused: dict[uuid.UUID, Ctx]) -> None:
    """Tell the streams which conversations a person's message took from their AI agent
    (``paused``: each one's author), as a single reply does.

    Per conversation up to ``divisions.ANNOUNCED_ONE_BY_ONE`` of a tenant; past that, one
    ``reset`` of the tenant's streams (their clients refetch), so a large batch cannot
    flood the streams (with ``scheduled_messages.JOB_SIZE`` sends per call, a bound never
    reached today).
    """
    by_tenant: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for conversation_id, ctx in paused.items():
        by_tenant[ctx.tenant_id].append(conversation_id)
    for tenant_id, ids in by_tenant.items():
        if len(ids) > ANNOUNCED_ONE_BY_ONE:
            feed.announce_reset(session, tenant_id)
        else:
            _announce_each(session, tenant_id, {i: paused[i] for i in ids})


def _announce_each(session: Session, tenant_id: uuid.UUID, paused: dict[uuid.UUID, Ctx]) -> None:
    """One ``conversation.ai_changed`` per conversation, its view read after the UPDATE."""
    rows = session.scalars(
        select(Conversation)
        .where(Conversation.tenant_id == tenant_id, Conversation.id.in_(list(paused)))
        .order_by(Conversation.id)
        .execution_options(populate_existing=True)
    )
    for conversation in rows:
        convs.announce_ai_change(
            session,
            paused[conversation.id],
            convs.view(conversation),
            conversation.ai_agent_id,
            conversation.updated_at,
        )


def _as_resolved(conversation: Conversation | ConversationHead):
    """A head (a snapshot) brought up to date, so its caller names the refusal's reason."""
    if isinstance(conversation, ConversationHead):
        return conversation._replace(status="resolved")
    return conversation


def _needs_window(draft: Draft) -> bool:
    return draft.conversation.channel == "whatsapp" and draft.template is None


#: The conversations (of ``:ids``) whose contact wrote to their number in the last 24 hours:
#: :func:`shared.inbox.messages.whatsapp_window_open`'s rule, for a batch in one statement.
_WINDOWS_OPEN = text(
    """
    SELECT c.id
      FROM conversations c
     WHERE c.id = ANY(CAST(:ids AS uuid[]))
       AND EXISTS (
           SELECT 1
             FROM conversations o
            WHERE o.tenant_id = c.tenant_id AND o.contact_id = c.contact_id
              AND (o.integration_account_id = c.integration_account_id
                   OR o.integration_account_id IS NULL OR c.integration_account_id IS NULL)
              AND o.last_inbound_at >= now() - CAST(:window AS interval))
    """
)


def _closed_windows(session: Session, drafts: list[Draft]) -> set[uuid.UUID]:
    """The drafts' conversations whose contact has not written to their number for 24 h.

    Meta keeps the window per business number: the contact's latest inbound on any number
    (``contacts.last_inbound_at``) let a send through that Meta then refused (131047).
    """
    ids = {d.conversation.id for d in drafts}
    if not ids:
        return set()
    open_ = session.scalars(_WINDOWS_OPEN, {"ids": list(ids), "window": WHATSAPP_WINDOW})
    return ids - set(open_)


def _write(session: Session, accepted: list[tuple[int, Draft, str]]) -> list[Message]:
    if not accepted:
        return []
    # NOTE: pending ORM changes first, as create_outbound_message does.
    session.flush()
    values = [_values(draft, sender_type) for _, draft, sender_type in accepted]
    stamps = session.execute(_INSERT, values).all()
    messages = [
        as_loaded(session, row, created_at, updated_at)
        for row, (_, created_at, updated_at) in zip(values, stamps, strict=True)
    ]
    _record(session, [draft for _, draft, _ in accepted], messages)
    _count(session, [(draft, s) for _, draft, s in accepted], messages)
    return messages


def _values(draft: Draft, sender_type: str) -> dict[str, Any]:
    ctx, conversation = draft.ctx, draft.conversation
    human = sender_type == "user"
    return {
        "id": draft.message_id,
        "tenant_id": ctx.tenant_id,
        "conversation_id": conversation.id,
        "channel": conversation.channel,
        "direction": "outbound",
        "sender_type": sender_type,
        "sender_id": ctx.user_id if human else None if sender_type == "system" else ctx.actor.id,
        "content_type": "template" if draft.template is not None else "text",
        "body": draft.body,
        "attachments": [],
        "template": draft.template,
        "status": "queued",
    }


def _record(session: Session, drafts: list[Draft], messages: list[Message]) -> None:
    """The activity rows and ``message.created`` events, batched per author."""
    by_ctx: dict[int, tuple[Ctx, list[Message]]] = {}
    for draft, message in zip(drafts, messages, strict=True):
        by_ctx.setdefault(id(draft.ctx), (draft.ctx, []))[1].append(message)
    for ctx, written in by_ctx.values():
        data = [MessageView.data(message) for message in written]
        changes = [(message.id, None, d) for message, d in zip(written, data, strict=True)]
        activity.record_many(session, ctx, "message.created", "message", changes)
        emit_many(session, "message.created", [(ctx.tenant_id, d) for d in data], actor=ctx.actor)


def _count(session: Session, drafts: list[tuple[Draft, str]], messages: list[Message]) -> None:
    """The conversations counted in one UPDATE (:mod:`.conversation_counts`); then the SLA
    clock of each a human wrote on."""
    by_conversation: dict[uuid.UUID, list[tuple[Draft, str, Message]]] = defaultdict(list)
    for (draft, sender_type), message in zip(drafts, messages, strict=True):
        by_conversation[draft.conversation.id].append((draft, sender_type, message))
    counted: list[conversation_counts.Counted] = []
    for conversation_id, sent in by_conversation.items():
        last_draft, _, last = sent[-1]
        human_at = [m.created_at for _, s, m in sent if s == "user"]
        counted.append(
            conversation_counts.Counted(
                last_draft.ctx.tenant_id,
                conversation_id,
                len(sent),
                last.created_at,
                preview(last_draft.body, last_draft.template),
                min(human_at, default=None),
            )
        )
    conversation_counts.count_many(session, counted)
    for conversation_id in sorted(by_conversation):
        sent = by_conversation[conversation_id]
        last_draft = sent[-1][0]
        if isinstance(last_draft.conversation, Conversation):
            session.expire(last_draft.conversation)
        human_at = [m.created_at for _, s, m in sent if s == "user"]
        if human_at:
            sla.agent_replied(session, last_draft.ctx.tenant_id, conversation_id, min(human_at))
