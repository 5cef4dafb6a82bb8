"""Dry-run: what a rule would decide and do on an event, changing nothing.

It calls exactly what the worker calls (:func:`facts.gather`,
:func:`evaluator.decide`, the same action rendering), but facts are built with
reads only and no action is applied, so no row, event or message is written.
The facts come from a real event (``event_id``: an automation queue row or an
outbox event of the caller's tenant) or from a test ``payload`` (the event's data;
keys that name attributes, like ``"contact.country"``, set those facts directly).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shared.automation import rules as rule_service
from shared.automation.attributes import lookup
from shared.automation.compiled import CompiledRule
from shared.automation.evaluator import decide, rendered_params
from shared.automation.facts import changes_of, gather
from shared.context import Ctx
from shared.errors import NotFound, ValidationFailed
from shared.events import Causation
from shared.models import AutomationEvent, OutboxEvent


def _event(session: Session, ctx: Ctx, event_id: uuid.UUID) -> tuple[str, dict[str, Any], Any]:
    """``(type, payload, causation)`` of the tenant's automation or outbox event ``event_id``."""
    row = session.execute(
        select(
            AutomationEvent.event_type, AutomationEvent.payload, AutomationEvent.causation
        ).where(
            AutomationEvent.tenant_id == ctx.tenant_id,
            or_(AutomationEvent.id == event_id, AutomationEvent.outbox_event_id == event_id),
        )
    ).first()
    if row is None:
        row = session.execute(
            select(OutboxEvent.type, OutboxEvent.data, OutboxEvent.causation).where(
                OutboxEvent.tenant_id == ctx.tenant_id, OutboxEvent.id == event_id
            )
        ).first()
    if row is None:
        raise NotFound("Event not found")
    return row[0], row[1], row[2]


def effective_state(rule: dict[str, Any]) -> dict[str, Any]:
    """Whether the rule would run now, and why not (snooze, schedule and global control
    arrive with the operations issue and will add their reasons here)."""
    reasons = [] if rule.get("is_active", True) else ["the rule is inactive"]
    return {
        "state": "active" if not reasons else "inactive",
        "is_active": rule.get("is_active", True),
        "reasons": reasons,
    }


def dry_run(
    session: Session,
    ctx: Ctx,
    rule_id: uuid.UUID,
    *,
    rule: dict[str, Any] | None = None,
    payload: dict[str, Any] | None = None,
    event_id: uuid.UUID | None = None,
    event_type: str | None = None,
) -> dict[str, Any]:
    ctx.require(rule_service.MANAGE)
    saved = rule_service.get_rule(session, ctx, rule_id)
    body = rule_service.snapshot(saved)
    if rule is not None:
        body.update(
            {k: v for k, v in rule.items() if k in rule_service.RULE_FIELDS and v is not None}
        )
        rule_service.validate_rule(session, ctx, body)
    causation = Causation()
    if event_id is not None:
        event_type, event_payload, raw_causation = _event(session, ctx, event_id)
        causation = Causation.from_dict(raw_causation)
        event_payload = {**event_payload, **(payload or {})}
    else:
        event_type = event_type or body["trigger_event_types"][0]
        event_payload = payload or {}
    if event_type not in body["trigger_event_types"]:
        raise ValidationFailed.field("event_type", f"the rule is not triggered by '{event_type}'")
    facts, mute = gather(session, ctx.tenant_id, event_type, event_payload)
    facts.update({k: v for k, v in event_payload.items() if lookup(k) is not None})
    changes = changes_of(event_type, event_payload)
    compiled = CompiledRule.from_snapshot(body)
    decision = decide(compiled, facts, changes, causation)
    state = effective_state(body)
    if mute is not None:
        state["reasons"].append(f"the conversation is muted until {mute.until or 'unmuted'}")
    would_run = decision.matched and not state["reasons"]
    return {
        "rule": body,
        "event_type": event_type,
        "matched": decision.matched,
        "status": decision.status,
        "reason": decision.reason,
        "conditions": decision.trace,
        "actions": [
            {"type": a.get("type"), "params": rendered_params(a, facts), "would_run": would_run}
            for a in compiled.actions
        ],
        "facts": facts,
        "changes": changes,
        "effective_state": state,
    }
