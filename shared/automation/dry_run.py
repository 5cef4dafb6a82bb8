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

from sqlalchemy import Uuid, bindparam, func, literal, or_, select, true, union_all
from sqlalchemy.orm import Session

from shared.automation import clock
from shared.automation import rules as rule_service
from shared.automation.attributes import lookup
from shared.automation.compiled import CompiledRule, compiled_rule
from shared.automation.effective import Control, Gate, Moment, explain, subject_of
from shared.automation.evaluator import causation_of, decide, rendered_params
from shared.automation.facts import changes_of, conversation_id_of, gather
from shared.context import Ctx
from shared.errors import NotFound, ValidationFailed
from shared.events import Causation
from shared.models import AutomationEvent, AutomationRule, AutomationSettings, OutboxEvent, Tenant


def _event_columns(model: Any, order: int, type_: Any, data: Any, *where: Any) -> Any:
    return select(
        literal(order).label("preference"),
        type_.label("event_type"),
        data.label("event_payload"),
        model.causation.label("event_causation"),
    ).where(model.tenant_id == bindparam("tenant_id"), *where)


def _rule_and_event_statement() -> Any:
    """PERF: the saved rule and the event in one round trip, built once (Core rows, no
    ORM objects). The event is the tenant's automation queue row (by its id or its
    outbox event's), else its outbox event; both absent: NULL event columns."""
    event_id = bindparam("event_id", type_=Uuid)
    queued = _event_columns(
        AutomationEvent,
        0,
        AutomationEvent.event_type,
        AutomationEvent.payload,
        or_(AutomationEvent.id == event_id, AutomationEvent.outbox_event_id == event_id),
    )
    outbox = _event_columns(
        OutboxEvent, 1, OutboxEvent.type, OutboxEvent.data, OutboxEvent.id == event_id
    )
    event = union_all(queued, outbox).order_by("preference").limit(1).subquery("event")
    r = AutomationRule
    s = AutomationSettings
    return (
        select(
            *(getattr(r, name) for name in rule_service.RULE_FIELDS),
            r.id,
            r.version,
            # the effective state's inputs, as the evaluator reads them
            r.snoozed_until,
            r.schedule,
            r.rollout_percentage,
            s.paused,
            s.paused_event_types,
            s.max_actions_per_minute,
            s.pause_reason,
            Tenant.timezone.label("tenant_timezone"),
            func.now().label("now"),
            event.c.event_type,
            event.c.event_payload,
            event.c.event_causation,
        )
        .join(Tenant, Tenant.id == r.tenant_id)
        .outerjoin(s, s.tenant_id == r.tenant_id)
        .outerjoin(event, true())
        .where(r.tenant_id == bindparam("tenant_id"), r.id == bindparam("rule_id"))
    )


_RULE_AND_EVENT = _rule_and_event_statement()


def _load(session: Session, ctx: Ctx, rule_id: uuid.UUID, event_id: uuid.UUID | None) -> Any:
    """The rule's row (404 when not the tenant's), with the event's columns when asked."""
    row = session.execute(
        _RULE_AND_EVENT,
        {"tenant_id": ctx.tenant_id, "rule_id": rule_id, "event_id": event_id},
    ).first()
    if row is None:
        raise NotFound("Automation rule not found")
    if event_id is not None and row.event_type is None:
        raise NotFound("Event not found")
    return row


def effective_state(
    row: Any, body: dict[str, Any], event_type: str | None, subject_id: uuid.UUID | None
) -> dict[str, Any]:
    """The rule's effective state for this event, by the evaluator's own checks.

    ``row`` is the saved rule with the tenant's control and clock; ``body`` the rule as
    tested (unsaved edits may switch ``is_active``).
    """
    gate = Gate.of(row)
    gate = Gate(
        bool(body.get("is_active", True)),
        gate.snoozed_until,
        gate.schedule,
        gate.rollout_percentage,
    )
    moment = Moment(
        now=clock.now(row.now),
        tenant_timezone=row.tenant_timezone or "UTC",
        control=Control.of(row) if row.paused is not None else Control(),
        event_type=event_type,
        subject_id=subject_id,
    )
    return explain(row.id, gate, moment, trigger_event_types=body["trigger_event_types"])


#: Payload fields the facts read as a given shape (events carry them so; a test payload
#: is the caller's to get wrong): name -> (Python type, what to call it).
_PAYLOAD_SHAPES: dict[str, tuple[type, str]] = {
    "attachments": (list, "a list of attachments"),
    "custom_attributes": (dict, "an object"),
    "tags": (list, "a list of tags"),
    "added": (list, "a list of tags"),
    "removed": (list, "a list of tags"),
}


def _check_payload(payload: dict[str, Any]) -> None:
    """422 naming a test payload's field that an event never carries in that shape (the
    facts would fail on it: a 500)."""
    for name, (shape, described) in _PAYLOAD_SHAPES.items():
        value = payload.get(name)
        if value is not None and not isinstance(value, shape):
            raise ValidationFailed.field(f"payload.{name}", f"must be {described}")
    for name in ("tags", "added", "removed"):
        if not all(isinstance(tag, str) for tag in payload.get(name) or ()):
            raise ValidationFailed.field(f"payload.{name}", "must be a list of tags")


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
    row = _load(session, ctx, rule_id, event_id)
    body = rule_service.snapshot(row)
    if rule is not None:
        body.update(
            {k: v for k, v in rule.items() if k in rule_service.RULE_FIELDS and v is not None}
        )
        rule_service.validate_rule(session, ctx, body)
        compiled = CompiledRule.from_snapshot(body)
    else:  # the saved rule was validated when saved: compile it once per version
        compiled = compiled_rule(body)
    causation = Causation()
    if event_id is not None:
        event_type = row.event_type
        causation = causation_of(
            session, ctx.tenant_id, row.event_type, row.event_payload, row.event_causation
        )
        event_payload = {**row.event_payload, **(payload or {})}
    else:
        event_type = event_type or body["trigger_event_types"][0]
        event_payload = payload or {}
    if event_type not in body["trigger_event_types"]:
        raise ValidationFailed.field("event_type", f"the rule is not triggered by '{event_type}'")
    _check_payload(payload or {})
    facts, mute = gather(session, ctx.tenant_id, event_type, event_payload)
    facts.update({k: v for k, v in event_payload.items() if lookup(k) is not None})
    changes = changes_of(event_type, event_payload)
    decision = decide(compiled, facts, changes, causation)
    subject = subject_of(event_type, event_payload, conversation_id_of(event_type, event_payload))
    state = effective_state(row, body, event_type, subject)
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
