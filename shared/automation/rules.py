"""Automation rules: create, read, change, toggle, delete, each validated whole before it is stored.

A rule that cannot be evaluated is refused when saved (422 with the exact path of
every problem), never discovered at run time: the engine checks the condition tree
and the action shapes, this module checks trigger types, the tenant's rule limit
and that every agent, division, quick reply and webhook endpoint an action names
belongs to the caller's tenant; when one of those is deleted, its delete takes it off
the rules naming it (:func:`forget_referent`). Every change bumps the tenant's rules
version in the same transaction, which is how workers know their cached rules are stale.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Text, cast, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared import activity
from shared.automation import actions as action_catalogue
from shared.automation import clock
from shared.automation.conditions import validate_conditions
from shared.automation.views import RuleView
from shared.config import get_settings
from shared.context import Ctx
from shared.errors import NotFound, ValidationFailed
from shared.event_types import CATALOGUE
from shared.models import (
    AutomationRule,
    AutomationSettings,
    Division,
    QuickReply,
    User,
    WebhookEndpoint,
)
from shared.pagination import Page, paginate
from shared.sql import contains_pattern, lock_key

VIEW = "automation.view"
MANAGE = "automation.manage"

#: The fields of a rule body (what dry-run accepts unsaved and runs snapshot).
RULE_FIELDS = (
    "name",
    "description",
    "trigger_event_types",
    "conditions",
    "actions",
    "priority",
    "stop_processing",
    "is_active",
)
EMPTY_CONDITIONS: dict[str, Any] = {"match": "all", "conditions": []}

#: Which table each kind of :func:`actions.references` must be found in, tenant-scoped.
_OWNED = {
    "agents": (User, (User.deleted_at.is_(None),), "no such agent in this workspace"),
    "divisions": (Division, (), "no such division in this workspace"),
    "quick_replies": (QuickReply, (), "no such quick reply in this workspace"),
    "webhook_endpoints": (WebhookEndpoint, (), "no such webhook endpoint in this workspace"),
}


class RuleLimitReached(ValidationFailed):
    code = "rule_limit"


def snapshot(rule: AutomationRule) -> dict[str, Any]:
    """The rule as its runs keep it: every field that decides what it does, and its version."""
    data = {name: getattr(rule, name) for name in RULE_FIELDS}
    data["id"] = str(rule.id)
    data["version"] = rule.version
    return data


# ---------------------------------------------------------------- validation


def _problem(path: str, message: str, code: str) -> dict[str, Any]:
    return {"field": path, "message": message, "code": code}


def _trigger_problems(types: list[str]) -> list[dict[str, Any]]:
    problems = []
    if not types:
        problems.append(_problem("trigger_event_types", "name at least one event type", "empty"))
    for index, name in enumerate(types):
        known = CATALOGUE.get(name)
        if known is None:
            problems.append(
                _problem(f"trigger_event_types[{index}]", f"unknown event type '{name}'", "unknown")
            )
        elif not known.automation:
            problems.append(
                _problem(
                    f"trigger_event_types[{index}]",
                    f"'{name}' cannot trigger automation rules",
                    "not_triggerable",
                )
            )
    return problems


def _ownership_problems(
    session: Session,
    ctx: Ctx,
    actions: list[Any],
    *,
    share_lock_except: frozenset[uuid.UUID] | None = None,
) -> list[dict[str, Any]]:
    """One problem per referenced id that is not the caller's tenant's (one query per kind).

    With ``share_lock_except`` (a save), the rows named (every kind), but those, are
    share-locked first (:func:`_share_lock`).
    """
    refs = action_catalogue.references(actions)
    problems = []
    by_kind: dict[str, list[tuple[str, uuid.UUID]]] = {}
    for path, kind, ref_id in refs:
        by_kind.setdefault(kind, []).append((path, ref_id))
    for kind, items in by_kind.items():
        model, extra, message = _OWNED[kind]
        if share_lock_except is not None:
            _share_lock(session, ctx, model, {ref_id for _, ref_id in items} - share_lock_except)
        if model is QuickReply:  # another agent's personal reply is invisible to the caller
            extra = (or_(QuickReply.scope == "shared", QuickReply.owner_id == ctx.user_id),)
        found = set(
            session.scalars(
                select(model.id).where(
                    model.tenant_id == ctx.tenant_id,
                    model.id.in_({ref_id for _, ref_id in items}),
                    *extra,
                )
            )
        )
        problems += [
            _problem(path, message, "not_found") for path, ref_id in items if ref_id not in found
        ]
    return problems


def _share_lock(session: Session, ctx: Ctx, model: Any, ids: set[uuid.UUID]) -> None:
    """Lock ``ids`` of ``model`` (those that exist) ``FOR SHARE`` until the caller commits.

    Every kind alike: an agent's deletion locks the agent (``FOR NO KEY UPDATE``,
    :func:`shared.identity.agents.get_agent`), a quick reply's or webhook endpoint's
    deletion its row (``FOR UPDATE``), then the rules naming it; read unlocked, a rule
    saved meanwhile kept the deleted row's id.

    NOTE: no foreign key covers the ids in ``actions``. Read unlocked, a division being
    deleted (its ``forget_referent`` done, uncommitted) was still found, and the rule
    saved kept its dead id. ``FOR SHARE`` conflicts with the deletion's ``FOR NO KEY
    UPDATE`` (``FOR KEY SHARE`` would not): the save waits for the deletion and finds the
    division gone (422), or the deletion waits for the save and then takes it off the
    rule. Lock order: a division the rule named already is not locked here, after the
    rule (:func:`update_rule`): the rule's own lock keeps it (its deletion has to take the
    rule, and would wait for it), and locked it made a cycle with that deletion, which
    takes the division, then the rules naming it. A division the rule did not name meets
    no such cycle: its deletion does not wait for this rule.
    """
    if ids:
        session.execute(
            select(model.id)
            .where(model.tenant_id == ctx.tenant_id, model.id.in_(ids))
            .order_by(model.id)
            .with_for_update(read=True)
        ).all()


def validate_rule(
    session: Session,
    ctx: Ctx,
    body: dict[str, Any],
    *,
    share_lock_except: frozenset[uuid.UUID] | None = None,
) -> None:
    """Raise 422 listing every problem of a whole rule body (paths from the body's root).

    A save passes ``share_lock_except`` (the rows the stored rule names
    already, or none): the other ones it names are share-locked until it commits.
    """
    problems = _trigger_problems(body["trigger_event_types"])
    problems += [
        _problem(p.path, p.message, p.code)
        for p in validate_conditions(body["conditions"], path="conditions")
    ]
    action_problems = action_catalogue.validate_actions(body["actions"], path="actions")
    problems += [_problem(p.path, p.message, p.code) for p in action_problems]
    if not action_problems:
        problems += _ownership_problems(
            session,
            ctx,
            body["actions"],
            share_lock_except=share_lock_except,
        )
    if problems:
        raise ValidationFailed(
            f"The rule has {len(problems)} problem(s); the first: "
            f"{problems[0]['field']}: {problems[0]['message']}",
            details=problems,
        )


# ---------------------------------------------------------------- the rules version


def bump_rules_version(session: Session, tenant_id: uuid.UUID) -> int:
    """Increment the tenant's rules version (locking its row until commit); return it."""
    stmt = insert(AutomationSettings).values(tenant_id=tenant_id, rules_version=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[AutomationSettings.tenant_id],
        set_={
            "rules_version": AutomationSettings.rules_version + 1,
            "updated_at": func.now(),
        },
    ).returning(AutomationSettings.rules_version)
    return session.scalar(stmt)


def hold_rules(session: Session, tenant_id: uuid.UUID) -> None:
    """Wait for the tenant's evaluations in flight, and keep new ones waiting, until the
    caller commits: taken first by every change of a rule (:func:`get_rule` ``for_update``).

    NOTE: an evaluation decides its rules, then applies their actions; a rule switched
    off (snoozed, edited, deleted) in between acted once more, after the change had
    answered. Each evaluation holds this lock shared (:func:`hold_rules_shared`) from
    before it reads the rules version until it commits, so a change either waits for it
    or is seen by it. An advisory lock, not the rule's row: a referent's deletion locks
    its agent or division and conversations, then the rules naming it
    (:func:`forget_referent`, which does not take this), while an evaluation locks
    conversations, agents and divisions: a row lock on the rules held by the evaluation
    made a cycle with it. Taken first, before any row, this one waits for nothing the
    evaluation could be waiting for.
    """
    lock_key(session, f"automation_rules:{tenant_id}")


def hold_rules_shared(session: Session, tenant_ids: set[uuid.UUID]) -> None:
    """The evaluation's side of :func:`hold_rules`: shared (evaluations do not wait for
    each other), tenants in order."""
    for tenant_id in sorted(tenant_ids):
        lock_key(session, f"automation_rules:{tenant_id}", shared=True)


def rules_version(session: Session, tenant_id: uuid.UUID) -> int:
    version = session.scalar(
        select(AutomationSettings.rules_version).where(AutomationSettings.tenant_id == tenant_id)
    )
    return version or 0


# ---------------------------------------------------------------- services


def list_rules(
    session: Session,
    ctx: Ctx,
    *,
    limit: int,
    cursor: str | None = None,
    is_active: bool | None = None,
    trigger_event_type: str | None = None,
    q: str | None = None,
) -> Page[AutomationRule]:
    ctx.require(VIEW)
    r = AutomationRule
    query = select(r).where(r.tenant_id == ctx.tenant_id)
    if is_active is not None:
        query = query.where(r.is_active.is_(is_active))
    if trigger_event_type:
        query = query.where(r.trigger_event_types.contains([trigger_event_type]))
    if q:
        query = query.where(r.name.ilike(contains_pattern(q)))
    return paginate(
        session, query, created_at=r.created_at, id_column=r.id, limit=limit, cursor=cursor
    )


def get_rule(
    session: Session, ctx: Ctx, rule_id: uuid.UUID, *, for_update: bool = False
) -> AutomationRule:
    """The caller's tenant's rule, or 404 (also for another tenant's)."""
    ctx.require(VIEW)
    query = select(AutomationRule).where(
        AutomationRule.tenant_id == ctx.tenant_id, AutomationRule.id == rule_id
    )
    if for_update:
        hold_rules(session, ctx.tenant_id)
        query = query.with_for_update()
    rule = session.scalars(query).one_or_none()
    if rule is None:
        raise NotFound("Automation rule not found")
    return rule


def with_defaults(body: dict[str, Any]) -> dict[str, Any]:
    """A rule body with every optional field filled in."""
    return {
        "description": "",
        "conditions": EMPTY_CONDITIONS,
        "actions": [],
        "priority": 100,
        "stop_processing": False,
        "is_active": True,
        **{k: v for k, v in body.items() if v is not None},
    }


def create_rule(session: Session, ctx: Ctx, body: dict[str, Any]) -> AutomationRule:
    ctx.require(MANAGE)
    body = with_defaults(body)
    validate_rule(session, ctx, body, share_lock_except=frozenset())
    # NOTE: the version bump locks the tenant's settings row first, so two concurrent
    # creates cannot both pass the count below.
    bump_rules_version(session, ctx.tenant_id)
    limit = get_settings().automation_max_rules_per_tenant
    count = session.scalar(select(func.count()).where(AutomationRule.tenant_id == ctx.tenant_id))
    if count >= limit:
        raise RuleLimitReached(
            f"A workspace may have at most {limit} automation rules",
            details=[_problem("body", f"at most {limit} rules per workspace", "rule_limit")],
        )
    rule = AutomationRule(
        tenant_id=ctx.tenant_id,
        created_by=ctx.user_id,
        activated_at=clock.db_now(session),
        **{name: body[name] for name in RULE_FIELDS},
    )
    session.add(rule)
    session.flush()
    session.refresh(rule)
    activity.record(
        session,
        ctx,
        "automation_rule.created",
        "automation_rule",
        rule.id,
        after=RuleView.data(rule),
    )
    return rule


def update_rule(
    session: Session, ctx: Ctx, rule_id: uuid.UUID, changes: dict[str, Any]
) -> AutomationRule:
    """Apply the fields sent; the merged rule is validated whole and its version goes up."""
    ctx.require(MANAGE)
    for name in ("name", "trigger_event_types", "conditions", "actions"):
        if name in changes and changes[name] is None:
            raise ValidationFailed.field(name, "may not be null")
    rule = get_rule(session, ctx, rule_id, for_update=True)
    before = RuleView.data(rule)
    merged = {name: getattr(rule, name) for name in RULE_FIELDS}
    merged.update({k: v for k, v in changes.items() if k in RULE_FIELDS and v is not None})
    named_already = set().union(*action_catalogue.referenced_ids(rule.actions).values())
    validate_rule(session, ctx, merged, share_lock_except=frozenset(named_already))
    if merged["is_active"] and not rule.is_active:
        rule.activated_at = clock.db_now(session)
    for name in RULE_FIELDS:
        setattr(rule, name, merged[name])
    bump_rules_version(session, ctx.tenant_id)
    _record_new_version(session, ctx, rule, before)
    return rule


def _record_new_version(
    session: Session, ctx: Ctx, rule: AutomationRule, before: dict[str, Any]
) -> None:
    """A changed rule's version goes up, and the change is logged from ``before``."""
    rule.version = AutomationRule.version + 1
    rule.updated_at = func.now()
    session.flush()
    session.refresh(rule)
    activity.record(
        session,
        ctx,
        "automation_rule.updated",
        "automation_rule",
        rule.id,
        before=before,
        after=RuleView.data(rule),
    )


def toggle_rule(session: Session, ctx: Ctx, rule_id: uuid.UUID) -> AutomationRule:
    """Flip ``is_active`` (the version stays: what the rule does has not changed)."""
    ctx.require(MANAGE)
    rule = get_rule(session, ctx, rule_id, for_update=True)
    values: dict[str, Any] = {"is_active": not rule.is_active, "updated_at": func.now()}
    if not rule.is_active:  # switched on: a no_runs alert counts its silence from now
        values["activated_at"] = clock.db_now(session)
    session.execute(update(AutomationRule).where(AutomationRule.id == rule.id).values(**values))
    bump_rules_version(session, ctx.tenant_id)
    session.refresh(rule)
    activity.record(
        session,
        ctx,
        "automation_rule.toggled",
        "automation_rule",
        rule.id,
        before={"is_active": not rule.is_active},
        after={"is_active": rule.is_active},
    )
    return rule


def delete_rule(session: Session, ctx: Ctx, rule_id: uuid.UUID) -> None:
    """Delete a rule; its runs are kept (they carry the rule's snapshot)."""
    ctx.require(MANAGE)
    rule = get_rule(session, ctx, rule_id, for_update=True)
    before = RuleView.data(rule)
    session.delete(rule)
    bump_rules_version(session, ctx.tenant_id)
    activity.record(
        session, ctx, "automation_rule.deleted", "automation_rule", rule.id, before=before
    )


# ---------------------------------------------------------------- a referent deleted


def _without_referent(actions: list[Any], kind: str, ref_id: uuid.UUID) -> list[Any]:
    """The actions without ``ref_id`` of ``kind``: an action that needs it goes, one for
    which it is optional loses the param (the catalogue's params say which)."""
    kept = []
    for action in actions:
        spec = action_catalogue.spec_of(action)
        if spec is None:
            kept.append(action)
            continue
        params = action.get("params") or {}
        named = [
            p
            for p in spec.params
            if p.refers_to == kind and str(params.get(p.name, "")).lower() == str(ref_id)
        ]
        if any(p.required for p in named):
            continue
        dropped = {p.name for p in named}
        kept.append(action | {"params": {k: v for k, v in params.items() if k not in dropped}})
    return kept


def _rules_mentioning(session: Session, ctx: Ctx, ref_id: uuid.UUID) -> list[AutomationRule]:
    """The tenant's rules whose actions contain the id anywhere, locked in id order."""
    mentions = func.lower(cast(AutomationRule.actions, Text)).contains(str(ref_id))
    return list(
        session.scalars(
            select(AutomationRule)
            .where(AutomationRule.tenant_id == ctx.tenant_id, mentions)
            .order_by(AutomationRule.id)
            .with_for_update()
        )
    )


def forget_referent(session: Session, ctx: Ctx, kind: str, ref_id: uuid.UUID) -> None:
    """Take a row being deleted off the rules' actions, in the delete's transaction.

    ``kind`` is one of :data:`actions.REFERENCE_KINDS` (an agent, a division, a quick
    reply, a webhook endpoint: every row :func:`validate_rule` looks up). Kept, its id
    made the rule uneditable: any change re-validates the whole rule and refused the
    dead id (422), and every run failed on it. A rule changed so is switched off, not
    left to run otherwise than written (routed nowhere, a reply never sent, round-robin
    over every agent instead of a team's): whoever re-targets it switches it back on.
    Conditions are left as they are: they are not checked against the tenant's rows,
    and dropping one would widen the rule.
    """
    if kind not in action_catalogue.REFERENCE_KINDS:
        raise ValueError(f"unknown reference kind {kind!r}")
    changed = False
    for rule in _rules_mentioning(session, ctx, ref_id):
        actions = _without_referent(rule.actions, kind, ref_id)
        if actions == rule.actions:
            continue  # the id was only in a text, or a param of another kind
        before = RuleView.data(rule)
        rule.actions = actions
        rule.is_active = False
        _record_new_version(session, ctx, rule, before)
        changed = True
    if changed:
        bump_rules_version(session, ctx.tenant_id)
