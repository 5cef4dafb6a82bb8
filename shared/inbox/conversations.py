"""Conversations: the inbox list, assignment, status, read state and tags.

Every query goes through :mod:`shared.inbox.access` (visibility and tenant);
every change is logged and emits its catalogue event with the conversation's
public representation (``ConversationView``) plus the fields API.md names.
The ``apply_*`` functions change one already-locked conversation and are shared
with bulk actions; the public functions load, authorize and call them.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    Select,
    Update,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared import activity
from shared.channels import read_receipts
from shared.context import Ctx
from shared.db import fetch_rows
from shared.errors import Forbidden, NotFound, ValidationFailed
from shared.events import emit
from shared.inbox import contacts, states
from shared.inbox.access import (
    EVERYTHING,
    OWN_AND_DIVISIONS,
    get_conversation,
    visibility,
    visible_bound,
)
from shared.models import Contact, Conversation, ConversationRead, Division, Transfer, User
from shared.pagination import CutThenJoin, Page, fetch_page, keyset_statement
from shared.realtime import feed
from shared.schemas.inbox import ConversationView
from shared.sql import contains_pattern
from shared.timekeeping import sla

MANAGE = "conversations.manage"
#: Tags a conversation may carry.
MAX_TAGS = 20
MAX_TAG_LENGTH = 64
PRIORITIES = ("low", "normal", "high", "urgent")

# APPSEC: tags end up in webhooks, automation conditions and UIs; letters (any
# script), digits, space and a few separators only: no quotes, commas or markup.
_TAG_SHAPE = re.compile(r"^\w[\w .:/+#-]*$")
_SPACES = re.compile(r"\s+")

# PERF: exactly the expression of ix_contacts_search_trgm, so the planner can use it.
_CONTACT_SEARCH = literal_column(
    "(coalesce(contacts.name, '') || ' ' || coalesce(contacts.phone, '') || ' '"
    " || coalesce(contacts.email, ''))"
)


def normalize_tag(raw: str) -> str:
    """Trim, lower-case and collapse spaces; raise ``ValueError`` for a tag we refuse."""
    tag = _SPACES.sub(" ", raw.strip()).lower()
    if not 1 <= len(tag) <= MAX_TAG_LENGTH:
        raise ValueError(f"a tag has 1 to {MAX_TAG_LENGTH} characters")
    if not _TAG_SHAPE.match(tag):
        raise ValueError("a tag has letters, digits, spaces and . : / + # - _ only")
    return tag


def view(conversation: Conversation) -> dict[str, Any]:
    """The conversation's public representation: what events carry."""
    return ConversationView.data(conversation)


# ---------------------------------------------------------------- reads


def _unread():
    return func.greatest(
        Conversation.inbound_count - func.coalesce(ConversationRead.read_inbound_count, 0), 0
    )


def _item_columns(conversations) -> Select[Any]:
    """A list item's columns from ``conversations`` (the table, or a page cut from it): the
    view's columns, the contact ref and the caller's unread count (``reader_id``)."""
    c = conversations.c
    return (
        select(
            *(c[name] for name in ConversationView.model_fields),
            Contact.name.label("contact_name"),
            Contact.channel.label("contact_channel"),
            Contact.phone.label("contact_phone"),
            Contact.email.label("contact_email"),
            Contact.avatar_url.label("contact_avatar_url"),
            func.greatest(
                c.inbound_count - func.coalesce(ConversationRead.read_inbound_count, 0), 0
            ).label("unread_count"),
        )
        .select_from(conversations)
        .join(Contact, Contact.id == c.contact_id)
        .outerjoin(
            ConversationRead,
            and_(
                ConversationRead.conversation_id == c.id,
                ConversationRead.user_id
                == bindparam("reader_id", type_=ConversationRead.user_id.type),
            ),
        )
    )


def _item_query(shape: str) -> Select[Any]:
    """One row per visible conversation: its columns, its contact ref and the caller's unread.

    Built once per visibility shape: the caller's ids are bind parameters
    (``visibility(ctx)`` plus ``reader_id``).
    """
    return _item_columns(Conversation.__table__).where(visible_bound(shape))


def _page_query(shape: str) -> Select[Any]:
    """The visible conversations' columns a list item reads, without the joins."""
    table = Conversation.__table__
    columns = [table.c[name] for name in ConversationView.model_fields]
    return select(*columns, table.c.inbound_count).where(visible_bound(shape))


def _item_params(ctx: Ctx) -> dict[str, Any]:
    _shape_name, params = visibility(ctx)
    return {**params, "reader_id": ctx.user_id}


#: The contact's columns of a list item (``contact_<name>``), in ``ContactRef`` order.
_CONTACT_REF = ("name", "channel", "phone", "email", "avatar_url")


@functools.cache
def _row_shaper(keys: tuple[str, ...]) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """A row of :func:`_item_query` (columns ``keys``) as a ``ConversationListItem`` dict.

    PERF: an inbox page is 25 of these: one pass per row, the view's columns, then the
    unread count and the contact, instead of a dict of every column and five pops.
    """
    first_contact = keys.index("contact_name")
    view_keys = keys[:first_contact]
    contact_id, unread = keys.index("contact_id"), keys.index("unread_count")
    name, channel, phone, email, avatar = (keys.index(f"contact_{k}") for k in _CONTACT_REF)

    def shape(row: Sequence[Any]) -> dict[str, Any]:
        item = dict(zip(view_keys, row, strict=False))  # the contact's columns follow
        item["unread_count"] = row[unread]
        item["contact"] = {
            "id": row[contact_id],
            "name": row[name],
            "channel": row[channel],
            "phone": row[phone],
            "email": row[email],
            "avatar_url": row[avatar],
        }
        return item

    return shape


#: Filters of the list that compare a column with the value given.
_EQUALS = {
    "status": Conversation.status,
    "channel": Conversation.channel,
    "division_id": Conversation.division_id,
    "contact_id": Conversation.contact_id,
    "integration_account_id": Conversation.integration_account_id,
}


@functools.lru_cache(maxsize=256)
def _list_statement(
    shape: str, equals: tuple[str, ...], assignee: str | None, others: tuple[str, ...]
):
    """The page statements (without and with a cursor) for one combination of filters.

    PERF: the inbox list is the busiest request an inbox client makes. Each
    combination is built once with bind parameters (a client uses a handful),
    so a request skips building the query and computing its cache key.
    """
    # NOTE: a read-state filter needs the read join below the LIMIT; every other filter
    # is on the conversation, so its page is cut before the joins (CutThenJoin).
    joined_filter = "unread" in others or "read" in others
    query = _item_query(shape) if joined_filter else _page_query(shape)
    for name in equals:
        column = _EQUALS[name]
        query = query.where(column == bindparam(name, type_=column.type))
    if assignee == "me":
        query = query.where(Conversation.assignee_id == bindparam("reader_id"))
    elif assignee == "none":
        query = query.where(Conversation.assignee_id.is_(None))
    elif assignee is not None:
        query = query.where(Conversation.assignee_id == bindparam("assignee_id"))
    if "tag" in others:
        query = query.where(
            Conversation.tags.contains(bindparam("tags", type_=Conversation.tags.type))
        )
    if "q" in others:
        # PERF: a semi-join the planner can drive from the trigram index (rare terms)
        # or probe while walking conversations newest first (common ones).
        matching = select(Contact.id).where(
            Contact.tenant_id == bindparam("v_tenant_id"),
            _CONTACT_SEARCH.ilike(bindparam("pattern", type_=Contact.name.type)),
        )
        query = query.where(Conversation.contact_id.in_(matching))
    if "updated_since" in others:
        query = query.where(
            Conversation.updated_at
            >= bindparam("updated_since", type_=Conversation.updated_at.type)
        )
    if "unread" in others:
        query = query.where(_unread() > 0)
    elif "read" in others:
        query = query.where(_unread() == 0)
    built: dict[bool, Select[Any] | CutThenJoin] = {
        after: keyset_statement(
            query, created_at=Conversation.created_at, id_column=Conversation.id, after=after
        )
        for after in (False, True)
    }
    if not joined_filter:
        built = {after: CutThenJoin(page, _item_columns) for after, page in built.items()}
    return built.__getitem__


def list_conversations(
    session: Session,
    ctx: Ctx,
    *,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
    channel: str | None = None,
    assignee_id: uuid.UUID | str | None = None,
    division_id: uuid.UUID | None = None,
    tag: str | None = None,
    contact_id: uuid.UUID | None = None,
    integration_account_id: uuid.UUID | None = None,
    q: str | None = None,
    updated_since: dt.datetime | None = None,
    unread: bool | None = None,
) -> Page[dict[str, Any]]:
    """A page of visible conversations, newest first, shaped like ``ConversationListItem``.

    PERF: one prebuilt statement per page, rows not ORM objects. ``status=open`` with
    ``assignee_id=me`` is a range scan of ix_conversations_inbox in index order;
    contacts and read state are joined by primary key for the page's rows only.
    """
    params = _item_params(ctx)
    values = {
        "status": status,
        "channel": channel,
        "division_id": division_id,
        "contact_id": contact_id,
        "integration_account_id": integration_account_id,
    }
    equals = tuple(name for name, value in values.items() if value)
    params.update((name, values[name]) for name in equals)
    others = []
    if tag:
        others.append("tag")
        params["tags"] = [normalize_tag(tag)]
    if q:
        others.append("q")
        # NOTE: a phone number as written finds the stored (compact) one, as in contacts.
        params["pattern"] = contains_pattern(contacts.search_term(q))
    if updated_since:
        others.append("updated_since")
        params["updated_since"] = updated_since
    if unread is not None:
        others.append("unread" if unread else "read")
    assignee = assignee_id if assignee_id in ("me", "none", None) else "id"
    if assignee == "id" and ctx.user_id is not None and assignee_id == ctx.user_id:
        assignee = "me"
    if assignee == "id":
        params["assignee_id"] = assignee_id
    shape = visibility(ctx)[0]
    if assignee == "me" and shape == OWN_AND_DIVISIONS:
        # PERF: the caller sees every conversation assigned to them, so "mine" needs only
        # the tenant bound. With the full rule's OR the planner read every open
        # conversation of the agent (a bitmap scan, a contact join each, then a sort) to
        # answer 25; without it, ix_conversations_inbox is walked in order and stops.
        shape = EVERYTHING
    statements = _list_statement(shape, equals, assignee, tuple(others))
    return fetch_page(
        session.connection(), statements, params, limit=limit, cursor=cursor, shape=_row_shaper
    )


@functools.cache
def _item_statement(shape: str):
    return _item_query(shape).where(Conversation.id == bindparam("conversation_id"))


def get_item(session: Session, ctx: Ctx, conversation_id: uuid.UUID) -> dict[str, Any]:
    """One visible conversation shaped like a list item (404 when hidden or foreign)."""
    statement = _item_statement(visibility(ctx)[0])
    params = {**_item_params(ctx), "conversation_id": conversation_id}
    rows = fetch_rows(session.connection(), statement, params)
    if not rows:
        raise NotFound("Conversation not found")
    return _row_shaper(tuple(statement.selected_columns.keys()))(rows[0])


# ---------------------------------------------------------------- lookups


def live_agent(
    session: Session, ctx: Ctx, agent_id: uuid.UUID, field: str, *, nowait: bool = False
) -> User:
    """A live, unsuspended agent of the caller's tenant, or 422 on ``field`` (never 404:
    it is input).

    The agent's row is share-locked until the caller commits: a deletion running meanwhile
    (which unassigns the agent's conversations) waits for it, or it waits for the deletion
    and finds the agent gone. Unlocked, a conversation assigned while the agent was being
    deleted stayed assigned to the deleted agent. With ``nowait``, an agent locked by
    another transaction raises (``LockNotAvailable``) instead of waiting for it, as
    :func:`division` does.
    """
    agent = session.scalar(
        select(User)
        .where(User.tenant_id == ctx.tenant_id, User.id == agent_id, User.deleted_at.is_(None))
        .with_for_update(read=True, nowait=nowait)
    )
    if agent is None:
        raise ValidationFailed.field(field, "no such agent in this workspace")
    if agent.suspended_at is not None:
        # A suspended agent cannot log in: what they are given would wait for nobody.
        raise ValidationFailed.field(field, "the agent is suspended")
    return agent


def division(
    session: Session, ctx: Ctx, division_id: uuid.UUID, field: str, *, nowait: bool = False
) -> Division:
    """A division of the caller's tenant, or 422 on ``field`` (never 404: it is input).

    Share-locked until the caller commits, as :func:`live_agent`: a deletion running
    meanwhile waits for the move, or the move waits and finds it gone. Unlocked, a move
    into a division whose deletion committed first failed on the foreign key (a 409
    saying nothing of the division). With ``nowait``, a division locked by another
    transaction raises (``LockNotAvailable``) instead of waiting for it.
    """
    found = session.scalar(
        select(Division)
        .where(Division.tenant_id == ctx.tenant_id, Division.id == division_id)
        .with_for_update(read=True, nowait=nowait)
    )
    if found is None:
        raise ValidationFailed.field(field, "no such division in this workspace")
    return found


def division_to_move_into(
    session: Session,
    ctx: Ctx,
    conversation: Conversation,
    division_id: uuid.UUID,
    field: str,
    *,
    nowait: bool = False,
    locked_in: uuid.UUID | None = None,
) -> uuid.UUID:
    """``division_id`` checked as :func:`division` does, for a move of the locked
    ``conversation``; its own division is taken as it is, not share-locked, and so is
    ``locked_in``, the one it was in when this transaction locked it (it has moved since:
    an automation run's earlier action).

    NOTE (lock order): a division's deletion locks the division, then the conversations
    in it (to release them); a move locks its conversation, then the division it names.
    The two only meet in a cycle when the conversation is already in that division, so
    that one is not locked: it exists as long as this conversation's row lock is held
    (its deletion has to release this conversation first, so it waits for this
    transaction). Locked anyway, the move waited for the deletion, which waited for the
    move's conversation: a deadlock, one of them aborted (a rule's run retried, the
    DELETE answered 409). The division the conversation was in when locked is as safe:
    its deletion's release found the conversation there and waits for this transaction
    (and then releases it, if it was moved back); locked, a run moving the conversation
    out and back deadlocked with that deletion.
    """
    if division_id in (conversation.division_id, locked_in):
        return division_id
    return division(session, ctx, division_id, field, nowait=nowait).id


# ---------------------------------------------------------------- changes on a locked row


#: NOTE (written_once): a change reads the clock before it touches the locked row, so the
#: row is written once. Read in between, the clock's query flushed the change first and the
#: timestamp was a second UPDATE; PostgreSQL re-checks every foreign key of a row updated
#: twice in one transaction, and the division's check waited for a deletion of that
#: division that was waiting for this row: a deadlock, one of them aborted.


def record_change(session, ctx, action, conversation, before, after) -> None:
    activity.record(
        session, ctx, action, "conversation", conversation.id, before=before, after=after
    )


def emit_change(session, ctx, event_type, conversation, **extra) -> None:
    emit(
        session,
        event_type,
        view(conversation) | extra,
        tenant_id=ctx.tenant_id,
        actor=ctx.actor,
    )


def add_transfer(session: Session, ctx: Ctx, conversation: Conversation, **fields: Any) -> Transfer:
    """A row of the conversation's hand-over history (``GET .../transfers``)."""
    row = Transfer(
        tenant_id=ctx.tenant_id,
        conversation_id=conversation.id,
        actor_type=ctx.actor.type,
        actor_id=ctx.actor.id,
        **fields,
    )
    session.add(row)
    session.flush()
    return row


def announce_takeover(
    session: Session,
    ctx: Ctx,
    conversation: Conversation,
    *,
    previous: uuid.UUID | None,
    from_ai: bool,
    transfer: Transfer,
) -> None:
    """The activity and ``conversation.taken_over`` of a conversation just handed to a
    person with its AI paused: the takeover endpoint's, and an assignment's that took a
    conversation from its AI agent (so whoever watches for AI hand-overs sees both)."""
    record_change(
        session,
        ctx,
        "conversation.taken_over",
        conversation,
        {"assignee_id": json_id(previous), "ai_active": from_ai},
        {"assignee_id": json_id(conversation.assignee_id), "ai_active": False},
    )
    emit_change(
        session,
        ctx,
        "conversation.taken_over",
        conversation,
        previous_assignee_id=json_id(previous),
        from_ai=from_ai,
        transfer_id=str(transfer.id),
    )


def take_over(
    session: Session, ctx: Ctx, conversation: Conversation, to_agent_id: uuid.UUID, now: Any
) -> Conversation:
    """Give a locked conversation to ``to_agent_id`` (validated) and pause its AI agent:
    the takeover row, its activity and events. ``now`` is read before any change (see
    written_once)."""
    previous, from_ai = conversation.assignee_id, conversation.ai_active
    transfer = add_transfer(
        session,
        ctx,
        conversation,
        kind="takeover",
        from_agent_id=previous,
        from_division_id=conversation.division_id,
        from_ai=from_ai,
        to_agent_id=to_agent_id,
        to_division_id=conversation.division_id,
    )
    conversation.ai_active = False
    conversation.assignee_id = to_agent_id
    conversation.updated_at = now
    session.flush()
    announce_takeover(
        session, ctx, conversation, previous=previous, from_ai=from_ai, transfer=transfer
    )
    if previous != to_agent_id:
        emit_change(
            session,
            ctx,
            "conversation.assigned",
            conversation,
            previous_assignee_id=json_id(previous),
        )
    return conversation


def apply_assignment(
    session: Session, ctx: Ctx, conversation: Conversation, assignee_id: uuid.UUID | None
) -> bool:
    """Set the assignee (already validated); emit assigned/unassigned; False if unchanged.

    A person assigned to a conversation its AI agent is answering takes it over from the
    AI (:func:`take_over`): a person and a bot must not both answer the customer.
    Unassigning hands nothing back to the AI: that stays explicit (``handover_to_ai``).
    """
    previous = conversation.assignee_id
    from_ai = assignee_id is not None and conversation.ai_active
    if previous == assignee_id and not from_ai:
        return False
    now = states.db_now(session)  # NOTE: before the change: see written_once
    if from_ai:
        take_over(session, ctx, conversation, assignee_id, now)
        return True
    conversation.assignee_id = assignee_id
    conversation.updated_at = now
    session.flush()
    action = "conversation.assigned" if assignee_id else "conversation.unassigned"
    record_change(
        session,
        ctx,
        action,
        conversation,
        {"assignee_id": json_id(previous)},
        {"assignee_id": json_id(assignee_id)},
    )
    emit_change(session, ctx, action, conversation, previous_assignee_id=json_id(previous))
    return True


def merged_tags(
    current: list[str],
    *,
    replace: list[str] | None = None,
    add: list[str] = (),
    remove: list[str] = (),
    field: str = "tags",
) -> tuple[list[str], list[str], list[str]]:
    """The new tag list and what was added and removed; 422 past :data:`MAX_TAGS`."""
    if replace is not None:
        wanted = list(dict.fromkeys(replace))
    else:
        dropping = set(remove)
        wanted = [t for t in current if t not in dropping]
        wanted += [t for t in dict.fromkeys(add) if t not in wanted and t not in dropping]
    if len(wanted) > MAX_TAGS and len(wanted) > len(current):
        raise ValidationFailed.field(field, f"at most {MAX_TAGS} tags per conversation")
    added = [t for t in wanted if t not in current]
    removed = [t for t in current if t not in wanted]
    return wanted, added, removed


def apply_tags(
    session: Session, ctx: Ctx, conversation: Conversation, new_tags: list[str], added, removed
) -> bool:
    if not added and not removed:
        return False
    before = {"tags": list(conversation.tags)}
    now = states.db_now(session)  # NOTE: before the change: see written_once
    conversation.tags = new_tags
    conversation.updated_at = now
    session.flush()
    sla.conditions_changed(session, conversation, now=conversation.updated_at)
    record_change(
        session, ctx, "conversation.tags_updated", conversation, before, {"tags": new_tags}
    )
    emit_change(
        session, ctx, "conversation.tags_updated", conversation, added=added, removed=removed
    )
    return True


def apply_fields(
    session: Session,
    ctx: Ctx,
    conversation: Conversation,
    changes: dict[str, Any],
    *,
    announce: bool = True,
) -> bool:
    """Set plain fields (division, priority); logged as conversation.updated, no event.

    NOTE: the catalogue has no event for a division or priority change, so these
    are audited only; a transfer is the evented way to move a conversation. Both still
    reach the inbox's streams (:func:`_announce_to_streams`): agents' open views
    otherwise kept the old division or priority until they reloaded. Not ``announce``:
    the caller tells the streams with one entry for many (a chunk of a large bulk job).
    """
    before = {k: json_id(getattr(conversation, k)) for k in changes}
    if all(getattr(conversation, k) == v for k, v in changes.items()):
        return False
    from_division, from_priority = conversation.division_id, conversation.priority
    from_ai = ai_fields(conversation)
    now = states.db_now(session)  # NOTE: before the change: see written_once
    for key, value in changes.items():
        setattr(conversation, key, value)
    conversation.updated_at = now
    session.flush()
    if conversation.division_id != from_division:
        sla.conditions_changed(session, conversation, now=conversation.updated_at)
    if announce:
        _announce_to_streams(session, ctx, conversation, from_division, from_priority)
        if ai_fields(conversation) != from_ai:
            announce_ai_change(
                session, ctx, view(conversation), conversation.ai_agent_id, conversation.updated_at
            )
    record_change(
        session,
        ctx,
        "conversation.updated",
        conversation,
        before,
        {k: json_id(v) for k, v in changes.items()},
    )
    return True


def _announce_to_streams(
    session: Session,
    ctx: Ctx,
    conversation: Conversation,
    from_division: uuid.UUID | None,
    from_priority: str,
) -> None:
    """The stream-only event of an :func:`apply_fields` change, if it changed what a list shows.

    A division change tells both divisions' agents (the old one's drop the conversation,
    the new one's add it); its event carries the whole conversation, so a priority
    changed with it needs no second one. A priority change alone reaches whoever sees
    the conversation. The AI's fields have their own event (:func:`announce_ai_change`).
    """
    if conversation.division_id != from_division:
        event_type, extra = feed.DIVISION_CHANGED, {"from_division_id": json_id(from_division)}
    elif conversation.priority != from_priority:
        event_type, extra = feed.PRIORITY_CHANGED, {"from_priority": from_priority}
    else:
        return
    feed.announce(
        session,
        ctx.tenant_id,
        event_type,
        view(conversation) | extra,
        ctx.actor.as_dict(),
        conversation.updated_at,
    )


def ai_fields(conversation: Conversation) -> tuple[bool, uuid.UUID | None]:
    """What a client shows of the AI on a conversation: whether it answers, and which."""
    return conversation.ai_active, conversation.ai_agent_id


def announce_ai_change(
    session: Session,
    ctx: Ctx,
    data: dict[str, Any],
    ai_agent_id: uuid.UUID | None,
    occurred_at: dt.datetime,
) -> None:
    """Tell whoever sees the conversation (``data``, its view) its new AI fields.

    WHY: no catalogue event says the AI claimed a conversation or that a person's reply
    took it from the AI; agents' open views kept the old state until they reloaded.
    ``ai_agent_id`` is the caller's: a view built before the change carries the old one.
    """
    feed.announce(
        session,
        ctx.tenant_id,
        feed.AI_CHANGED,
        data | {"ai_agent_id": json_id(ai_agent_id)},
        ctx.actor.as_dict(),
        occurred_at,
    )


def json_id(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value


# ---------------------------------------------------------------- endpoints' services


@functools.cache
def _assign_statement(to_agent: bool) -> Update:
    """Lock a conversation of the tenant and give it ``:assignee`` (with ``to_agent``, a live
    agent of the tenant; else nobody) unless it has them already; return the previous
    assignee and the view's columns."""
    table = Conversation.__table__
    old = (
        select(table.c.id, table.c.assignee_id, table.c.ai_active)
        .where(
            # NOTE: not named after a column: those names are the SET clause's.
            table.c.tenant_id == bindparam("in_tenant", type_=table.c.tenant_id.type),
            table.c.id == bindparam("conversation_id", type_=table.c.id.type),
        )
        .with_for_update()
        .subquery("old")
    )
    assignee = bindparam("assignee", type_=table.c.assignee_id.type) if to_agent else None
    statement = update(table).where(
        # NOTE: the tenant again at the top, for the write tracker and a second guard.
        table.c.tenant_id == bindparam("in_tenant", type_=table.c.tenant_id.type),
        table.c.id == old.c.id,
    )
    if to_agent:
        # NOTE: share-locked, as live_agent does, so a deletion cannot slip in between.
        live = exists(
            select(User.id)
            .where(
                User.tenant_id == table.c.tenant_id,
                User.id == assignee,
                User.deleted_at.is_(None),
                User.suspended_at.is_(None),  # else the general path's 422 says why
            )
            .with_for_update(read=True)
        )
        # NOTE: not a conversation its AI agent answers: the general path takes it over.
        statement = statement.where(
            old.c.assignee_id.is_distinct_from(assignee), old.c.ai_active.is_(False), live
        )
    else:
        statement = statement.where(old.c.assignee_id.is_not(None))
    return statement.values(assignee_id=assignee, updated_at=func.now()).returning(
        old.c.assignee_id, *(table.c[name] for name in ConversationView.model_fields)
    )


def _assign_by_id(
    session: Session, ctx: Ctx, conversation_id: uuid.UUID, assignee_id: uuid.UUID | None
) -> dict[str, Any] | None:
    """:func:`apply_assignment` by a manager, in one ``UPDATE ... RETURNING``; the view.

    None when it changed nothing (no such conversation, no such agent, no change, or one
    its AI agent answers): the general path then answers 404, 422 or the unchanged
    conversation, or takes it over from the AI.
    PERF: the general path loads the conversation and the agent as ORM objects and
    flushes twice: five round trips where one does.
    """
    params = {"in_tenant": ctx.tenant_id, "conversation_id": conversation_id}
    if assignee_id is not None:
        params["assignee"] = assignee_id
    # PERF: on the driver's cursor (db.fetch_rows), not through SQLAlchemy's execution.
    rows = fetch_rows(session.connection(), _assign_statement(assignee_id is not None), params)
    if not rows:
        return None
    row = rows[0]
    previous = row[0]
    view = dict(zip(ConversationView.model_fields, row[1:], strict=True))
    action = "conversation.assigned" if assignee_id else "conversation.unassigned"
    data = ConversationView.data(view) | {"previous_assignee_id": json_id(previous)}
    activity.record_change(
        session,
        ctx,
        action,
        "conversation",
        conversation_id,
        data,
        before={"assignee_id": json_id(previous)},
        after={"assignee_id": json_id(assignee_id)},
    )
    return view


def assign(
    session: Session, ctx: Ctx, conversation_id: uuid.UUID, assignee_id: uuid.UUID | None
) -> Conversation | dict[str, Any]:
    """Assign or unassign: anyone may take an unassigned conversation; the rest needs manage."""
    if ctx.can(MANAGE) and (moved := _assign_by_id(session, ctx, conversation_id, assignee_id)):
        return moved
    conversation = get_conversation(session, ctx, conversation_id, for_update=True)
    self_claim = (
        conversation.assignee_id is None and assignee_id is not None and ctx.is_self(assignee_id)
    )
    if not self_claim and not ctx.can(MANAGE):
        raise Forbidden(
            "You may assign only an unassigned conversation, to yourself;"
            f" anything else needs the '{MANAGE}' permission"
        )
    if assignee_id is not None:
        live_agent(session, ctx, assignee_id, "assignee_id")
    apply_assignment(session, ctx, conversation, assignee_id)
    return conversation


def set_status(
    session: Session,
    ctx: Ctx,
    conversation_id: uuid.UUID,
    status: str,
    snoozed_until: dt.datetime | None = None,
) -> Conversation | dict[str, Any]:
    """Move a visible conversation to ``status``; its view (an ORM object or its dict)."""
    if snoozed_until is None and (
        moved := states.transition_by_id(session, ctx, conversation_id, status)
    ):
        return moved
    conversation = get_conversation(session, ctx, conversation_id, for_update=True)
    states.transition(session, ctx, conversation, status, snoozed_until=snoozed_until)
    return conversation


def update_tags(
    session: Session,
    ctx: Ctx,
    conversation_id: uuid.UUID,
    *,
    tags: list[str] | None = None,
    add: list[str] | None = None,
    remove: list[str] | None = None,
) -> Conversation:
    """Replace the tags (``tags``) or edit them (``add``/``remove``); tags are normalized."""
    if tags is None and not add and not remove:
        raise ValidationFailed.field("tags", "send 'tags', or 'add' and/or 'remove'")
    tags, add, remove = (
        None if tags is None else [normalize_tag(t) for t in tags],
        [normalize_tag(t) for t in add or ()],
        [normalize_tag(t) for t in remove or ()],
    )
    conversation = get_conversation(session, ctx, conversation_id, for_update=True)
    new, added, removed = merged_tags(
        list(conversation.tags),
        replace=tags,
        add=add,
        remove=remove,
        field="tags" if tags is not None else "add",
    )
    apply_tags(session, ctx, conversation, new, added, removed)
    return conversation


def mark_read(session: Session, ctx: Ctx, conversation_id: uuid.UUID) -> dict[str, Any]:
    """Record that the caller read every inbound message so far (their unread drops to 0).

    When something new was read on WhatsApp, Messenger or Instagram, the provider's
    read receipt is owed in the same transaction (:mod:`shared.channels.read_receipts`:
    ``mark_read_upstream`` sends it after commit).
    """
    if ctx.user_id is None:
        raise Forbidden("Only an agent has a read state")
    conversation = get_conversation(session, ctx, conversation_id)
    previous = session.scalar(
        select(ConversationRead.read_inbound_count).where(
            ConversationRead.conversation_id == conversation.id,
            ConversationRead.user_id == ctx.user_id,
        )
    )
    count = conversation.inbound_count
    stmt = insert(ConversationRead).values(
        tenant_id=ctx.tenant_id,
        conversation_id=conversation.id,
        user_id=ctx.user_id,
        read_inbound_count=count,
        last_read_at=func.now(),
    )
    # NOTE: only ever forward, judged on the locked row: two reads at once (two tabs) both
    # saw the old count above, and each announced the same read; a read that loaded the
    # conversation before a newer read committed moved the count back (unread again).
    advanced = session.execute(
        stmt.on_conflict_do_update(
            index_elements=[ConversationRead.conversation_id, ConversationRead.user_id],
            set_={"read_inbound_count": count, "last_read_at": func.now()},
            where=ConversationRead.read_inbound_count < count,
        ).returning(ConversationRead.read_inbound_count, ConversationRead.last_read_at)
    ).one_or_none()
    moved = advanced is not None
    if not moved:  # nothing new for this reader: the time of the read only
        advanced = session.execute(
            update(ConversationRead)
            .where(
                ConversationRead.conversation_id == conversation.id,
                ConversationRead.user_id == ctx.user_id,
            )
            .values(last_read_at=func.now())
            .returning(ConversationRead.read_inbound_count, ConversationRead.last_read_at)
        ).one()
    count, last_read_at = advanced
    state = {
        "conversation_id": conversation.id,
        "user_id": ctx.user_id,
        "read_inbound_count": count,
        "unread_count": 0,
        "last_read_at": last_read_at,
    }
    if moved:
        read_receipts.record(session, conversation)
        record_change(
            session,
            ctx,
            "conversation.read",
            conversation,
            {"read_inbound_count": previous},
            {"read_inbound_count": count},
        )
        emit_change(
            session,
            ctx,
            "conversation.read",
            conversation,
            reader_id=str(ctx.user_id),
            read_inbound_count=count,
        )
    return state
