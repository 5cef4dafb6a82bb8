"""Which AI agent owns a conversation, and whether it should answer now.

- *Assignments* put an agent on an integration account (preferred) or on a whole
  channel. Mode ``always`` answers at any time; ``outside_working_hours`` only while
  the working hours are closed: the assignment's division's own hours if it has
  them, else the tenant's, in the tenant's timezone (no schedule = always open, so
  such an assignment never answers). An assignment's division is where the AI's
  conversations are queued, and so where its handoffs land.
- *Orchestration rules* (lowest ``priority`` first) then route between agents, by
  the conversation's channel, a keyword of the message, or an intent (its name or
  example phrases, kept in ``keywords``). An unmatched conversation stays with the
  agent that has it.
- A human who took over or replied (``ai_agent_id`` set, ``ai_active`` false), or a
  conversation a human already holds when the AI first sees it, is never claimed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from shared.ai.matching import contains_phrase, first_match, fold
from shared.models import Conversation
from shared.models.ai import AiAgent, AiAgentAssignment, AiOrchestrationRule
from shared.timekeeping import schedules


@dataclass(frozen=True, slots=True)
class Owner:
    """The agent that answers now, the division its assignment queues into, its window."""

    agent_id: uuid.UUID
    division_id: uuid.UUID | None
    settle_seconds: float


def _assignments(session: Session, conversation: Conversation) -> list[Any]:
    """Active assignments of active agents covering the conversation, account ones first.

    PERF: each row also says whether the tenant has active orchestration rules, so the
    common tenant (none) costs this one query per inbound message.
    """
    has_rules = (
        select(AiOrchestrationRule.id)
        .where(
            AiOrchestrationRule.tenant_id == conversation.tenant_id,
            AiOrchestrationRule.is_active.is_(True),
        )
        .exists()
    )
    account = conversation.integration_account_id
    covers = and_(
        AiAgentAssignment.integration_account_id.is_(None),
        AiAgentAssignment.channel == conversation.channel,
    )
    if account is not None:
        covers = or_(AiAgentAssignment.integration_account_id == account, covers)
    rows = session.execute(
        select(
            AiAgentAssignment.ai_agent_id,
            AiAgentAssignment.integration_account_id,
            AiAgentAssignment.division_id,
            AiAgentAssignment.mode,
            AiAgent.settle_seconds,
            has_rules.label("has_rules"),
        )
        .join(AiAgent, AiAgent.id == AiAgentAssignment.ai_agent_id)
        .where(
            AiAgentAssignment.tenant_id == conversation.tenant_id,
            AiAgentAssignment.is_active.is_(True),
            AiAgent.tenant_id == conversation.tenant_id,
            AiAgent.is_active.is_(True),
            covers,
        )
        .order_by(AiAgentAssignment.integration_account_id.is_(None), AiAgentAssignment.created_at)
    ).all()
    return list(rows)


def _on_duty(session: Session, tenant_id: uuid.UUID, rows: list[Any]) -> Any | None:
    """The first assignment whose mode lets it answer now."""
    for row in rows:
        if row.mode == "always":
            return row
        if not schedules.is_open_now(session, tenant_id, row.division_id):
            return row
    return None


def route(session: Session, tenant_id: uuid.UUID, channel: str, text: str) -> uuid.UUID | None:
    """The target agent of the first orchestration rule the message matches, if any."""
    rules = session.execute(
        select(
            AiOrchestrationRule.match_type,
            AiOrchestrationRule.intent,
            AiOrchestrationRule.channel,
            AiOrchestrationRule.keywords,
            AiOrchestrationRule.target_ai_agent_id,
            AiAgent.settle_seconds,
        )
        .join(AiAgent, AiAgent.id == AiOrchestrationRule.target_ai_agent_id)
        .where(
            AiOrchestrationRule.tenant_id == tenant_id,
            AiOrchestrationRule.is_active.is_(True),
            AiAgent.tenant_id == tenant_id,
            AiAgent.is_active.is_(True),
        )
        .order_by(AiOrchestrationRule.priority, AiOrchestrationRule.created_at)
    ).all()
    folded = fold(text)
    for rule in rules:
        if rule.match_type == "channel" and rule.channel == channel:
            return rule
        if rule.match_type == "keyword" and first_match(folded, rule.keywords or ()):
            return rule
        if rule.match_type == "intent":
            phrases = [*(rule.keywords or ()), *([rule.intent] if rule.intent else [])]
            if any(contains_phrase(folded, p) for p in phrases):
                return rule
    return None


def _active_settle(session: Session, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> float | None:
    """The agent's settle window if it is active, else None."""
    return session.scalar(
        select(AiAgent.settle_seconds).where(
            AiAgent.id == agent_id, AiAgent.tenant_id == tenant_id, AiAgent.is_active.is_(True)
        )
    )


def owner_of(session: Session, conversation: Conversation, text: str) -> Owner | None:
    """The agent that should answer this conversation's new message ``text``, or None.

    A conversation handed to the AI explicitly (``handover_to_ai``) that no assignment
    covers keeps its agent; one that assignments cover follows their modes.
    """
    owned = conversation.ai_agent_id is not None
    if owned and not conversation.ai_active:
        return None  # a human took over, or the AI handed off
    if not owned and not conversation.ai_active and conversation.assignee_id is not None:
        return None  # a human had it before any AI agent was set up
    rows = _assignments(session, conversation)
    duty = _on_duty(session, conversation.tenant_id, rows)
    if duty is None and (rows or not owned):
        return None
    division_id = duty.division_id if duty is not None else None
    if not rows or rows[0].has_rules:
        routed = route(session, conversation.tenant_id, conversation.channel, text)
        if routed is not None:
            return Owner(routed.target_ai_agent_id, division_id, routed.settle_seconds)
    if owned:
        # PERF: the owner is usually one of the assignments just read (active, with its window).
        known = next((r for r in rows if r.ai_agent_id == conversation.ai_agent_id), None)
        settle = (
            known.settle_seconds
            if known is not None
            else _active_settle(session, conversation.tenant_id, conversation.ai_agent_id)
        )
        if settle is not None:
            return Owner(conversation.ai_agent_id, division_id, settle)
    if duty is None:
        return None
    return Owner(duty.ai_agent_id, division_id, duty.settle_seconds)


def handback_owner(session: Session, conversation: Conversation) -> uuid.UUID | None:
    """The agent a conversation handed back to the AI goes to (``handover_to_ai``).

    Its previous agent if still active, else the first assignment covering it
    (whatever its mode: a person handed it over on purpose).
    """
    if (
        conversation.ai_agent_id is not None
        and _active_settle(session, conversation.tenant_id, conversation.ai_agent_id) is not None
    ):
        return conversation.ai_agent_id
    rows = _assignments(session, conversation)
    return rows[0].ai_agent_id if rows else None
