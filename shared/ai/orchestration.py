"""Orchestration rules: route a conversation to an AI agent by intent, channel or keyword.

Rules are tried by ``priority`` (low first). Each match type needs its own fields:
``intent`` an intent name and its example phrases (``keywords``), ``channel`` a
channel, ``keyword`` at least one keyword. The target must be one of the tenant's AI
agents (422 naming ``target_ai_agent_id`` otherwise).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared import activity
from shared.ai import agents
from shared.ai.config_views import OrchestrationRuleView
from shared.ai.handoff_rules import RuleLimitReached
from shared.context import Ctx
from shared.errors import NotFound, ValidationFailed
from shared.models import AiOrchestrationRule
from shared.models.inbox import CHANNELS
from shared.pagination import Page, paginate
from shared.sql import count_under_lock, tenant_row

#: Rules one workspace may have. WHY: every inbound message of a workspace with active
#: rules reads all of them (:func:`shared.ai.ownership.route`).
MAX_RULES = 500

FIELDS = (
    "name",
    "match_type",
    "intent",
    "channel",
    "keywords",
    "target_ai_agent_id",
    "priority",
    "is_active",
)


def view(rule: AiOrchestrationRule) -> dict[str, Any]:
    return OrchestrationRuleView.data(rule)


def _validate(session: Session, ctx: Ctx, fields: dict[str, Any]) -> None:
    """422 for a field the match does not take; the target agent is locked FOR KEY SHARE
    (``agents.check_owned``), so this goes before any lock on a rule."""
    match = fields["match_type"]
    problems = []
    if match == "intent":
        if not fields["intent"]:
            problems.append({"field": "intent", "message": "required for intent rules"})
        if not fields["keywords"]:
            problems.append({"field": "keywords", "message": "give the intent's example phrases"})
    elif fields["intent"] is not None:
        problems.append({"field": "intent", "message": "only for intent rules"})
    if match == "channel":
        if fields["channel"] is None:
            problems.append({"field": "channel", "message": "required for channel rules"})
        elif fields["channel"] not in CHANNELS:
            problems.append({"field": "channel", "message": f"one of {', '.join(CHANNELS)}"})
    elif fields["channel"] is not None:
        problems.append({"field": "channel", "message": "only for channel rules"})
    if match == "keyword" and not fields["keywords"]:
        problems.append({"field": "keywords", "message": "name at least one keyword"})
    if match == "channel" and fields["keywords"]:
        problems.append({"field": "keywords", "message": "not for channel rules"})
    if problems:
        raise ValidationFailed(
            f"{problems[0]['field']}: {problems[0]['message']}", details=problems
        )
    agents.check_owned(session, ctx, fields["target_ai_agent_id"], "target_ai_agent_id")


def list_rules(
    session: Session,
    ctx: Ctx,
    *,
    limit: int,
    cursor: str | None = None,
    target_ai_agent_id: uuid.UUID | None = None,
) -> Page[AiOrchestrationRule]:
    ctx.require(agents.VIEW)
    r = AiOrchestrationRule
    query = select(r).where(r.tenant_id == ctx.tenant_id)
    if target_ai_agent_id:
        query = query.where(r.target_ai_agent_id == target_ai_agent_id)
    return paginate(
        session, query, created_at=r.created_at, id_column=r.id, limit=limit, cursor=cursor
    )


def _get(session: Session, ctx: Ctx, rule_id: uuid.UUID) -> AiOrchestrationRule:
    return tenant_row(
        session,
        AiOrchestrationRule,
        ctx.tenant_id,
        rule_id,
        missing="Orchestration rule not found",
        lock=True,
    )


def _exists(session: Session, ctx: Ctx, rule_id: uuid.UUID) -> None:
    """404 unless the rule exists, without locking it (see :func:`replace_rule`)."""
    r = AiOrchestrationRule
    if session.scalar(select(r.id).where(r.tenant_id == ctx.tenant_id, r.id == rule_id)):
        return
    raise NotFound("Orchestration rule not found")


def _check_room(session: Session, ctx: Ctx) -> None:
    """422 ``rule_limit`` when the workspace has :data:`MAX_RULES` already.

    NOTE: a transaction-scoped advisory lock per tenant, so two concurrent creates cannot
    both pass the count.
    """
    count = count_under_lock(
        session,
        f"ai_orchestration_rules:{ctx.tenant_id}",
        select(func.count()).where(AiOrchestrationRule.tenant_id == ctx.tenant_id),
    )
    if count >= MAX_RULES:
        raise RuleLimitReached(
            f"A workspace may have at most {MAX_RULES} orchestration rules",
            details=[{"field": "body", "message": f"at most {MAX_RULES} rules per workspace"}],
        )


def create_rule(session: Session, ctx: Ctx, fields: dict[str, Any]) -> AiOrchestrationRule:
    ctx.require(agents.MANAGE)
    _validate(session, ctx, fields)
    _check_room(session, ctx)
    rule = AiOrchestrationRule(tenant_id=ctx.tenant_id, **{k: fields[k] for k in FIELDS})
    session.add(rule)
    session.flush()
    session.refresh(rule)
    activity.record(
        session,
        ctx,
        "ai_orchestration_rule.created",
        "ai_orchestration_rule",
        rule.id,
        after=view(rule),
    )
    return rule


def replace_rule(
    session: Session, ctx: Ctx, rule_id: uuid.UUID, fields: dict[str, Any]
) -> AiOrchestrationRule:
    """Replace every field of the rule (PUT).

    NOTE: the target agent is locked before the rule, the order of an agent's deletion
    (the agent, then its cascade): a 404 first, unlocked; an agent deleted meanwhile is
    the 422 naming ``target_ai_agent_id``, or a 404 when the rule went with it.
    """
    ctx.require(agents.MANAGE)
    _exists(session, ctx, rule_id)
    try:
        _validate(session, ctx, fields)
    except ValidationFailed:
        _exists(session, ctx, rule_id)
        raise
    rule = _get(session, ctx, rule_id)
    before = view(rule)
    for name in FIELDS:
        setattr(rule, name, fields[name])
    rule.updated_at = func.now()
    session.flush()
    session.refresh(rule)
    activity.record(
        session,
        ctx,
        "ai_orchestration_rule.updated",
        "ai_orchestration_rule",
        rule.id,
        before=before,
        after=view(rule),
    )
    return rule


def delete_rule(session: Session, ctx: Ctx, rule_id: uuid.UUID) -> None:
    ctx.require(agents.MANAGE)
    rule = _get(session, ctx, rule_id)
    activity.record(
        session,
        ctx,
        "ai_orchestration_rule.deleted",
        "ai_orchestration_rule",
        rule.id,
        before=view(rule),
    )
    session.delete(rule)
    session.flush()
