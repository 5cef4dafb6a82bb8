"""Changes of hands: transfers to an agent or division, and human takeovers.

Each writes a ``transfers`` row (the history ``GET .../transfers`` lists), an
activity row and its events in one transaction.
"""

from __future__ import annotations

import uuid

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from shared.context import Ctx
from shared.errors import Conflict, Forbidden, ValidationFailed
from shared.inbox import conversations as convs
from shared.inbox.access import get_conversation
from shared.models import Conversation, Transfer
from shared.pagination import Page, decode_cursor, encode_cursor
from shared.timekeeping import sla

MANAGE = convs.MANAGE


def takeover(session: Session, ctx: Ctx, conversation_id: uuid.UUID) -> Conversation:
    """Make the caller the assignee and pause the AI agent.

    From an AI agent any agent who can see the conversation may take over; from
    another human assignee it needs ``conversations.manage``. With nobody to take
    over from (unassigned and no AI, or already the caller's) it is a 409: an
    unassigned conversation is claimed with ``PATCH .../assignment``.
    """
    if ctx.user_id is None:
        raise Forbidden("Only an agent can take over a conversation")
    # NOTE: the caller's row share-locked first, as an assignment's agent (live_agent): a
    # takeover committing while the caller was being deleted left the conversation, its
    # AI paused, assigned to the deleted agent (the deletion had unassigned the rest).
    try:
        convs.live_agent(session, ctx, ctx.user_id, "user")
    except ValidationFailed as exc:
        raise Forbidden("Only a live agent can take over a conversation") from exc
    conversation = get_conversation(session, ctx, conversation_id, for_update=True)
    previous = conversation.assignee_id
    if not conversation.ai_active:
        if previous is None:
            raise Conflict("Nobody to take over from: assign the conversation instead")
        if previous == ctx.user_id:
            raise Conflict("The conversation is already yours")
        if not ctx.can(MANAGE):
            raise Forbidden(f"Taking over from another agent needs the '{MANAGE}' permission")
    now = convs.states.db_now(session)  # NOTE: before the change: see convs written_once
    return convs.take_over(session, ctx, conversation, ctx.user_id, now)


def transfer(
    session: Session,
    ctx: Ctx,
    conversation_id: uuid.UUID,
    *,
    to_agent_id: uuid.UUID | None = None,
    to_division_id: uuid.UUID | None = None,
    note: str | None = None,
) -> Conversation:
    """Hand a conversation to an agent and/or a division.

    Only its assignee or a holder of ``conversations.manage`` may. A division-only
    transfer leaves it unassigned in that division's queue (conversation.unassigned);
    with an agent it is assigned to them (conversation.assigned). Targets that are
    not this tenant's live agents or divisions answer 422, never revealing rows.
    """
    if to_agent_id is None and to_division_id is None:
        raise ValidationFailed(
            "Name a target: to_agent_id and/or to_division_id",
            details=[
                {"field": "to_agent_id", "message": "required without to_division_id"},
                {"field": "to_division_id", "message": "required without to_agent_id"},
            ],
        )
    # NOTE (lock order): the agent before the conversation, as an agent's deletion locks
    # them (the agent, then their conversations). The other way round, a transfer of an
    # agent's conversation back to them (into another division) while they were being
    # deleted waited for the deletion, which waited for the conversation: a deadlock.
    if to_agent_id is not None:
        # The conversation (404) and the right (403) before the target (422), else the 422
        # told a caller with no right which ids are the workspace's agents. Read unlocked
        # (the agent is locked first) and let go, so the locked read below loads it afresh.
        seen = get_conversation(session, ctx, conversation_id)
        _require_transfer_right(ctx, seen)
        session.expire(seen)
        convs.live_agent(session, ctx, to_agent_id, "to_agent_id")
    conversation = get_conversation(session, ctx, conversation_id, for_update=True)
    _require_transfer_right(ctx, conversation)
    if to_division_id is not None:
        convs.division_to_move_into(session, ctx, conversation, to_division_id, "to_division_id")
    from_agent, from_division = conversation.assignee_id, conversation.division_id
    new_division = to_division_id if to_division_id is not None else from_division
    if to_agent_id == from_agent and new_division == from_division:
        raise Conflict("The conversation is already there")
    # A transfer to a person takes the conversation from its AI agent, as a takeover does.
    from_ai = conversation.ai_active
    pauses_ai = from_ai and to_agent_id is not None
    now = convs.states.db_now(session)  # NOTE: before the change: see convs written_once
    row = convs.add_transfer(
        session,
        ctx,
        conversation,
        kind="transfer",
        from_agent_id=from_agent,
        from_division_id=from_division,
        from_ai=from_ai,
        to_agent_id=to_agent_id,
        to_division_id=to_division_id,
        note=note,
    )
    conversation.assignee_id = to_agent_id
    conversation.division_id = new_division
    if pauses_ai:
        conversation.ai_active = False
    conversation.updated_at = now
    session.flush()
    if new_division != from_division:
        sla.conditions_changed(session, conversation, now=conversation.updated_at)
    moved = {
        "from_agent_id": convs.json_id(from_agent),
        "from_division_id": convs.json_id(from_division),
        "to_agent_id": convs.json_id(to_agent_id),
        "to_division_id": convs.json_id(to_division_id),
        "note": note,
    }
    convs.record_change(
        session,
        ctx,
        "conversation.transferred",
        conversation,
        {"assignee_id": convs.json_id(from_agent), "division_id": convs.json_id(from_division)},
        {"assignee_id": convs.json_id(to_agent_id), "division_id": convs.json_id(new_division)},
    )
    convs.emit_change(
        session, ctx, "conversation.transferred", conversation, transfer_id=str(row.id), **moved
    )
    if pauses_ai:
        convs.announce_takeover(
            session, ctx, conversation, previous=from_agent, from_ai=True, transfer=row
        )
    if to_agent_id != from_agent:
        kind = "conversation.assigned" if to_agent_id else "conversation.unassigned"
        convs.emit_change(
            session, ctx, kind, conversation, previous_assignee_id=convs.json_id(from_agent)
        )
    return conversation


def _require_transfer_right(ctx: Ctx, conversation: Conversation) -> None:
    """Only the conversation's assignee or a holder of ``conversations.manage`` transfers it."""
    if not ctx.can(MANAGE) and not (
        conversation.assignee_id is not None and ctx.is_self(conversation.assignee_id)
    ):
        raise Forbidden(f"Only the assigned agent or '{MANAGE}' may transfer this conversation")


def list_transfers(
    session: Session,
    ctx: Ctx,
    conversation_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None = None,
) -> Page[Transfer]:
    """The conversation's transfers and takeovers, oldest first (a history reads forward)."""
    conversation = get_conversation(session, ctx, conversation_id)
    query = select(Transfer).where(
        Transfer.tenant_id == ctx.tenant_id, Transfer.conversation_id == conversation.id
    )
    if cursor:
        after_created, after_id = decode_cursor(cursor)
        query = query.where(
            or_(
                Transfer.created_at > after_created,
                and_(Transfer.created_at == after_created, Transfer.id > after_id),
            )
        )
    # PERF: ix_transfers_conversation (tenant_id, conversation_id, created_at, id) in order.
    rows = session.scalars(query.order_by(Transfer.created_at, Transfer.id).limit(limit + 1)).all()
    items = rows[:limit]
    next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
    return Page(items, next_cursor)
