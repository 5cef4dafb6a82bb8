"""Handoff rules: when an AI agent passes a conversation to humans, and to which division.

Rules live under their agent: a rule id of another agent (or tenant) answers 404. Each
kind needs its own fields and refuses the others, so a rule never carries settings
that would silently do nothing:

- ``keyword``: ``keywords`` (at least one), matched in the contact's message;
- ``explicit_request``: optional extra ``keywords`` besides the built-in phrases
  ("talk to a human"...);
- ``max_turns``: ``max_turns``, AI replies on the conversation before the handoff;
- ``low_confidence``: optional ``threshold`` (0..1), else the agent's
  ``confidence_threshold``;
- ``model_error``, ``usage_limit``: nothing beyond the shared fields.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared import activity
from shared.ai import agents
from shared.ai.config_views import HandoffRuleView
from shared.ai.references import check_division
from shared.context import Ctx
from shared.errors import ValidationFailed
from shared.models import AiHandoffRule
from shared.sql import count_under_lock, tenant_row

FIELDS = (
    "kind",
    "keywords",
    "max_turns",
    "threshold",
    "division_id",
    "message",
    "position",
    "is_active",
)
#: Rules one AI agent may have. WHY: every reply reads all of them, and their list has no
#: pages; a handful is the norm.
MAX_RULES = 100
#: The kind-specific fields and which kinds may carry each.
_KIND_FIELDS = {
    "keywords": ("keyword", "explicit_request"),
    "max_turns": ("max_turns",),
    "threshold": ("low_confidence",),
}


class RuleLimitReached(ValidationFailed):
    code = "rule_limit"


def view(rule: AiHandoffRule) -> dict[str, Any]:
    return HandoffRuleView.data(rule)


def _validate(fields: dict[str, Any]) -> None:
    kind = fields["kind"]
    problems = []
    for name, kinds in _KIND_FIELDS.items():
        value = fields[name]
        if kind not in kinds and value not in (None, []):
            problems.append({"field": name, "message": f"only for {' or '.join(kinds)} rules"})
    if kind == "keyword" and not fields["keywords"]:
        problems.append({"field": "keywords", "message": "name at least one keyword"})
    if kind == "max_turns" and fields["max_turns"] is None:
        problems.append({"field": "max_turns", "message": "required for max_turns rules"})
    if problems:
        raise ValidationFailed(
            f"{problems[0]['field']}: {problems[0]['message']}", details=problems
        )


def list_rules(session: Session, ctx: Ctx, agent_id: uuid.UUID) -> list[AiHandoffRule]:
    """The agent's rules in the order they are tried (position, then age); a handful."""
    agents.get_agent(session, ctx, agent_id)
    r = AiHandoffRule
    query = (
        select(r)
        .where(r.tenant_id == ctx.tenant_id, r.ai_agent_id == agent_id)
        .order_by(r.position, r.created_at, r.id)
    )
    return list(session.scalars(query))


def _get(session: Session, ctx: Ctx, agent_id: uuid.UUID, rule_id: uuid.UUID) -> AiHandoffRule:
    agents.get_agent(session, ctx, agent_id)
    return tenant_row(
        session,
        AiHandoffRule,
        ctx.tenant_id,
        rule_id,
        AiHandoffRule.ai_agent_id == agent_id,
        missing="Handoff rule not found",
        lock=True,
    )


def _check_room(session: Session, ctx: Ctx, agent_id: uuid.UUID) -> None:
    """422 ``rule_limit`` when the agent has :data:`MAX_RULES` already.

    NOTE: a transaction-scoped advisory lock per agent, so two concurrent creates cannot
    both pass the count (locking the agent row would hold up its replies' writes).
    """
    count = count_under_lock(
        session,
        f"ai_handoff_rules:{agent_id}",
        select(func.count()).where(
            AiHandoffRule.tenant_id == ctx.tenant_id, AiHandoffRule.ai_agent_id == agent_id
        ),
    )
    if count >= MAX_RULES:
        raise RuleLimitReached(
            f"An AI agent may have at most {MAX_RULES} handoff rules",
            details=[{"field": "body", "message": f"at most {MAX_RULES} rules per AI agent"}],
        )


def create_rule(
    session: Session, ctx: Ctx, agent_id: uuid.UUID, fields: dict[str, Any]
) -> AiHandoffRule:
    ctx.require(agents.MANAGE)
    agents.share_agent(session, ctx.tenant_id, agent_id)
    _validate(fields)
    check_division(session, ctx, fields["division_id"], "division_id")
    _check_room(session, ctx, agent_id)
    rule = AiHandoffRule(
        tenant_id=ctx.tenant_id, ai_agent_id=agent_id, **{k: fields[k] for k in FIELDS}
    )
    session.add(rule)
    session.flush()
    session.refresh(rule)
    activity.record(
        session, ctx, "ai_handoff_rule.created", "ai_handoff_rule", rule.id, after=view(rule)
    )
    return rule


def replace_rule(
    session: Session, ctx: Ctx, agent_id: uuid.UUID, rule_id: uuid.UUID, fields: dict[str, Any]
) -> AiHandoffRule:
    ctx.require(agents.MANAGE)
    rule = _get(session, ctx, agent_id, rule_id)
    before = view(rule)
    _validate(fields)
    check_division(session, ctx, fields["division_id"], "division_id")
    for name in FIELDS:
        setattr(rule, name, fields[name])
    rule.updated_at = func.now()
    session.flush()
    session.refresh(rule)
    activity.record(
        session,
        ctx,
        "ai_handoff_rule.updated",
        "ai_handoff_rule",
        rule.id,
        before=before,
        after=view(rule),
    )
    return rule


def delete_rule(session: Session, ctx: Ctx, agent_id: uuid.UUID, rule_id: uuid.UUID) -> None:
    ctx.require(agents.MANAGE)
    rule = _get(session, ctx, agent_id, rule_id)
    activity.record(
        session, ctx, "ai_handoff_rule.deleted", "ai_handoff_rule", rule.id, before=view(rule)
    )
    session.delete(rule)
    session.flush()
