"""Assignments: which integration account or channel an AI agent answers, and when.

An assignment names an integration account, a channel, or both (then the account
must be of that channel), an optional division and a mode: ``always`` or
``outside_working_hours`` (the tenant's working hours). Every id it names must be the
caller's tenant's (422 naming the field otherwise, as automation rules do). Two
assignments of the same target (account, channel, division) would make ownership a
coin toss, so the second is a 409.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared import activity
from shared.ai import agents
from shared.ai.config_views import AssignmentView
from shared.ai.references import check_division
from shared.context import Ctx
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.models import AiAgentAssignment, IntegrationAccount
from shared.models.inbox import CHANNELS
from shared.pagination import Page, paginate
from shared.sql import lock_key, tenant_row

FIELDS = ("ai_agent_id", "integration_account_id", "channel", "division_id", "mode", "is_active")


def view(assignment: AiAgentAssignment) -> dict[str, Any]:
    return AssignmentView.data(assignment)


def list_assignments(
    session: Session,
    ctx: Ctx,
    *,
    limit: int,
    cursor: str | None = None,
    ai_agent_id: uuid.UUID | None = None,
    integration_account_id: uuid.UUID | None = None,
    channel: str | None = None,
) -> Page[AiAgentAssignment]:
    ctx.require(agents.VIEW)
    a = AiAgentAssignment
    query = select(a).where(a.tenant_id == ctx.tenant_id)
    if ai_agent_id:
        query = query.where(a.ai_agent_id == ai_agent_id)
    if integration_account_id:
        query = query.where(a.integration_account_id == integration_account_id)
    if channel:
        query = query.where(a.channel == channel)
    return paginate(
        session, query, created_at=a.created_at, id_column=a.id, limit=limit, cursor=cursor
    )


def _get(session: Session, ctx: Ctx, assignment_id: uuid.UUID) -> AiAgentAssignment:
    return tenant_row(
        session,
        AiAgentAssignment,
        ctx.tenant_id,
        assignment_id,
        missing="AI agent assignment not found",
        lock=True,
    )


def _exists(session: Session, ctx: Ctx, assignment_id: uuid.UUID) -> None:
    """404 unless the assignment exists, without locking it (see :func:`replace_assignment`)."""
    a = AiAgentAssignment
    if session.scalar(select(a.id).where(a.tenant_id == ctx.tenant_id, a.id == assignment_id)):
        return
    raise NotFound("AI agent assignment not found")


def _validate(session: Session, ctx: Ctx, fields: dict[str, Any]) -> None:
    """422 for a body naming nothing, an unknown channel, or another tenant's ids; the
    body's agent, account and division are locked FOR KEY SHARE (``agents.check_owned``),
    so this goes before any lock on an assignment."""
    account_id, channel = fields["integration_account_id"], fields["channel"]
    if account_id is None and channel is None:
        raise ValidationFailed(
            "Name an integration account or a channel",
            details=[
                {"field": "integration_account_id", "message": "required when channel is not set"},
                {"field": "channel", "message": "required when integration_account_id is not set"},
            ],
        )
    if channel is not None and channel not in CHANNELS:
        raise ValidationFailed.field("channel", f"one of {', '.join(CHANNELS)}")
    agents.check_owned(session, ctx, fields["ai_agent_id"], "ai_agent_id")
    if account_id is not None:
        # NOTE: share-locked as the division is (check_division): a disconnection under way
        # is waited for and answers the 422, not the foreign key's bare 409 at the insert.
        account_channel = session.scalar(
            select(IntegrationAccount.channel)
            .where(
                IntegrationAccount.tenant_id == ctx.tenant_id, IntegrationAccount.id == account_id
            )
            .with_for_update(read=True, key_share=True)
        )
        if account_channel is None:
            raise ValidationFailed.field(
                "integration_account_id", "no such integration account in this workspace"
            )
        if channel is not None and channel != account_channel:
            raise ValidationFailed.field(
                "channel", f"the integration account is a {account_channel} account"
            )
    check_division(session, ctx, fields["division_id"], "division_id")


def _check_unique(
    session: Session, ctx: Ctx, fields: dict[str, Any], except_id: uuid.UUID | None = None
) -> None:
    """409 when another assignment has the same target (serialised per tenant)."""
    a = AiAgentAssignment
    # NOTE: a transaction-scoped advisory lock per tenant, so two concurrent creates of
    # the same target cannot both pass the check (there is no unique index over nulls).
    lock_key(session, f"ai_assign:{ctx.tenant_id}")
    account_id = fields["integration_account_id"]
    # NOTE: an account's assignment may also name the account's own channel (validated):
    # with or without it, the target is the account.
    target = (
        a.integration_account_id == account_id
        if account_id is not None
        else a.integration_account_id.is_(None) & (a.channel == fields["channel"])
    )
    query = select(a.id).where(
        a.tenant_id == ctx.tenant_id,
        target,
        a.division_id.is_not_distinct_from(fields["division_id"]),
    )
    if except_id is not None:
        query = query.where(a.id != except_id)
    if session.scalar(query.limit(1)) is not None:
        raise Conflict(
            "Another assignment already has this account, channel and division",
            details=[{"field": "integration_account_id", "message": "already assigned"}],
        )


def create_assignment(session: Session, ctx: Ctx, fields: dict[str, Any]) -> AiAgentAssignment:
    ctx.require(agents.MANAGE)
    _validate(session, ctx, fields)
    _check_unique(session, ctx, fields)
    assignment = AiAgentAssignment(tenant_id=ctx.tenant_id, **{k: fields[k] for k in FIELDS})
    session.add(assignment)
    session.flush()
    session.refresh(assignment)
    activity.record(
        session,
        ctx,
        "ai_agent_assignment.created",
        "ai_agent_assignment",
        assignment.id,
        after=view(assignment),
    )
    return assignment


def replace_assignment(
    session: Session, ctx: Ctx, assignment_id: uuid.UUID, fields: dict[str, Any]
) -> AiAgentAssignment:
    """Replace every field of the assignment (PUT).

    NOTE: the body's agent is locked before the assignment, the order of an agent's
    deletion (the agent, then its cascade): a 404 first, unlocked; an agent deleted
    meanwhile is the 422 naming ``ai_agent_id``, or a 404 when the assignment went with it.
    """
    ctx.require(agents.MANAGE)
    _exists(session, ctx, assignment_id)
    try:
        _validate(session, ctx, fields)
    except ValidationFailed:
        _exists(session, ctx, assignment_id)
        raise
    _check_unique(session, ctx, fields, except_id=assignment_id)
    assignment = _get(session, ctx, assignment_id)
    before = view(assignment)
    for name in FIELDS:
        setattr(assignment, name, fields[name])
    assignment.updated_at = func.now()
    session.flush()
    session.refresh(assignment)
    activity.record(
        session,
        ctx,
        "ai_agent_assignment.updated",
        "ai_agent_assignment",
        assignment.id,
        before=before,
        after=view(assignment),
    )
    return assignment


def delete_assignment(session: Session, ctx: Ctx, assignment_id: uuid.UUID) -> None:
    ctx.require(agents.MANAGE)
    assignment = _get(session, ctx, assignment_id)
    activity.record(
        session,
        ctx,
        "ai_agent_assignment.deleted",
        "ai_agent_assignment",
        assignment.id,
        before=view(assignment),
    )
    session.delete(assignment)
    session.flush()
