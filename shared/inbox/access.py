"""Who may see which conversation: the rule every inbox query goes through.

With ``conversations.manage`` a caller sees every conversation of the tenant.
Without it, they see the conversations assigned to them and the unassigned ones
in their divisions (every unassigned one when they belong to no division). A
conversation they cannot see answers 404, exactly like one that does not exist,
and so do its messages, notes and transfers.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, and_, bindparam, exists, or_, select, true
from sqlalchemy.orm import Session

from shared.context import Ctx
from shared.db import fetch_rows
from shared.errors import NotFound
from shared.models import Conversation, DivisionMember, IntegrationAccount

#: The shapes the rule takes for a caller (see :func:`visibility`).
EVERYTHING, OWN_AND_DIVISIONS, NOTHING = "everything", "own_and_divisions", "nothing"


def visibility(ctx: Ctx) -> tuple[str, dict[str, Any]]:
    """The rule's shape for ``ctx`` and the parameters :func:`visible_bound` needs."""
    if ctx.can("conversations.manage"):
        return EVERYTHING, {"v_tenant_id": ctx.tenant_id}
    if ctx.user_id is None:
        return NOTHING, {"v_tenant_id": ctx.tenant_id}
    return OWN_AND_DIVISIONS, {"v_tenant_id": ctx.tenant_id, "v_user_id": ctx.user_id}


def _rule(shape: str, tenant_id: Any, user_id: Any) -> ColumnElement[bool]:
    in_tenant = Conversation.tenant_id == tenant_id
    if shape == EVERYTHING:
        return in_tenant
    if shape == NOTHING:
        return and_(in_tenant, ~true())
    my_divisions = select(DivisionMember.division_id).where(
        DivisionMember.tenant_id == tenant_id, DivisionMember.user_id == user_id
    )
    in_no_division = ~exists(my_divisions)
    return and_(
        in_tenant,
        or_(
            Conversation.assignee_id == user_id,
            and_(
                Conversation.assignee_id.is_(None),
                or_(Conversation.division_id.in_(my_divisions.scalar_subquery()), in_no_division),
            ),
        ),
    )


def visible(ctx: Ctx) -> ColumnElement[bool]:
    """A WHERE clause restricting ``conversations`` to what ``ctx`` may see (tenant included)."""
    return _rule(visibility(ctx)[0], ctx.tenant_id, ctx.user_id)


def visible_bound(shape: str) -> ColumnElement[bool]:
    """:func:`visible` for statements built once: the caller's ids are bind parameters.

    PERF: the inbox's hot reads are prebuilt per shape; they run with the parameters
    :func:`visibility` returns instead of building the rule on every request.
    """
    return _rule(
        shape,
        bindparam("v_tenant_id", type_=Conversation.tenant_id.type),
        bindparam("v_user_id", type_=Conversation.assignee_id.type),
    )


def visible_conversations(ctx: Ctx) -> Select[tuple[Conversation]]:
    return select(Conversation).where(visible(ctx))


@functools.cache
def _conversation_statement(shape: str, for_update: bool) -> Select[tuple[Conversation]]:
    query = select(Conversation).where(
        visible_bound(shape), Conversation.id == bindparam("conversation_id")
    )
    # NOTE: FOR NO KEY UPDATE, not FOR UPDATE: every insert of a row referencing the
    # conversation takes FOR KEY SHARE on it, which FOR UPDATE conflicts with. A change held
    # it while it locked the SLA clock; check_sla holding that clock and inserting its breach
    # deadlocked with it. Nothing here changes its id, so two changes still queue on it.
    return query.with_for_update(of=Conversation, key_share=True) if for_update else query


@functools.cache
def _visible_id_statement(shape: str) -> Select[tuple[uuid.UUID]]:
    return select(Conversation.id).where(
        visible_bound(shape), Conversation.id == bindparam("conversation_id")
    )


def get_conversation(
    session: Session, ctx: Ctx, conversation_id: uuid.UUID, *, for_update: bool = False
) -> Conversation:
    """Return a conversation the caller may see, or raise 404 (also for another tenant's)."""
    shape, params = visibility(ctx)
    conversation = session.scalars(
        _conversation_statement(shape, for_update), {**params, "conversation_id": conversation_id}
    ).one_or_none()
    if conversation is None:
        raise NotFound("Conversation not found")
    return conversation


class ConversationHead(NamedTuple):
    """What a reply needs of its conversation (``shared.inbox.messages``), as a plain row."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    contact_id: uuid.UUID
    channel: str
    status: str
    #: The conversation names an account that was deleted since (its id outlives it: no
    #: foreign key); nothing may answer the customer from another account.
    account_deleted: bool


def _account_deleted() -> ColumnElement[bool]:
    accounts = IntegrationAccount.__table__.c
    named = exists().where(
        accounts.id == Conversation.integration_account_id,
        accounts.tenant_id == Conversation.tenant_id,
    )
    return and_(Conversation.integration_account_id.is_not(None), ~named)


def head_columns() -> list[ColumnElement[Any]]:
    """The columns of a :class:`ConversationHead`, in its order."""
    plain = [getattr(Conversation, name) for name in ConversationHead._fields[:-1]]
    return [*plain, _account_deleted().label("account_deleted")]


@functools.cache
def _head_statement(shape: str) -> Select[Any]:
    return select(*head_columns()).where(
        visible_bound(shape), Conversation.id == bindparam("conversation_id")
    )


def get_conversation_head(
    session: Session, ctx: Ctx, conversation_id: uuid.UUID
) -> ConversationHead:
    """:func:`get_conversation`'s rule and 404, for a caller that only reads a few columns.

    PERF: a reply is 10 % of an inbox client's requests; loading the conversation as an
    ORM object (identity map, instance state, every column) cost ~0.5 ms CPU of the
    ~4.5 ms a reply took. This is one prebuilt statement on the driver instead.
    """
    shape, params = visibility(ctx)
    params["conversation_id"] = conversation_id
    rows = fetch_rows(session.connection(), _head_statement(shape), params)
    if not rows:
        raise NotFound("Conversation not found")
    return ConversationHead(*rows[0])


def require_visible(session: Session, ctx: Ctx, conversation_id: uuid.UUID) -> None:
    """Raise 404 unless the caller may see the conversation; loads nothing.

    PERF: for reads of what hangs off a conversation (its messages), where the
    conversation itself is not needed: one prebuilt index probe on the driver.
    """
    shape, params = visibility(ctx)
    params["conversation_id"] = conversation_id
    if not fetch_rows(session.connection(), _visible_id_statement(shape), params):
        raise NotFound("Conversation not found")
