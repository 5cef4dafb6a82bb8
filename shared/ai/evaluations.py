"""Evaluations: a reviewer's score (1-5) of one AI reply, with the answer it should have given.

The message must be an outbound message this AI agent wrote in this tenant (422 naming
``message_id`` otherwise). A reviewer rates a reply once (409 for a second rating; they
change the first instead). Reviewers (``ai_agents.review``) create, change and delete.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import activity
from shared.ai import agents
from shared.ai.config_views import EvaluationView
from shared.context import Ctx
from shared.errors import Conflict, ValidationFailed
from shared.models import AiEvaluation, Message
from shared.pagination import Page, paginate
from shared.sql import tenant_row


def view(evaluation: AiEvaluation) -> dict[str, Any]:
    return EvaluationView.data(evaluation)


def list_evaluations(
    session: Session,
    ctx: Ctx,
    agent_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None = None,
    message_id: uuid.UUID | None = None,
    score: int | None = None,
) -> Page[AiEvaluation]:
    agents.get_agent(session, ctx, agent_id)
    e = AiEvaluation
    query = select(e).where(e.tenant_id == ctx.tenant_id, e.ai_agent_id == agent_id)
    if message_id:
        query = query.where(e.message_id == message_id)
    if score is not None:
        query = query.where(e.score == score)
    return paginate(
        session, query, created_at=e.created_at, id_column=e.id, limit=limit, cursor=cursor
    )


def _check_reply(session: Session, ctx: Ctx, agent_id: uuid.UUID, message_id: uuid.UUID) -> None:
    found = session.scalar(
        select(Message.id).where(
            Message.tenant_id == ctx.tenant_id,
            Message.id == message_id,
            Message.direction == "outbound",
            Message.sender_type == "ai_agent",
            Message.sender_id == agent_id,
        )
    )
    if found is None:
        raise ValidationFailed.field("message_id", "not a reply this AI agent wrote")


def _get(session: Session, ctx: Ctx, agent_id: uuid.UUID, evaluation_id: uuid.UUID) -> AiEvaluation:
    agents.get_agent(session, ctx, agent_id)
    return tenant_row(
        session,
        AiEvaluation,
        ctx.tenant_id,
        evaluation_id,
        AiEvaluation.ai_agent_id == agent_id,
        missing="Evaluation not found",
        lock=True,
    )


def create_evaluation(
    session: Session,
    ctx: Ctx,
    agent_id: uuid.UUID,
    *,
    message_id: uuid.UUID,
    score: int,
    correction: str | None,
) -> AiEvaluation:
    ctx.require(agents.VIEW)
    agents.share_agent(session, ctx.tenant_id, agent_id)
    _check_reply(session, ctx, agent_id, message_id)
    evaluation = AiEvaluation(
        tenant_id=ctx.tenant_id,
        ai_agent_id=agent_id,
        message_id=message_id,
        evaluator_id=ctx.user_id,
        score=score,
        correction=correction,
    )
    session.add(evaluation)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        if "uq_ai_evaluations_message_evaluator" in str(exc.orig):
            raise Conflict(
                "You already rated this reply; change that evaluation instead",
                details=[{"field": "message_id", "message": "already rated by you"}],
            ) from exc
        raise
    session.refresh(evaluation)
    activity.record(
        session,
        ctx,
        "ai_evaluation.created",
        "ai_evaluation",
        evaluation.id,
        after=view(evaluation),
    )
    return evaluation


def replace_evaluation(
    session: Session,
    ctx: Ctx,
    agent_id: uuid.UUID,
    evaluation_id: uuid.UUID,
    *,
    score: int,
    correction: str | None,
) -> AiEvaluation:
    """Replace the score and correction (the rated message stays)."""
    evaluation = _get(session, ctx, agent_id, evaluation_id)
    before = view(evaluation)
    evaluation.score, evaluation.correction = score, correction
    evaluation.updated_at = func.now()
    session.flush()
    session.refresh(evaluation)
    activity.record(
        session,
        ctx,
        "ai_evaluation.updated",
        "ai_evaluation",
        evaluation.id,
        before=before,
        after=view(evaluation),
    )
    return evaluation


def delete_evaluation(
    session: Session, ctx: Ctx, agent_id: uuid.UUID, evaluation_id: uuid.UUID
) -> None:
    evaluation = _get(session, ctx, agent_id, evaluation_id)
    activity.record(
        session,
        ctx,
        "ai_evaluation.deleted",
        "ai_evaluation",
        evaluation.id,
        before=view(evaluation),
    )
    session.delete(evaluation)
    session.flush()
