"""Divisions: teams of agents (sales, support...) that conversations can be routed to.

Any agent reads them; ``agents.manage`` changes them and their membership.
Membership rows of soft-deleted agents stay in ``division_members`` (the user row
is never removed) but are neither counted nor listed: only live agents are.
Deleting a division drops its memberships (FK cascade) and leaves its
conversations without a division (a change of theirs: ``updated_at``, SLA clocks, and
the inbox's streams are told). API.md lists no catalogue events for divisions, so
writes only log activity.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Uuid, any_, bindparam, delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from shared import activity
from shared.automation import rules as automation_rules
from shared.automation.actions import DIVISIONS
from shared.context import Ctx
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.identity import agents
from shared.inbox import states
from shared.models import Conversation, ConversationSla, Division, DivisionMember, User
from shared.pagination import Page, paginate_rows
from shared.realtime import feed
from shared.schemas.inbox import ConversationView
from shared.schemas.team import DivisionView
from shared.sql import flush_unique, tenant_row
from shared.timekeeping import sla, sla_policies

MANAGE = "agents.manage"
#: Most conversations of a deleted division announced to the streams one by one (as a bulk
#: division change does); past this, one ``conversations.division_released`` entry says it
#: of them all. Bounded so a large division costs one entry, not 100,000 that would trim the
#: tenant's backlog (``feed.MAX_ENTRIES``) and overflow every manager's stream
#: (``stream_hub.MAX_QUEUED``); as many as a bulk job's chunk announces at once.
ANNOUNCED_ONE_BY_ONE = 200
_UUIDS = ARRAY(Uuid)
#: Most agent ids one membership request may name.
MAX_AGENT_IDS = 500


def _live_members(division_id: uuid.UUID, *columns: Any):
    """``columns`` of the live agents in a division."""
    return (
        select(*columns)
        .select_from(DivisionMember)
        .join(User, User.id == DivisionMember.user_id)
        .where(DivisionMember.division_id == division_id, User.deleted_at.is_(None))
    )


def _agent_count():
    """A correlated count of a division's live agents, as a column of a divisions query."""
    return (
        select(func.count())
        .select_from(DivisionMember)
        .join(User, User.id == DivisionMember.user_id)
        .where(DivisionMember.division_id == Division.id, User.deleted_at.is_(None))
        .correlate(Division)
        .scalar_subquery()
        .label("agent_count")
    )


_DIVISION_COLUMNS = (
    Division.id,
    Division.name,
    Division.description,
    _agent_count(),
    Division.created_at,
    Division.updated_at,
)


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"A division named '{name}' exists",
        details=[{"field": "name", "message": "already used in this workspace"}],
    )


def list_divisions(
    session: Session, ctx: Ctx, *, limit: int, cursor: str | None = None
) -> Page[dict[str, Any]]:
    """A page of the tenant's divisions, newest first, with live member counts."""
    query = select(*_DIVISION_COLUMNS).where(Division.tenant_id == ctx.tenant_id)
    return paginate_rows(
        session,
        query,
        created_at=Division.created_at,
        id_column=Division.id,
        limit=limit,
        cursor=cursor,
    )


def _division_row(session: Session, ctx: Ctx, division_id: uuid.UUID) -> dict[str, Any]:
    row = session.execute(
        select(*_DIVISION_COLUMNS).where(
            Division.tenant_id == ctx.tenant_id, Division.id == division_id
        )
    ).one_or_none()
    if row is None:
        raise NotFound("Division not found")
    return dict(row._mapping)


def get_division(session: Session, ctx: Ctx, division_id: uuid.UUID) -> dict[str, Any]:
    """The division with every live agent in it (shaped like ``DivisionDetail``).

    PERF: a division holds at most the tenant's agents (hundreds); clients that
    want pages use :func:`list_division_agents`.
    """
    data = _division_row(session, ctx, division_id)
    agents = session.execute(
        _live_members(
            division_id, User.id, User.email, User.full_name, User.avatar_url, User.status
        ).order_by(User.full_name, User.id)
    )
    data["agents"] = [dict(agent._mapping) for agent in agents]
    return data


def _lock(session: Session, ctx: Ctx, division_id: uuid.UUID) -> Division:
    return tenant_row(
        session, Division, ctx.tenant_id, division_id, missing="Division not found", lock=True
    )


def _lock_for_deletion(session: Session, ctx: Ctx, division_id: uuid.UUID) -> Division:
    """The division locked ``FOR NO KEY UPDATE``: against every other change of it (a
    rename, a membership change, another deletion, a move into it: :func:`_lock` and
    :func:`~shared.inbox.conversations.division` conflict with it), not against the
    ``FOR KEY SHARE`` of a foreign key check on it.

    NOTE (lock order): the deletion then waits for the division's conversations (to
    release them). ``FOR UPDATE`` made it a deadlock with a transaction holding one of them
    that checked the key: PostgreSQL re-checks every foreign key of a row the transaction
    updates a second time (a rule's ``add_tags`` then ``set_priority``), as it checks an
    insert naming the division. The final ``DELETE`` still waits for those checks'
    transactions, by then only ones the release has waited for or that hold none of its
    conversations; a row that came to name the division meanwhile is left without it by
    the foreign key's ``ON DELETE SET NULL`` (or dropped by its ``CASCADE``).
    """
    found = session.scalar(
        select(Division)
        .where(Division.tenant_id == ctx.tenant_id, Division.id == division_id)
        .with_for_update(key_share=True)  # not read: FOR NO KEY UPDATE
    )
    if found is None:
        raise NotFound("Division not found")
    return found


def _flush_unique(session: Session, name: str) -> None:
    """Flush; a name taken by a concurrent request is a 409, not a 500."""
    flush_unique(session, "uq_divisions_tenant_name", _name_taken(name))


def _name_exists(session: Session, ctx: Ctx, name: str, except_id: uuid.UUID | None = None):
    """Whether the tenant has a division of that name, case aside.

    NOTE: both sides lower-cased by PostgreSQL, as ``uq_divisions_tenant_name`` does:
    Python's ``str.lower`` differs on some letters (final sigma, digraphs), so a pair of
    names was a 409 in one order and two divisions in the other.
    """
    query = select(Division.id).where(
        Division.tenant_id == ctx.tenant_id,
        func.lower(Division.name) == func.lower(name),
    )
    if except_id:
        query = query.where(Division.id != except_id)
    return session.scalar(query.limit(1)) is not None


def create_division(
    session: Session, ctx: Ctx, *, name: str, description: str = ""
) -> dict[str, Any]:
    ctx.require(MANAGE)
    if _name_exists(session, ctx, name):
        raise _name_taken(name)
    division = Division(tenant_id=ctx.tenant_id, name=name, description=description)
    session.add(division)
    _flush_unique(session, name)
    data = get_division(session, ctx, division.id)
    activity.record(
        session, ctx, "division.created", "division", division.id, after=DivisionView.data(data)
    )
    return data


def update_division(
    session: Session, ctx: Ctx, division_id: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    """Rename or re-describe a division (names stay unique per tenant, case-insensitive)."""
    ctx.require(MANAGE)
    division = _lock(session, ctx, division_id)
    before = DivisionView.data(_division_row(session, ctx, division.id))
    name = changes.get("name")
    if name is not None and name != division.name:
        if _name_exists(session, ctx, name, except_id=division.id):
            raise _name_taken(name)
        division.name = name
    if changes.get("description") is not None:
        division.description = changes["description"]
    if session.is_modified(division):
        _flush_unique(session, division.name)
        session.refresh(division)
        data = get_division(session, ctx, division.id)
        activity.record(
            session,
            ctx,
            "division.updated",
            "division",
            division.id,
            before=before,
            after=DivisionView.data(data),
        )
        return data
    return get_division(session, ctx, division.id)


def delete_division(session: Session, ctx: Ctx, division_id: uuid.UUID) -> None:
    """Delete a division; members cascade, its conversations keep going without one, and
    the SLA policies and automation rules naming it forget it.

    NOTE (lock order): the division, then its conversations, then its memberships. A move
    into a division takes it the other way (its conversation, then the division) but
    never locks the division its conversation is already in
    (:func:`~shared.inbox.conversations.division_to_move_into`), the only one whose
    deletion waits for that conversation; a bulk move locks the division before its
    conversations, as this does. So a move racing this either lands first (and is
    released here) or waits and finds the division gone (422). The division is locked
    against changes, not against foreign key checks (:func:`_lock_for_deletion`).
    """
    ctx.require(MANAGE)
    division = _lock_for_deletion(session, ctx, division_id)
    before = DivisionView.data(_division_row(session, ctx, division.id))
    sla_policies.forget_division(session, ctx, division.id)
    automation_rules.forget_referent(session, ctx, DIVISIONS, division.id)
    _release_conversations(session, ctx, division.id)
    # NOTE: the members by a statement, not the foreign key's cascade: the write tracker
    # sees this one, so the stream re-reads its connected members' divisions at once.
    # After the conversations (lock order: a conversation, then a membership): a round
    # robin holding one of them share-locks its pick's membership row; deleted first,
    # that row made the pick wait for this deletion, which waited for its conversation.
    session.execute(
        delete(DivisionMember).where(
            DivisionMember.tenant_id == ctx.tenant_id, DivisionMember.division_id == division.id
        )
    )
    session.delete(division)
    activity.record(session, ctx, "division.deleted", "division", division.id, before=before)


def _release_conversations(session: Session, ctx: Ctx, division_id: uuid.UUID) -> None:
    """Take the division off its conversations as a change of theirs, before the delete.

    NOTE: by a statement, not the foreign key's SET NULL, which left ``updated_at`` as it
    was (clients syncing with ``updated_since`` never saw the change) and the SLA clocks
    under a policy matched on the division. Only a clock can change policy: without the
    division a conversation matches a subset of the policies it matched with it. The
    streams are told too (:func:`_announce_release`): agents who saw a conversation only
    through the division kept it in their live views.
    """
    in_division = (Conversation.tenant_id == ctx.tenant_id, Conversation.division_id == division_id)
    now = states.db_now(session)
    one_by_one = _few_enough(session, in_division)
    released = session.execute(_release_statement(in_division, now, returning_views=one_by_one))
    rows = released.all()
    _announce_release(session, ctx, division_id, rows if one_by_one else None, now)
    # NOTE: the clocks are looked up after the release, by a statement of their own (a
    # snapshot taken once the release has waited for every conversation's writer): looked
    # up before, a clock that a transaction holding one of them started meanwhile (under a
    # policy naming the division: forget_division does not hold it back) was missed, and
    # the conversation kept it under a policy that no longer matched it.
    conversations = session.scalars(
        select(Conversation)
        .where(
            Conversation.tenant_id == ctx.tenant_id,
            Conversation.id == any_(bindparam("released", [row.id for row in rows], _UUIDS)),
            Conversation.status != "resolved",
            exists().where(ConversationSla.conversation_id == Conversation.id),
        )
        .order_by(Conversation.id)
        .execution_options(populate_existing=True)
    )
    for conversation in conversations:
        sla.conditions_changed(session, conversation, now=now)


def _few_enough(session: Session, in_division: tuple) -> bool:
    """Whether the division holds at most :data:`ANNOUNCED_ONE_BY_ONE` conversations.

    NOTE: stable until the commit: the division row is locked against a move into it
    (which share-locks it, :func:`~shared.inbox.conversations.division`). A write that only
    checks its foreign key is not held back (:func:`_lock_for_deletion`); the ``DELETE``
    waits for it, and ``ON DELETE SET NULL`` takes the division off what it wrote.
    """
    found = session.scalars(
        select(Conversation.id).where(*in_division).limit(ANNOUNCED_ONE_BY_ONE + 1)
    ).all()
    return len(found) <= ANNOUNCED_ONE_BY_ONE


def _release_statement(in_division: tuple, now: Any, *, returning_views: bool):
    """The ``UPDATE`` that takes the division off its conversations, returning each one's
    id; with ``returning_views``, its view (the columns its event carries, id included)."""
    statement = (
        update(Conversation)
        .where(*in_division)
        .values(division_id=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    table = Conversation.__table__
    if not returning_views:
        return statement.returning(table.c.id)
    return statement.returning(*(table.c[name] for name in ConversationView.model_fields))


def _announce_release(
    session: Session, ctx: Ctx, division_id: uuid.UUID, released: list | None, now: Any
) -> None:
    """Tell the inbox's streams the conversations left the division (after the commit).

    ``released`` (the views, when few): one ``conversation.division_changed`` each, as a
    bulk division change sends, so an agent who saw one only through this division is
    told to drop it and its other watchers see it without a division. None (too many):
    one ``conversations.division_released`` for the division, whatever its size.
    """
    actor = ctx.actor.as_dict()
    moved = {"from_division_id": str(division_id), "division_id": None}
    if released is None:
        feed.announce(session, ctx.tenant_id, feed.DIVISION_RELEASED, moved, actor, now)
        return
    for row in released:
        data = ConversationView.data(row._asdict()) | moved
        feed.announce(session, ctx.tenant_id, feed.DIVISION_CHANGED, data, actor, now)


def list_division_agents(
    session: Session,
    ctx: Ctx,
    division_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None = None,
) -> Page[dict[str, Any]]:
    """A page of the division's live agents shaped like ``AgentView`` (newest agent first)."""
    _division_row(session, ctx, division_id)
    query = agents.live_agent_rows(ctx).join(
        DivisionMember,
        (DivisionMember.user_id == User.id) & (DivisionMember.division_id == division_id),
    )
    return agents.page_of_agents(session, query, limit=limit, cursor=cursor)


def _check_agents(session: Session, ctx: Ctx, agent_ids: list[uuid.UUID]) -> None:
    """422 naming every index of ``agent_ids`` that is not a live agent of the tenant."""
    if len(agent_ids) > MAX_AGENT_IDS:
        raise ValidationFailed.field("agent_ids", f"at most {MAX_AGENT_IDS} ids")
    live = set(
        session.scalars(
            select(User.id).where(
                User.tenant_id == ctx.tenant_id,
                User.deleted_at.is_(None),
                User.id.in_(set(agent_ids)),
            )
        )
    )
    bad = [
        {"field": f"agent_ids[{index}]", "message": "no such agent in this workspace"}
        for index, agent_id in enumerate(agent_ids)
        if agent_id not in live
    ]
    if bad:
        raise ValidationFailed("Some agent ids are not agents of this workspace", details=bad)


def add_agents(
    session: Session, ctx: Ctx, division_id: uuid.UUID, agent_ids: list[uuid.UUID]
) -> dict[str, Any]:
    """Put agents in a division; members already in it are left alone (idempotent)."""
    ctx.require(MANAGE)
    division = _lock(session, ctx, division_id)
    _check_agents(session, ctx, agent_ids)
    unique_ids = list(dict.fromkeys(agent_ids))
    added = []
    if unique_ids:
        added = list(
            session.scalars(
                pg_insert(DivisionMember)
                .values(
                    [
                        {"tenant_id": ctx.tenant_id, "division_id": division.id, "user_id": uid}
                        for uid in unique_ids
                    ]
                )
                .on_conflict_do_nothing()
                .returning(DivisionMember.user_id)
            )
        )
    if added:
        activity.record(
            session,
            ctx,
            "division.agents_added",
            "division",
            division.id,
            after={"agent_ids": [str(uid) for uid in added]},
        )
    return get_division(session, ctx, division.id)


def remove_agents(
    session: Session, ctx: Ctx, division_id: uuid.UUID, agent_ids: list[uuid.UUID]
) -> None:
    """Take agents out of a division; ids that are not members are ignored (idempotent)."""
    ctx.require(MANAGE)
    division = _lock(session, ctx, division_id)
    if len(agent_ids) > MAX_AGENT_IDS:
        raise ValidationFailed.field("agent_ids", f"at most {MAX_AGENT_IDS} ids")
    removed = list(
        session.scalars(
            delete(DivisionMember)
            .where(
                DivisionMember.division_id == division.id,
                DivisionMember.user_id.in_(set(agent_ids)),
            )
            .returning(DivisionMember.user_id)
        )
    )
    if removed:
        activity.record(
            session,
            ctx,
            "division.agents_removed",
            "division",
            division.id,
            before={"agent_ids": [str(uid) for uid in removed]},
        )
