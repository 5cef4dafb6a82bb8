"""Who may see which conversation: the rule every inbox query goes through.

With ``conversations.manage`` a caller sees every conversation of the tenant.
Without it, they see the conversations assigned to them and the unassigned ones
in their divisions (every unassigned one when they belong to no division). A
conversation they cannot see answers 404, exactly like one that does not exist,
and so do its messages, notes and transfers.
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, Select, and_, exists, or_, select, true
from sqlalchemy.orm import Session

from shared.context import Ctx
from shared.errors import NotFound
from shared.models import Conversation, DivisionMember


def visible(ctx: Ctx) -> ColumnElement[bool]:
    """A WHERE clause restricting ``conversations`` to what ``ctx`` may see (tenant included)."""
    in_tenant = Conversation.tenant_id == ctx.tenant_id
    if ctx.can("conversations.manage"):
        return in_tenant
    if ctx.user_id is None:
        return and_(in_tenant, ~true())
    my_divisions = select(DivisionMember.division_id).where(
        DivisionMember.tenant_id == ctx.tenant_id, DivisionMember.user_id == ctx.user_id
    )
    in_no_division = ~exists(my_divisions)
    return and_(
        in_tenant,
        or_(
            Conversation.assignee_id == ctx.user_id,
            and_(
                Conversation.assignee_id.is_(None),
                or_(Conversation.division_id.in_(my_divisions.scalar_subquery()), in_no_division),
            ),
        ),
    )


def visible_conversations(ctx: Ctx) -> Select[tuple[Conversation]]:
    return select(Conversation).where(visible(ctx))


def get_conversation(
    session: Session, ctx: Ctx, conversation_id: uuid.UUID, *, for_update: bool = False
) -> Conversation:
    """Return a conversation the caller may see, or raise 404 (also for another tenant's)."""
    query = visible_conversations(ctx).where(Conversation.id == conversation_id)
    if for_update:
        query = query.with_for_update(of=Conversation)
    conversation = session.scalars(query).one_or_none()
    if conversation is None:
        raise NotFound("Conversation not found")
    return conversation
